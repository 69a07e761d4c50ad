//! The sliding window log built by `traffik::builder()`: exact counts on a manual clock, the
//! capacity as the key bound, the settings it refuses, and the async contract (alone and held
//! by a `Failover`) giving the same answers as the synchronous calls.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use traffik::failover::Failover;
use traffik::sliding_log::KeyedSlidingLog;
use traffik::{
    builder, AlgorithmKind, AsyncLimiter, BuildError, CheckError, ConfigError, Decision,
    ManualClock, OverflowPolicy, Rate, RateLimiter, TableError, MAX_LOG_LIMIT,
};

const MS: u64 = 1_000_000;

type Log = KeyedSlidingLog<String, Arc<ManualClock>>;

fn log(rate: &str, capacity: usize, clock: &Arc<ManualClock>) -> Log {
    builder()
        .rate(rate)
        .capacity(capacity)
        .build_sliding_log_with_clock(Arc::clone(clock))
        .unwrap()
}

#[test]
fn builder_made_log_counts_exactly_per_key() {
    let clock = Arc::new(ManualClock::new());
    let l = log("4/s", 10, &clock);
    assert_eq!(l.log().limit(), 4);
    assert_eq!(l.log().period_nanos(), 1_000 * MS);
    // 0 ms: 3; 300 ms: 1; then full until the 0 ms entries leave at 1 s.
    assert_eq!(l.check("a", 3).unwrap(), Decision::allow(4, 1, 1_000 * MS));
    clock.advance(Duration::from_millis(300));
    assert_eq!(l.check("a", 1).unwrap(), Decision::allow(4, 0, 1_000 * MS));
    assert_eq!(
        l.check("a", 1).unwrap(),
        Decision::deny(4, 0, 700 * MS, 1_000 * MS)
    );
    // Two units need the 0 ms batch gone too: the same 700 ms.
    assert_eq!(
        l.check("a", 2).unwrap(),
        Decision::deny(4, 0, 700 * MS, 1_000 * MS)
    );
    assert_eq!(l.check("b", 4).unwrap(), Decision::allow(4, 0, 1_000 * MS));
    assert_eq!(
        l.check("a", 5),
        Err(CheckError::InsufficientCapacity { max: 4 })
    );
    // 1 s: the 0 ms batch (3) has left; the 300 ms entry stays until 1.3 s.
    clock.advance(Duration::from_millis(700));
    assert_eq!(l.peek("a").remaining(), 3);
    assert_eq!(l.check("a", 3).unwrap(), Decision::allow(4, 0, 1_000 * MS));
    assert_eq!(
        l.check("a", 1).unwrap(),
        Decision::deny(4, 0, 300 * MS, 1_000 * MS)
    );
}

#[test]
fn capacity_bounds_the_keys() {
    let clock = Arc::new(ManualClock::new());
    let l = log("2/min", 2, &clock);
    assert!(l.check("a", 1).unwrap().is_allowed());
    assert!(l.check("b", 2).unwrap().is_allowed());
    assert_eq!(l.check("c", 1), Err(CheckError::TableFull));
    // Known keys still decide; a peek of an unknown key records nothing.
    assert_eq!(l.check("a", 1).unwrap(), Decision::allow(2, 0, 60_000 * MS));
    assert_eq!(l.peek("c").remaining(), 2);
    assert_eq!(l.len(), 2);
    clock.advance(Duration::from_secs(60));
    assert_eq!(l.remove_idle(), 2);
    assert_eq!(l.check("c", 1).unwrap(), Decision::allow(2, 1, 60_000 * MS));
}

#[test]
fn default_capacity_and_direct_log() {
    let l: KeyedSlidingLog<u64, _> = builder().rate("1/s").build_sliding_log().unwrap();
    for key in 0..100 {
        assert!(l.check(&key, 1).unwrap().is_allowed());
    }
    assert_eq!(l.len(), 100);

    let clock = ManualClock::new();
    let direct = builder()
        .rate("2 per 10 seconds")
        .build_direct_sliding_log_with_clock(&clock)
        .unwrap();
    assert_eq!(direct.check(1).unwrap(), Decision::allow(2, 1, 10_000 * MS));
    clock.advance(Duration::from_secs(4));
    assert_eq!(direct.check(1).unwrap(), Decision::allow(2, 0, 10_000 * MS));
    assert_eq!(
        direct.check(1).unwrap(),
        Decision::deny(2, 0, 6_000 * MS, 10_000 * MS)
    );
    assert!(builder().rate("5/s").build_direct_sliding_log().is_ok());
}

