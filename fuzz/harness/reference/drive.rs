// The runners that drive a packed algorithm through a sequence of operations and panic on the
// first broken property: `differential` against the reference model, `check_period_bound` on
// what was admitted, and `lagged` with stale clock readings.

use traffik_core::Algorithm;

use super::model::Model;
use super::Spec;

/// One step of a differential run.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    Advance(u64),
    Check(u64),
    Reset,
}

/// Runs `ops` through the packed algorithm and the reference model side by side and panics on
/// the first difference or broken invariant. Returns the admitted (time, cost) pairs.
pub fn differential(spec: Spec, ops: &[Op]) -> Vec<(u64, u64)> {
    let packed = spec.packed();
    let mut model = spec.reference();
    let mut state = 0u64;
    let mut now = 0u64;
    let mut admitted = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match *op {
            Op::Advance(dt) => now = now.saturating_add(dt),
            Op::Reset => {
                state = 0;
                model.reset();
            }
            Op::Check(cost) => {
                let got = packed.decide(state, now, cost);
                let want = model.decide(now, cost);
                let got_decision = got.map(|t| t.decision);
                assert_eq!(got_decision, want, "op {i} {op:?} at {now} ({spec:?})");
                // A peek (cost 0) never asks for a write, a denial never writes.
                let peek = packed.decide(state, now, 0).expect("peek cannot fail");
                assert!(peek.next.is_none(), "peek wanted a write");
                if let Ok(t) = got {
                    let d = t.decision;
                    assert!(d.remaining() <= d.limit(), "remaining above limit");
                    if d.is_denied() {
                        assert!(t.next.is_none(), "a denial wanted a write");
                        // retry_after is exact.
                        let at = now + d.retry_after_nanos();
                        assert!(d.retry_after_nanos() > 0);
                        assert!(packed
                            .decide(state, at, cost)
                            .unwrap()
                            .decision
                            .is_allowed());
                        assert!(packed
                            .decide(state, at - 1, cost)
                            .unwrap()
                            .decision
                            .is_denied());
                    } else {
                        assert_eq!(d.retry_after_nanos(), 0);
                        if cost > 0 {
                            admitted.push((now, cost));
                        }
                        if let Some(next) = t.next {
                            state = next;
                        }
                    }
                    assert_eq!(
                        packed.reset_after(state, now),
                        model_reset_after(&model, now)
                    );
                }
            }
        }
    }
    admitted
}

fn model_reset_after(model: &Model, now: u64) -> u64 {
    let t = now as u128;
    (Model::first(t, model.span(), |x| model.fresh_at(x)) - t) as u64
}

/// Panics if the admitted cost in some window of one period exceeds the documented bound.
pub fn check_period_bound(spec: Spec, admitted: &[(u64, u64)]) {
    let period = spec.period();
    let bound = spec.period_bound();
    let mut start = 0;
    let mut sum: u128 = 0;
    for &(t, c) in admitted {
        sum += c as u128;
        while admitted[start].0 + period <= t {
            sum -= admitted[start].1 as u128;
            start += 1;
        }
        assert!(
            sum <= bound,
            "{sum} admitted within one period, bound {bound} ({spec:?})"
        );
    }
}

/// One step of a run whose checks may carry a stale clock reading.
#[derive(Clone, Copy, Debug)]
pub enum LagOp {
    Advance(u64),
    /// A check whose reading is `lag` nanoseconds behind the latest time.
    Check {
        lag: u64,
        cost: u64,
    },
    Reset,
}

/// Runs `ops` through the packed algorithm with readings that lag the latest time by any
/// amount, and panics unless a stale reading only ever makes things stricter:
///
/// * a decision at a stale reading is no looser than one at the latest time from the same state
///   (admitted only if that one is, and no more remaining);
/// * a denial's `retry_after`, counted from the stale reading, is exact;
/// * a stale admission leaves every later decision at least as strict as not checking at all
///   (probed over several periods, for a unit cost and the full capacity);
/// * the documented bound per period holds, counting each admission at its effective time: its
///   reading, or for the window algorithms the start of the window it was charged to when the
///   reading was behind it.
pub fn lagged(spec: Spec, ops: &[LagOp]) {
    let alg = spec.packed();
    let period = spec.period();
    let cap = alg.capacity();
    let windowed = matches!(
        spec,
        Spec::FixedWindow { .. } | Spec::SlidingWindow { .. } | Spec::Rollover { .. }
    );
    let allowed =
        |state: u64, t: u64, c: u64| alg.decide(state, t, c).unwrap().decision.is_allowed();
    let remaining = |state: u64, t: u64| alg.decide(state, t, 0).unwrap().decision.remaining();
    let mut state = 0u64;
    let mut now = 0u64;
    let mut admitted: Vec<(u64, u64)> = Vec::new();
    // The latest reading admitted: for the window algorithms, its window is the stored one.
    let mut latest: Option<u64> = None;
    let mut resets = false;
    for (i, op) in ops.iter().enumerate() {
        match *op {
            LagOp::Advance(dt) => now = now.saturating_add(dt),
            LagOp::Reset => {
                state = 0;
                latest = None;
                resets = true;
            }
            LagOp::Check { lag, cost } => {
                let reading = now.saturating_sub(lag);
                let Ok(t) = alg.decide(state, reading, cost) else {
                    assert!(cost > cap, "op {i}: only an oversized cost may fail");
                    continue;
                };
                let d = t.decision;
                let up_to_date = alg.decide(state, now, cost).unwrap().decision;
                assert!(
                    !d.is_allowed() || up_to_date.is_allowed(),
                    "op {i} {op:?}: admitted at {reading} but not at {now} ({spec:?})"
                );
                assert!(
                    remaining(state, reading) <= remaining(state, now),
                    "op {i} {op:?}: more remaining at {reading} than at {now} ({spec:?})"
                );
                if d.is_denied() {
                    assert!(t.next.is_none(), "op {i}: a denial wanted a write");
                    let at = reading + d.retry_after_nanos();
                    assert!(
                        allowed(state, at, cost),
                        "op {i} {op:?}: retry_after too short"
                    );
                    assert!(
                        !allowed(state, at - 1, cost),
                        "op {i} {op:?}: retry_after too long"
                    );
                    continue;
                }
                let Some(next) = t.next else { continue };
                for probe in [0, period / 3, period, 2 * period + 1, 5 * period] {
                    let at = now.saturating_add(probe);
                    for c in [1, cap] {
                        assert!(
                            !allowed(next, at, c) || allowed(state, at, c),
                            "op {i} {op:?}: the admission at {reading} loosened a check of {c} \
                             at {at} ({spec:?})"
                        );
                    }
                    assert!(remaining(next, at) <= remaining(state, at));
                }
                let effective = match (windowed, latest) {
                    (true, Some(l)) => reading.max(l / period * period),
                    _ => reading,
                };
                admitted.push((effective, cost));
                latest = Some(latest.map_or(reading, |l| l.max(reading)));
                state = next;
            }
        }
    }
    if !resets {
        admitted.sort_unstable();
        check_period_bound(spec, &admitted);
    }
}
