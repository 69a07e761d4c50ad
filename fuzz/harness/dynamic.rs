// Decodes fuzz bytes into a priority budget or an adaptive limit and a sequence of operations,
// and runs them through the packed algorithm and the bucket-level model side by side (see
// level.rs), panicking on the first difference.
//
// Included with `#[path]` by the cargo-fuzz target and by the core's dynamic_models test; it
// expects `level.rs` to be included beside it as `level`.

use super::level::{Aimd, Level};
use traffik_core::{Adaptive, Algorithm, Decision, PriorityBudget, Rate};

const PERIODS: [u64; 5] = [1_000, 999_983, 3_000_007, 1_000_000_000, 60_000_000_000];
const TARGET: u64 = 128;

fn same(packed: Decision, model: Decision) {
    assert_eq!(
        packed.is_allowed(),
        model.is_allowed(),
        "{packed:?} vs {model:?}"
    );
    assert_eq!(
        packed.remaining(),
        model.remaining(),
        "{packed:?} vs {model:?}"
    );
    assert_eq!(
        packed.retry_after_nanos(),
        model.retry_after_nanos(),
        "{packed:?} vs {model:?}"
    );
    assert_eq!(
        packed.reset_after_nanos(),
        model.reset_after_nanos(),
        "{packed:?} vs {model:?}"
    );
    assert_eq!(packed.limit(), model.limit(), "{packed:?} vs {model:?}");
}

pub fn dynamic_ops(data: &[u8]) {
    let [which, a, b, c, d, rest @ ..] = data else {
        return;
    };
    let period = PERIODS[usize::from(*d) % PERIODS.len()];
    if which % 2 == 0 {
        priority(period, [*a, *b, *c], rest);
    } else {
        adaptive(period, [*a, *b, *c, *d], rest);
    }
}

fn priority(period: u64, [a, b, c]: [u8; 3], rest: &[u8]) {
    let budget = 1 + u64::from(a) % 40;
    let levels = 1 + usize::from(b) % 4;
    let mut reserves: Vec<u64> = (0..levels)
        .map(|i| u64::from(c.rotate_left(i as u32 * 3)) % budget)
        .collect();
    reserves.sort_unstable_by(|x, y| y.cmp(x));
    let limit = (1 + u64::from(b >> 2) % 60).min(period);
    let budget_alg =
        PriorityBudget::new(Rate::from_nanos(limit, period).unwrap(), budget, &reserves).unwrap();
    let interval = period.div_ceil(limit);
    let (mut state, mut now, mut model) = (0u64, 0u64, Level::default());
    for pair in rest.chunks_exact(2) {
        let (tag, val) = (pair[0], u64::from(pair[1]));
        match tag % 4 {
            0 | 1 => now += period / 64 * val + val,
            2 => now += period.saturating_mul(val % 3),
            _ => {
                let p = usize::from(tag >> 2) % levels;
                let share = budget - reserves[p];
                let cost = val % (budget + 2);
                let packed = budget_alg.level(p).unwrap().decide(state, now, cost);
                if cost > share {
                    assert!(packed.is_err());
                    continue;
                }
                let t = packed.unwrap();
                state = t.next.unwrap_or(state);
                same(t.decision, model.decide(now, cost, interval, share));
            }
        }
    }
}

fn adaptive(period: u64, [a, b, c, d]: [u8; 4], rest: &[u8]) {
    let floor = (1 + u64::from(a) % 20).min(period);
    let ceiling = (floor + u64::from(b) % 40).min(period);
    let burst = 1 + u64::from(c) % 30;
    let (numerator, denominator) = [(1, 2), (2, 3), (3, 4), (1, 10)][usize::from(d) % 4];
    let rule = Aimd {
        target: TARGET,
        floor,
        ceiling,
        increase: 1 + u64::from(d >> 2) % 5,
        numerator,
        denominator,
    };
    let alg = Adaptive::builder(
        Rate::from_nanos(floor, period).unwrap(),
        Rate::from_nanos(ceiling, period).unwrap(),
        TARGET,
    )
    .increase(rule.increase)
    .decrease(numerator, denominator)
    .burst(burst)
    .build()
    .unwrap();
    let (mut state, mut now, mut limit) = (0u64, 0u64, ceiling);
    let mut model = Level::default();
    for pair in rest.chunks_exact(2) {
        let (tag, val) = (pair[0], u64::from(pair[1]));
        match tag % 5 {
            0 | 1 => now += period / 64 * val + val,
            2 => {
                limit = rule.next(limit, val);
                assert_eq!(alg.report(val), limit);
            }
            _ => {
                let cost = val % (burst + 2);
                let packed = alg.decide(state, now, cost);
                if cost > burst {
                    assert!(packed.is_err());
                    continue;
                }
                let t = packed.unwrap();
                state = t.next.unwrap_or(state);
                same(
                    t.decision,
                    model.decide(now, cost, period.div_ceil(limit), burst),
                );
            }
        }
    }
}
