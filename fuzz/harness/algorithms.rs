// Decodes fuzz bytes into an algorithm and a sequence of operations, and runs them through the
// packed algorithm and the reference model side by side (see reference/).
//
// Included with `#[path]` by the cargo-fuzz target and by the stable corpus replay test; it
// expects `reference/mod.rs` to be included beside it as `reference`.

use super::reference::{check_period_bound, differential, lagged, LagOp, Op, Spec};
use traffik_core::Rate;

const PERIODS: [u64; 6] = [1, 1_000, 999_983, 3_000_007, 1_000_000_000, 60_000_000_000];

pub fn algorithm_ops(data: &[u8]) {
    let [kind, l0, l1, p, b, rest @ ..] = data else {
        return;
    };
    let limit = 1 + u64::from(u16::from_le_bytes([*l0, *l1])) % 500;
    let period = PERIODS[usize::from(*p) % PERIODS.len()].max(limit);
    let Ok(rate) = Rate::from_nanos(limit, period) else {
        return;
    };
    let burst = 1 + u64::from(*b) % (2 * limit);
    let spec = Spec::from_parts(*kind, rate, burst);
    // The most one check can be granted (for the debt bucket, capacity plus debt).
    let capacity = traffik_core::Algorithm::capacity(&spec.packed());
    let mut ops = Vec::with_capacity(rest.len() / 2);
    // The same run with stale readings: the tag's high bits, when set, make a check lag by
    // that many periods and a fraction (up to 31 periods behind).
    let mut lag_ops = Vec::with_capacity(rest.len() / 2);
    let mut resets = false;
    for pair in rest.chunks_exact(2) {
        let (tag, val) = (pair[0], u64::from(pair[1]));
        let op = match tag % 8 {
            // Small steps (fractions of a period) and occasional long idles.
            0..=2 => Op::Advance(period / 64 * val + val),
            3 => Op::Advance(period.saturating_mul(val % 5)),
            7 if val == 0 => {
                resets = true;
                Op::Reset
            }
            _ => Op::Check(val % (capacity + 2)),
        };
        ops.push(op);
        lag_ops.push(match op {
            Op::Advance(dt) => LagOp::Advance(dt),
            Op::Reset => LagOp::Reset,
            Op::Check(cost) => LagOp::Check {
                lag: period.saturating_mul(u64::from(tag >> 3)) + period / 256 * val,
                cost,
            },
        });
    }
    let admitted = differential(spec, &ops);
    if !resets {
        check_period_bound(spec, &admitted);
    }
    lagged(spec, &lag_ops);
}
