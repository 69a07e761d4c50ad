//! Failover in action: a shared store that goes away, the circuit breaker opening, an
//! in-process fallback sized as this node's share of the global limit, the store coming back,
//! and the charges the fallback admitted replayed to it. Then `until_ready` waits for capacity.
//!
//! ```sh
//! cargo run --example failover --features tokio
//! ```
//!
//! The shared store here is a SIMULATION (`SimulatedStore` below): an in-process table that can
//! be switched to "unreachable", where it fails with `ErrorKind::NotCharged` the way a refused
//! connection does. Any `AsyncLimiter<str>` takes its place unchanged; `traffik-redis`'s
//! `RedisLimiter` will, once it implements `AsyncLimiter` (this example says so if `REDIS_URL`
//! is set).

use std::fmt;
use std::future::{ready, Future};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use traffik::failover::{node_share, Backoff, BreakerConfig, Failover, RetryPolicy};
use traffik::wait::until_ready;
use traffik::{AsyncLimiter, CheckError, Decision, ErrorKind, LimiterError, RateLimiter};

/// Stands in for a shared store: a table that answers while "reachable" and refuses otherwise.
struct SimulatedStore {
    table: RateLimiter<str>,
    reachable: AtomicBool,
}

/// The simulated store's errors: "connection refused", or the table's own.
#[derive(Debug)]
enum StoreError {
    Unreachable,
    Limit(CheckError),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unreachable => f.write_str("simulated store unreachable (refused)"),
            StoreError::Limit(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StoreError {}

impl LimiterError for StoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Unreachable => ErrorKind::NotCharged, // refused before anything was sent
            StoreError::Limit(e) => e.kind(),
        }
    }
}

impl SimulatedStore {
    fn up(&self) -> Result<(), StoreError> {
        if self.reachable.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(StoreError::Unreachable)
        }
    }
}

impl AsyncLimiter<str> for SimulatedStore {
    type Error = StoreError;

    fn check(
        &self,
        key: &str,
        cost: u64,
    ) -> impl Future<Output = Result<Decision, StoreError>> + Send {
        ready(
            self.up()
                .and_then(|()| self.table.check(key, cost).map_err(StoreError::Limit)),
        )
    }

    fn peek(&self, key: &str) -> impl Future<Output = Result<Decision, StoreError>> + Send {
        ready(self.up().map(|()| self.table.peek(key)))
    }

    fn reset(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send {
        ready(self.up().map(|()| self.table.reset(key)))
    }
}

fn show(label: &str, d: &Decision) {
    if d.is_allowed() {
        println!("  {label}: allowed, {} left", d.remaining());
    } else {
        println!("  {label}: denied, retry after {:?}", d.retry_after());
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("REDIS_URL").is_some() {
        println!(
            "REDIS_URL is set, but traffik-redis does not implement AsyncLimiter in this build: \
             using the simulated store."
        );
    }
    // The global limit: 10 a second per user, shared by 2 nodes.
    let store = SimulatedStore {
        table: traffik::builder().rate("10/s").capacity(1_000).build()?,
        reachable: AtomicBool::new(true),
    };
    // This node's share for outages: 5 a second, burst 5.
    let share: RateLimiter<str> = node_share("10/s", 2)?.capacity(1_000).build()?;
    let limiter: Failover<str, _, _> = Failover::builder(&store)
        .fallback(share)
        .retry(RetryPolicy::attempts(2).backoff(Backoff::Constant(Duration::from_millis(5))))
        .timeout(Some(Duration::from_millis(100)))
        .breaker(
            BreakerConfig::new()
                .failure_threshold(3)
                .recovery_timeout(Duration::from_millis(200))
                .success_threshold(1),
        )
        .build()?;

    println!("1. store reachable: the shared limit decides");
    for i in 1..=3 {
        show(&format!("request {i}"), &limiter.check("alice", 1).await?);
    }

    println!("2. store unreachable: each call is retried once, then the fallback decides;");
    println!("   after 3 failed calls the breaker opens and the store is no longer asked");
    store.reachable.store(false, Ordering::Relaxed);
    for i in 1..=7 {
        show(&format!("request {i}"), &limiter.check("alice", 1).await?);
    }
    let s = limiter.stats();
    println!(
        "   breaker {}, {} trip(s), {} retries, {} short-circuited, {} fallback decisions, {} charges queued",
        s.breaker, s.trips, s.retries, s.short_circuited, s.fallback_decisions, s.replay.queued
    );

    println!("3. store back; after the recovery timeout one probe closes the breaker,");
    println!("   and the charges the fallback admitted are replayed to the store");
    store.reachable.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    show("probe", &limiter.check("alice", 1).await?);
    let s = limiter.stats();
    println!(
        "   breaker {}, {} replayed, {} pending, {} dropped",
        s.breaker, s.replay.replayed, s.replay.pending, s.replay.dropped
    );
    show("the store now sees alice as", &store.table.peek("alice"));

    println!("4. until_ready: a cost of 5 waits until 5 are free (one frees every 100 ms)");
    let start = tokio::time::Instant::now();
    let d = until_ready(&limiter, "alice", 5).await?;
    show(&format!("after {:?}", start.elapsed()), &d);
    Ok(())
}
