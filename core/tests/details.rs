//! Typed details of each algorithm's state, exact.
#![allow(clippy::unwrap_used, missing_docs)]

use traffik_core::{Algorithm, AlgorithmKind, AnyAlgorithm, Details, Rate};

const MS: u64 = 1_000_000;

fn any(kind: AlgorithmKind, rate: Rate, burst: Option<u64>) -> AnyAlgorithm {
    AnyAlgorithm::new(kind, rate, burst).unwrap()
}

fn charge(a: &AnyAlgorithm, state: u64, now: u64, cost: u64) -> u64 {
    let t = a.decide(state, now, cost).unwrap();
    assert!(t.decision.is_allowed());
    t.next.unwrap()
}

#[test]
fn each_kind_reads_its_state_in_its_own_terms() {
    let gcra = any(AlgorithmKind::Gcra, Rate::per_second(10), None);
    let s = charge(&gcra, 0, 0, 4);
    assert_eq!(
        gcra.details(s, 0),
        Details::Gcra {
            available: 6,
            burst: 10,
            ahead_nanos: 400 * MS
        }
    );
    assert_eq!(
        gcra.details(s, 150 * MS),
        Details::Gcra {
            available: 7,
            burst: 10,
            ahead_nanos: 250 * MS
        }
    );

    // 4/s (250 ms per unit), capacity 4: three poured at 0 leave the TAT at 750 ms. At 100 ms,
    // 650 ms of it remain: 3 units (the third partly drained), and one more fits.
    let leaky = any(AlgorithmKind::LeakyBucket, Rate::per_second(4), None);
    let s = charge(&leaky, 0, 0, 3);
    assert_eq!(
        leaky.details(s, 100 * MS),
        Details::LeakyBucket {
            level: 3,
            free: 1,
            capacity: 4
        }
    );

    // Tokens arrive on the fixed schedule (one each 100 ms from 0): at 250 ms two have come,
    // and the fifth comes at 500 ms.
    let bucket = any(AlgorithmKind::TokenBucket, Rate::per_second(10), Some(5));
    let s = charge(&bucket, 0, 0, 5);
    assert_eq!(
        bucket.details(s, 250 * MS),
        Details::TokenBucket {
            tokens: 2,
            capacity: 5,
            full_in_nanos: 250 * MS
        }
    );

    let fixed = any(AlgorithmKind::FixedWindow, Rate::per_second(5), None);
    let s = charge(&fixed, 0, 100 * MS, 2);
    assert_eq!(
        fixed.details(s, 900 * MS),
        Details::Window {
            used: 2,
            remaining: 3,
            limit: 5
        }
    );
    assert_eq!(
        fixed.details(s, 1_000 * MS),
        Details::Window {
            used: 0,
            remaining: 5,
            limit: 5
        }
    );

    // Six in window 0; half-way through window 1 the previous window weighs 3.
    let sliding = any(
        AlgorithmKind::SlidingWindowCounter,
        Rate::per_second(10),
        None,
    );
    let s = charge(&sliding, 0, 0, 6);
    assert_eq!(
        sliding.details(s, 1_500 * MS),
        Details::Window {
            used: 3,
            remaining: 7,
            limit: 10
        }
    );

    let open = any(AlgorithmKind::Gcra, Rate::unlimited(), None);
    assert_eq!(open.details(0, 0), Details::Unlimited);
}
