//! Single-key `check`: every traffik algorithm beside governor's direct limiter, same run.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{criterion_group, Criterion};
use governor::clock::FakeRelativeClock;
use governor::{Quota, RateLimiter};
use std::future::Future;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};
use traffik::{
    Adaptive, Algorithm, DebtBucket, FixedWindow, Gcra, LeakyBucket, Limiter, ManualClock,
    PriorityBudget, QuantaClock, QuotaRollover, Rate, Rollover, Schedule, SlidingLog,
    SlidingLogLimiter, SlidingWindowCounter, TokenBucket,
};

#[path = "support/window_floor.rs"]
mod window_floor;

/// A million per second, the clock stepping 1 us per check: every check is admitted.
const PER_SECOND: u32 = 1_000_000;

fn manual<A: Algorithm>(c: &mut Criterion, name: &str, alg: A) {
    let clock = ManualClock::new();
    let limiter = Limiter::new(alg, &clock);
    c.bench_function(&format!("single/manual/traffik-{name}"), |b| {
        b.iter(|| {
            clock.advance_nanos(1_000);
            let _ = black_box(limiter.check(black_box(1)).unwrap());
        })
    });
}

fn bench(c: &mut Criterion) {
    let rate = Rate::per_second(u64::from(PER_SECOND));
    // governor first, so the table reads incumbent then contenders.
    let clock = FakeRelativeClock::default();
    let quota = Quota::per_second(NonZeroU32::new(PER_SECOND).unwrap());
    let gov = RateLimiter::direct_with_clock(quota, clock.clone());
    c.bench_function("single/manual/governor", |b| {
        b.iter(|| {
            clock.advance(Duration::from_micros(1));
            black_box(gov.check().is_ok());
        })
    });
    manual(c, "gcra", Gcra::new(rate).unwrap());
    manual(c, "token-bucket", TokenBucket::new(rate).unwrap());
    manual(c, "leaky-bucket", LeakyBucket::new(rate).unwrap());
    manual(c, "fixed-window", FixedWindow::new(rate).unwrap());
    manual(
        c,
        "sliding-window",
        SlidingWindowCounter::new(rate).unwrap(),
    );
    manual(
        c,
        "debt-bucket",
        DebtBucket::new(rate, rate.limit()).unwrap(),
    );
    manual(
        c,
        "rollover",
        QuotaRollover::new(rate, Rollover::new(1, 2, u64::MAX)).unwrap(),
    );
    // The dynamic strategies: the adaptive limit read from its atomic (and divided) per check;
    // one priority of a shared budget (the lowest, which has the smallest share).
    let adaptive = Adaptive::builder(Rate::per_second(1_000), rate, 100)
        .burst(u64::from(PER_SECOND))
        .build()
        .unwrap();
    manual(c, "adaptive", adaptive);
    let budget = PriorityBudget::new(rate, u64::from(PER_SECOND), &[1_000, 0]).unwrap();
    manual(c, "priority-low", budget.level(0).unwrap());
    // The calendar: the hour of the week from the reading, then that hour's GCRA.
    let schedule = Schedule::builder(rate)
        .weekdays(9..17, Rate::per_second(2 * u64::from(PER_SECOND)))
        .build()
        .unwrap();
    manual(c, "schedule", schedule);

    // The sliding window log keeps one slot per unit of the limit, so it runs the same pace
    // (one per microsecond) as 100 per 100 us: 800 bytes of ring, every check admitted.
    let log = SlidingLog::new(Rate::from_nanos(100, 100_000).unwrap()).unwrap();
    let log_clock = ManualClock::new();
    let limiter = SlidingLogLimiter::new(log, &log_clock);
    c.bench_function("single/manual/traffik-sliding-log", |b| {
        b.iter(|| {
            log_clock.advance_nanos(1_000);
            let _ = black_box(limiter.check(black_box(1)).unwrap());
        })
    });

    // The traffic shaper's fast path (nobody waiting, departure allowed now): one request a
    // nanosecond with a large burst never queues at this pace. Polled once with a no-op waker.
    let shaper = traffik::shape::Shaper::new(
        traffik::shape::ShapeConfig::new(Rate::per_second(1_000_000_000)).burst(1_000_000),
    )
    .unwrap();
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    c.bench_function("single/real/traffik-shaper-immediate", |b| {
        b.iter(|| {
            let mut fut = shaper.acquire(black_box(1));
            let polled = std::pin::Pin::new(&mut fut).poll(&mut cx);
            black_box(matches!(polled, std::task::Poll::Ready(Ok(_))))
        })
    });

    // Real clocks: quanta on both sides.
    let gov = RateLimiter::direct(quota);
    c.bench_function("single/real/governor", |b| {
        b.iter(|| black_box(gov.check().is_ok()))
    });
    let limiter = Limiter::new(Gcra::new(rate).unwrap(), QuantaClock::new());
    c.bench_function("single/real/traffik-gcra", |b| {
        b.iter(|| black_box(limiter.check(1).unwrap()))
    });
    let limiter = Limiter::new(TokenBucket::new(rate).unwrap(), QuantaClock::new());
    c.bench_function("single/real/traffik-token-bucket", |b| {
        b.iter(|| black_box(limiter.check(1).unwrap()))
    });
}

