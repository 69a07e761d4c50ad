//! Failover in front of a real Redis: the shared limit while Redis answers, the circuit breaker
//! opening and an in-process fallback (this node's share of the global limit) answering while it
//! does not, and the fallback's charges replayed to Redis once it is back. Then `until_ready`
//! waits for capacity.
//!
//! ```sh
//! cargo run --example failover --features tokio,redis
//! # with a Redis of your own (default redis://127.0.0.1:6380/, never the usual 6379):
//! redis-server --port 6380 --save '' &
//! REDIS_URL=redis://127.0.0.1:6380/ cargo run --example failover --features tokio,redis
//! ```
//!
//! Without a reachable Redis, the example still runs: every attempt to reach it fails for real
//! (connection refused), the breaker opens, and the fallback answers. With Redis, the example
//! cannot stop your server to show an outage, so part 2 pulls a SIMULATED plug: a switch in
//! front of the real `RedisLimiter` that fails calls the way a refused connection does, without
//! sending them.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::OnceCell;
use traffik::failover::{node_share, BreakerConfig, Failover, FailoverStats, RetryPolicy};
use traffik::redis::{RedisLimiter, RedisLimiterError};
use traffik::wait::until_ready;
use traffik::{AsyncLimiter, Decision, ErrorKind, LimiterError, Rate, RateLimiter};

/// The global limit, shared through Redis by this many nodes.
const GLOBAL_PER_SECOND: u64 = 10;
const NODES: u64 = 2;

/// Redis, connected on first use and again after a failed connect, so the example runs (and
/// recovers) whether or not Redis is up when it starts; plus the simulated plug of part 2.
struct Redis {
    url: String,
    limiter: OnceCell<RedisLimiter>,
    unplugged: AtomicBool,
}

/// Why the store gave no decision.
#[derive(Debug)]
enum StoreError {
    /// SIMULATED: the plug is pulled; nothing was sent.
    Unplugged,
    /// What the real Redis limiter reported (connection refused, timeout, ...).
    Redis(RedisLimiterError),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unplugged => f.write_str("simulated network outage (nothing sent)"),
            StoreError::Redis(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Unplugged => None,
            StoreError::Redis(e) => Some(e),
        }
    }
}

impl LimiterError for StoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            // Nothing left this process: the failover may retry, fall back and replay.
            StoreError::Unplugged => ErrorKind::NotCharged,
            StoreError::Redis(e) => e.kind(),
        }
    }
}

impl Redis {
    async fn limiter(&self) -> Result<&RedisLimiter, StoreError> {
        if self.unplugged.load(Ordering::Relaxed) {
            return Err(StoreError::Unplugged);
        }
        // A failed connect leaves the cell empty: the next call (the breaker's next probe)
        // tries again.
        self.limiter
            .get_or_try_init(|| {
                RedisLimiter::builder(self.url.as_str())
                    .rate(Rate::per_second(GLOBAL_PER_SECOND))
                    .prefix("traffik-failover-example")
                    .timeout(Duration::from_millis(200))
                    .build()
            })
            .await
            .map_err(StoreError::Redis)
    }
}

impl AsyncLimiter<str> for Redis {
    type Error = StoreError;

    async fn check(&self, key: &str, cost: u64) -> Result<Decision, StoreError> {
        let redis = self.limiter().await?;
        redis.check(key, cost).await.map_err(StoreError::Redis)
    }

    async fn peek(&self, key: &str) -> Result<Decision, StoreError> {
        let redis = self.limiter().await?;
        redis.peek(key).await.map_err(StoreError::Redis)
    }

    async fn reset(&self, key: &str) -> Result<(), StoreError> {
        let redis = self.limiter().await?;
        redis.reset(key).await.map_err(StoreError::Redis)
    }
}

type Limiter = Failover<str, Redis, RateLimiter<str>>;

/// One check, saying who decided it (the fallback's counter moves only when it answers).
async fn ask(limiter: &Limiter, label: &str) -> Result<(), Box<dyn std::error::Error>> {
    let before = limiter.stats().fallback_decisions;
    let start = std::time::Instant::now();
    let d = limiter.check("alice", 1).await?;
    let took = start.elapsed();
    let who = if limiter.stats().fallback_decisions > before {
        "fallback"
    } else {
        "redis"
    };
    if d.is_allowed() {
        println!(
            "  {label}: allowed by {who}, {} left ({took:.1?})",
            d.remaining()
        );
    } else {
        println!(
            "  {label}: denied by {who}, retry after {:.1?} ({took:.1?})",
            d.retry_after()
        );
    }
    Ok(())
}

fn summary(s: &FailoverStats) {
    println!(
        "  breaker {}, {} trip(s); {} short-circuited, {} fallback decisions; replay: {} queued, \
         {} replayed, {} pending",
        s.breaker,
        s.trips,
        s.short_circuited,
        s.fallback_decisions,
        s.replay.queued,
        s.replay.replayed,
        s.replay.pending
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6380/".into());
    let store = Redis {
        url: url.clone(),
        limiter: OnceCell::new(),
        unplugged: AtomicBool::new(false),
    };
    // This node's share for when Redis cannot answer: 10/s over 2 nodes is 5/s, burst 5.
    let share: RateLimiter<str> = node_share(Rate::per_second(GLOBAL_PER_SECOND), NODES)?
        .capacity(1_000)
        .build()?;
    let limiter: Limiter = Failover::builder(store)
        .fallback(share)
        .retry(RetryPolicy::attempts(2))
        .timeout(Some(Duration::from_millis(250)))
        .breaker(
            BreakerConfig::new()
                .failure_threshold(3)
                .recovery_timeout(Duration::from_millis(300))
                .success_threshold(1),
        )
        .build()?;

    println!("1. {GLOBAL_PER_SECOND}/s per user across {NODES} nodes, shared through {url}");
    for i in 1..=6 {
        ask(&limiter, &format!("request {i}")).await?;
    }
    let s = limiter.stats();
    summary(&s);
    let redis_up = limiter.primary().limiter.get().is_some();
    if !redis_up {
        println!(
            "  Redis is not reachable: each call was retried once and then answered by the \
             fallback; after 3 failed calls the breaker opened and Redis is no longer asked \
             (only a probe every 300 ms). Start one with `redis-server --port 6380 --save ''` \
             and run again to see the shared limit."
        );
    } else {
        println!("2. SIMULATED outage: the plug in front of the real Redis limiter is pulled");
        limiter.primary().unplugged.store(true, Ordering::Relaxed);
        for i in 1..=6 {
            ask(&limiter, &format!("request {i}")).await?;
        }
        summary(&limiter.stats());
        println!("3. plugged back in; after the 300 ms recovery timeout one probe closes the");
        println!("   breaker, and the fallback's charges are replayed to Redis");
        limiter.primary().unplugged.store(false, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(300)).await;
        ask(&limiter, "probe").await?;
        limiter.flush_replay().await;
        summary(&limiter.stats());
        let seen = limiter.primary().peek("alice").await?;
        println!(
            "  Redis now has {} of {} left for alice",
            seen.remaining(),
            seen.limit()
        );
    }

    println!("Last, until_ready: a cost of 5 waits until 5 are free");
    let start = tokio::time::Instant::now();
    let d = until_ready(&limiter, "alice", 5).await?;
    println!(
        "  after {:?}: allowed, {} left",
        start.elapsed(),
        d.remaining()
    );
    Ok(())
}
