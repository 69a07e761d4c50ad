//! Per-key quotas, tiers and live rate changes through the builder and the `AsyncLimiter`
//! contract, with exact counts on a manual clock.
#![allow(clippy::unwrap_used)]

use std::time::Duration;
use traffik::{
    AlgorithmKind, AsyncLimiter, BuildError, Gcra, LiveError, ManualClock, QuotaError, Rate, Tiers,
};

fn drain(check: impl Fn() -> bool) -> u64 {
    let mut n = 0;
    while check() {
        n += 1;
        assert!(n <= 1_000_000, "never denied");
    }
    n
}

#[test]
fn tiered_builder_free_ten_premium_fifty() {
    let clock = ManualClock::new();
    let limiter = traffik::builder()
        .rate("10/s")
        .capacity(1_000)
        .build_tiered_with_clock(
            [1, 5],
            |user: &str| usize::from(user.starts_with("premium:")),
            &clock,
        )
        .unwrap();
    assert_eq!(
        drain(|| limiter.check("free:a", 1).unwrap().is_allowed()),
        10
    );
    assert_eq!(
        drain(|| limiter.check("premium:b", 1).unwrap().is_allowed()),
        50
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        drain(|| limiter.check("free:a", 1).unwrap().is_allowed()),
        10
    );
    assert_eq!(
        drain(|| limiter.check("premium:b", 1).unwrap().is_allowed()),
        50
    );
    // Through the async contract: the same table, ready at once.
    assert_eq!(
        AsyncLimiter::check_now(&limiter, "premium:c", 50)
            .unwrap()
            .unwrap()
            .remaining(),
        0
    );
    assert_eq!(
        AsyncLimiter::peek_now(&limiter, "free:a")
            .unwrap()
            .unwrap()
            .limit(),
        10
    );
}

#[test]
fn tiered_builder_errors_are_typed() {
    let err = traffik::builder()
        .rate("10/s")
        .algorithm(AlgorithmKind::TokenBucket)
        .build_tiered([1, 5], |_: &u64| 0)
        .unwrap_err();
    assert_eq!(
        err,
        BuildError::Quota(QuotaError::Incompatible {
            first: 0,
            second: 1
        })
    );
    assert!(err.to_string().contains("tiers 0 and 1"));
    let err = traffik::builder()
        .build_tiered([1], |_: &u64| 0)
        .unwrap_err();
    assert_eq!(err, BuildError::MissingRate);
}

#[test]
fn custom_quotas_through_the_builder() {
    let clock = ManualClock::new();
    let tiers = Tiers::new(
        [
            Gcra::with_burst(Rate::per_minute(60), 1).unwrap(),
            Gcra::with_burst(Rate::per_minute(60), 30).unwrap(),
        ],
        |path: &str| usize::from(path.starts_with("/bulk")),
    )
    .unwrap();
    let limiter = traffik::builder()
        .capacity(100)
        .build_quotas(tiers, &clock)
        .unwrap();
    assert_eq!(drain(|| limiter.check("/api", 1).unwrap().is_allowed()), 1);
    assert_eq!(
        drain(|| limiter.check("/bulk/x", 1).unwrap().is_allowed()),
        30
    );
}

#[tokio::test]
async fn live_builder_changes_the_rate_without_resetting() {
    let clock = ManualClock::new();
    let limiter = traffik::builder()
        .rate("4/s")
        .capacity(100)
        .build_live_with_clock::<str, _>(&clock)
        .unwrap();
    assert!(limiter.check("k", 4).unwrap().is_allowed());
    // TAT 1 s ahead. At 2/s (burst 2) the tolerance is 1 s: nothing until 500 ms pass.
    limiter.set_rate(Rate::per_second(2), None).unwrap();
    assert!(AsyncLimiter::check(&limiter, "k", 1)
        .await
        .unwrap()
        .is_denied());
    clock.advance(Duration::from_millis(499));
    assert!(limiter.check("k", 1).unwrap().is_denied());
    clock.advance(Duration::from_millis(1));
    assert!(limiter.check("k", 1).unwrap().is_allowed());
    assert_eq!(
        limiter.set_algorithm(
            traffik::AnyAlgorithm::new(AlgorithmKind::FixedWindow, Rate::per_second(2), None)
                .unwrap()
        ),
        Err(LiveError::Incompatible)
    );
    let direct = traffik::builder().rate("3/s").build_direct_live().unwrap();
    assert!(direct.check(3).unwrap().is_allowed());
    direct.set_rate(Rate::per_second(300), None).unwrap();
    assert_eq!(direct.peek().limit(), 300);
}