/// Median of per-round ratios (traffik time / governor time) over rounds that alternate the
/// two, both on a manual clock stepped 1 us per check, so a shared machine's drift cancels.
fn interleaved_one<A: Algorithm>(name: &str, alg: A) {
    // Further arguments pick algorithms by name (for `perf record` of one of them).
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
        return;
    }
    let remaining = std::env::args().any(|a| a == "--remaining");
    const ROUNDS: usize = 41;
    const PER_ROUND: u64 = 200_000;
    let gclock = FakeRelativeClock::default();
    let quota = Quota::per_second(NonZeroU32::new(PER_SECOND).unwrap());
    let gov = RateLimiter::direct_with_clock(quota, gclock.clone());
    let clock = ManualClock::new();
    let limiter = Limiter::new(alg, &clock);
    let ours = || {
        // Two instances, so that the plain one has no use of `remaining` at all (a run-time
        // flag inside one loop makes the compiler compute it every time).
        if remaining {
            time_checks::<_, true>(&limiter, &clock, PER_ROUND)
        } else {
            time_checks::<_, false>(&limiter, &clock, PER_ROUND)
        }
    };
    let theirs = || {
        let start = Instant::now();
        for _ in 0..PER_ROUND {
            gclock.advance(Duration::from_micros(1));
            black_box(gov.check().is_ok());
        }
        start.elapsed().as_nanos() as f64 / PER_ROUND as f64
    };
    let (mut t, mut g) = (Vec::new(), Vec::new());
    for r in 0..ROUNDS {
        if r % 2 == 0 {
            t.push(ours());
            g.push(theirs());
        } else {
            g.push(theirs());
            t.push(ours());
        }
    }
    let median = |mut xs: Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        xs[xs.len() / 2]
    };
    let ratios = t.iter().zip(&g).map(|(a, b)| a / b).collect();
    println!(
        "| {name} | {:.2} ns | {:.2} ns | {:.2} |",
        median(t),
        median(g),
        median(ratios)
    );
}

/// Nanoseconds per check. Each result is reduced to a bool, as governor's is by `is_ok()`
/// (black-boxing the whole `Decision` would bill a 40-byte copy through memory to traffik
/// alone); with `REMAINING` (`--remaining`) also to what a rate-limit header needs. A const
/// parameter, so the plain loop has no use of `remaining` at all.
#[inline(never)]
fn time_checks<A: Algorithm, const REMAINING: bool>(
    limiter: &Limiter<A, &ManualClock>,
    clock: &ManualClock,
    n: u64,
) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        clock.advance_nanos(1_000);
        let decision = limiter.check(black_box(1)).unwrap();
        if REMAINING {
            black_box((decision.is_allowed(), decision.remaining()));
        } else {
            black_box(decision.is_allowed());
        }
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

/// The interleaved table (printed after criterion's figures).
fn interleaved() {
    let rate = Rate::per_second(u64::from(PER_SECOND));
    println!("\ninterleaved: 41 rounds x 200,000 checks, medians; ratio = median per-round ratio");
    println!("| algorithm | traffik | governor GCRA | ratio |");
    println!("|---|---:|---:|---:|");
    interleaved_one("GCRA", Gcra::new(rate).unwrap());
    interleaved_one("token bucket", TokenBucket::new(rate).unwrap());
    interleaved_one(
        "sliding window counter",
        SlidingWindowCounter::new(rate).unwrap(),
    );
    // The least a sliding window counter check can do (`support/window_floor.rs`).
    interleaved_one(
        "sliding window counter, floor (window and weight only)",
        window_floor::WindowFloor::new(rate),
    );
    interleaved_one("fixed window", FixedWindow::new(rate).unwrap());
    // The newer strategies (also in `benches/strategies.rs`, beside traffik's GCRA too).
    interleaved_one("debt bucket", DebtBucket::new(rate, rate.limit()).unwrap());
    interleaved_one(
        "quota rollover",
        QuotaRollover::new(rate, Rollover::new(1, 2, u64::MAX)).unwrap(),
    );
    interleaved_one(
        "adaptive",
        Adaptive::builder(Rate::per_second(1_000), rate, 100)
            .burst(u64::from(PER_SECOND))
            .build()
            .unwrap(),
    );
    interleaved_one(
        "schedule",
        Schedule::builder(rate)
            .weekdays(9..17, Rate::per_second(2 * u64::from(PER_SECOND)))
            .build()
            .unwrap(),
    );
    interleaved_one(
        "priority budget (lowest level)",
        PriorityBudget::new(rate, u64::from(PER_SECOND), &[1_000, 0])
            .unwrap()
            .level(0)
            .unwrap(),
    );
    interleaved_one("live GCRA", traffik::Live::new(Gcra::new(rate).unwrap()));
    // 999,999/s: the limit does not divide the second, so the widening arithmetic runs.
    interleaved_one(
        "token bucket, 999,999/s (no whole interval)",
        TokenBucket::new(Rate::per_second(999_999)).unwrap(),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}

fn main() {
    // `--interleaved` runs only the interleaved table.
    if !std::env::args().any(|a| a == "--interleaved") {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    interleaved();
}
