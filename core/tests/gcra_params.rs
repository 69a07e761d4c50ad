//! `GcraParams`: every TAT strategy decides a check exactly as GCRA with the parameters it
//! hands out for that check.
#![allow(clippy::unwrap_used, missing_docs)]

use proptest::prelude::*;
use traffik_core::{
    Adaptive, Algorithm, AlgorithmKind, AnyAlgorithm, CheckError, ConfigError, Gcra, GcraParams,
    PriorityBudget, Rate, Schedule, Transition,
};

fn same(a: Result<Transition, CheckError>, b: Result<Transition, CheckError>) {
    match (a, b) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.decision, b.decision);
            assert_eq!(a.next, b.next);
        }
        (a, b) => assert_eq!(a.err(), b.err()),
    }
}

#[test]
fn params_validate() {
    assert_eq!(
        GcraParams::new(0, 1),
        Err(ConfigError::RateTooFast {
            limit: 1,
            period_nanos: 0
        })
    );
    assert_eq!(GcraParams::new(1, 0), Err(ConfigError::ZeroBurst));
    assert_eq!(
        GcraParams::new(1 << 40, 1 << 40),
        Err(ConfigError::BurstOverflow)
    );
    let p = GcraParams::new(333_333_334, 3).unwrap();
    assert_eq!(p, Gcra::new(Rate::per_second(3)).unwrap().params());
    assert_eq!(p.tolerance_nanos(), 1_000_000_002);
    let lb = AnyAlgorithm::new(AlgorithmKind::LeakyBucket, Rate::per_second(3), Some(2)).unwrap();
    assert_eq!(
        lb.gcra_params(),
        Some(GcraParams::new(333_333_334, 2).unwrap())
    );
    let tb = AnyAlgorithm::new(AlgorithmKind::TokenBucket, Rate::per_second(3), None).unwrap();
    assert_eq!(tb.gcra_params(), None);
}

proptest! {
    #[test]
    fn strategies_decide_as_their_params(
        tat in 0u64..5_000_000_000,
        now in 0u64..5_000_000_000,
        cost in 0u64..12,
        limit in 1u64..10,
        signal in 0u64..200,
        priority in 0usize..3,
        hour in 0u64..168,
    ) {
        let gcra = Gcra::with_burst(Rate::per_second(limit), limit + 1).unwrap();
        same(gcra.decide(tat, now, cost), gcra.params().decide(tat, now, cost));

        let adaptive = Adaptive::builder(Rate::per_second(2), Rate::per_second(9), 100)
            .burst(4)
            .build()
            .unwrap();
        adaptive.report(signal);
        adaptive.report(signal / 2);
        same(adaptive.decide(tat, now, cost), adaptive.params().decide(tat, now, cost));

        let budget = PriorityBudget::new(Rate::per_second(10), 10, &[6, 3, 0]).unwrap();
        let level = budget.level(priority).unwrap();
        same(level.decide(tat, now, cost), level.params().decide(tat, now, cost));

        let schedule = Schedule::builder(Rate::per_second(3))
            .weekdays(9..17, Rate::per_second(7))
            .build()
            .unwrap();
        let at = hour * 3_600_000_000_000 + now;
        same(schedule.decide(tat, at, cost), schedule.params_at(at).decide(tat, at, cost));
    }
}