#[test]
fn settings_the_log_cannot_honour_are_typed_errors() {
    let clock = ManualClock::new();
    let build = |b: traffik::builder::Builder| {
        b.build_sliding_log_with_clock::<String, _>(&clock)
            .map(|_| ())
    };
    assert_eq!(build(builder()), Err(BuildError::MissingRate));
    assert!(matches!(
        build(builder().rate("ten per second")),
        Err(BuildError::Rate(_))
    ));
    assert_eq!(
        build(builder().rate("10/s").burst(20)),
        Err(BuildError::Config(ConfigError::BurstNotSupported))
    );
    // A burst equal to the limit is the log's own.
    assert_eq!(build(builder().rate("10/s").burst(10)), Ok(()));
    assert_eq!(
        build(builder().rate(Rate::per_hour(MAX_LOG_LIMIT + 1))),
        Err(BuildError::Config(ConfigError::LimitTooLarge {
            max: MAX_LOG_LIMIT
        }))
    );
    assert_eq!(build(builder().rate(Rate::per_hour(MAX_LOG_LIMIT))), Ok(()));
    assert_eq!(
        build(builder().rate(Rate::unlimited())),
        Err(BuildError::Config(ConfigError::UnlimitedRate))
    );
    assert_eq!(
        build(builder().rate("10/s").capacity(0)),
        Err(BuildError::Table(TableError::ZeroCapacity))
    );
    let not_applicable = |setting| {
        Err(BuildError::NotApplicable {
            setting,
            build: "build_sliding_log",
        })
    };
    assert_eq!(
        build(builder().rate("10/s").algorithm(AlgorithmKind::Gcra)),
        not_applicable("algorithm")
    );
    assert_eq!(
        build(builder().rate("10/s").max_debt(3)),
        not_applicable("algorithm")
    );
    assert_eq!(
        build(builder().rate("10/s").shards(8)),
        not_applicable("shards")
    );
    assert_eq!(
        build(
            builder()
                .rate("10/s")
                .overflow(OverflowPolicy::EvictStalest)
        ),
        not_applicable("overflow")
    );
    assert_eq!(
        build(builder().rate("10/s").overflow(OverflowPolicy::Allow)),
        not_applicable("overflow")
    );
    // Deny is what the log does anyway.
    assert_eq!(
        build(builder().rate("10/s").overflow(OverflowPolicy::Deny)),
        Ok(())
    );
    // Several rates belong to build_multi.
    assert_eq!(
        build(builder().rates("10/s, 100/h")),
        Err(BuildError::MultipleRates)
    );
    assert_eq!(build(builder().rates("10/s")), Ok(()));
    // The direct log has no table, so only the algorithm is refused beside the rate rules.
    assert_eq!(
        builder()
            .rate("10/s")
            .shards(8)
            .build_direct_sliding_log()
            .map(|_| ()),
        Ok(())
    );
    assert_eq!(
        builder()
            .rate("10/s")
            .algorithm(AlgorithmKind::TokenBucket)
            .build_direct_sliding_log()
            .map(|_| ()),
        Err(BuildError::NotApplicable {
            setting: "algorithm",
            build: "build_direct_sliding_log",
        })
    );
    let message = BuildError::NotApplicable {
        setting: "shards",
        build: "build_sliding_log",
    }
    .to_string();
    assert_eq!(
        message,
        ".shards(..) does not apply to .build_sliding_log(): remove it"
    );
}

/// The same scenario through `AsyncLimiter` (async and on-the-spot calls) gives exactly the
/// synchronous answers.
#[tokio::test]
async fn async_contract_matches_the_sync_calls() {
    let clock = Arc::new(ManualClock::new());
    let sync = log("3/s", 4, &clock);
    let asynced = log("3/s", 4, &clock);
    let steps: [(&str, u64, u64); 8] = [
        ("a", 2, 0),
        ("a", 2, 100),
        ("a", 1, 0),
        ("b", 3, 400),
        ("a", 1, 0),
        ("a", 3, 500),
        ("a", 3, 0),
        ("b", 1, 0),
    ];
    // a: 2 at 0 ms, 1 at 100 ms; b: 3 at 500 ms; at 1 s "a" still holds 1 of 3 and "b" 3.
    let admitted = [true, false, true, true, false, false, false, false];
    for (i, (key, cost, advance_ms)) in steps.into_iter().enumerate() {
        clock.advance(Duration::from_millis(advance_ms));
        let want = sync.check(key, cost);
        let got = if i % 2 == 0 {
            AsyncLimiter::<str>::check(&asynced, key, cost).await
        } else {
            AsyncLimiter::<str>::check_now(&asynced, key, cost).unwrap()
        };
        assert_eq!(got, want, "step {i}");
        assert_eq!(got.unwrap().is_allowed(), admitted[i], "step {i}");
        assert_eq!(
            AsyncLimiter::<str>::peek(&asynced, key).await.unwrap(),
            sync.peek(key)
        );
    }
    // At 1 s "a" holds only its 100 ms entry (leaving at 1.1 s): 2 left.
    assert_eq!(
        AsyncLimiter::<str>::peek_now(&asynced, "a").unwrap(),
        Ok(Decision::allow(3, 2, 100 * MS))
    );
    AsyncLimiter::<str>::reset(&asynced, "a").await.unwrap();
    assert_eq!(asynced.peek("a").remaining(), 3);
}

/// A `Failover` can hold the builder-made log as its primary: its answers, async and on the
/// spot, are the log's exact counts, and the fallback is never asked.
#[tokio::test]
async fn failover_holds_a_sliding_log() {
    let clock = Arc::new(ManualClock::new());
    let primary = log("2/s", 8, &clock);
    let fallback: RateLimiter<str> = builder().rate("100/s").build().unwrap();
    let f: Failover<str, _, _, _> = Failover::builder(&primary)
        .fallback(&fallback)
        .clock(Arc::clone(&clock))
        .build()
        .unwrap();
    assert_eq!(
        f.check("k", 1).await.unwrap(),
        Decision::allow(2, 1, 1_000 * MS)
    );
    clock.advance(Duration::from_millis(250));
    assert_eq!(
        f.check_now("k", 1).unwrap().unwrap(),
        Decision::allow(2, 0, 1_000 * MS)
    );
    assert_eq!(
        f.check("k", 1).await.unwrap(),
        Decision::deny(2, 0, 750 * MS, 1_000 * MS)
    );
    assert_eq!(primary.len(), 1);
    assert_eq!(fallback.peek("k").remaining(), 100);
}
