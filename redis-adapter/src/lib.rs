//! # traffik-redis
//!
//! Distributed rate limiting on Redis and Redis Cluster: many processes share one limit per key,
//! and every check is decided by a Lua script that makes **the same decisions as the in-process
//! algorithms of [`traffik_core`]** (GCRA, token bucket, leaky bucket, fixed window, sliding
//! window counter, token bucket with debt, quota with rollover), plus an exact sliding window log that has no in-process counterpart.
//!
//! ```no_run
//! use traffik_core::Rate;
//! use traffik_redis::{RedisAlgorithm, RedisLimiter};
//!
//! # async fn demo() -> Result<(), traffik_redis::RedisLimiterError> {
//! let limiter = RedisLimiter::builder("redis://127.0.0.1:6380/")
//!     .rate(Rate::per_second(10))
//!     .algorithm(RedisAlgorithm::Gcra)
//!     .prefix("api")
//!     .build()
//!     .await?;
//! let decision = limiter.check("client-42", 1).await?;
//! if decision.is_denied() {
//!     println!("retry in {:?}", decision.retry_after());
//! }
//! # Ok(()) }
//! ```
//!
//! ## How a check runs
//!
//! One `EVALSHA` per check (the script is loaded once; a `NOSCRIPT` reply after a server restart
//! or `SCRIPT FLUSH` resends the check once as `EVAL`, which is safe because a `NOSCRIPT` script
//! never ran). The reply carries everything a [`Decision`] holds. Each key gets a TTL equal to the
//! time until it would be fresh again, rounded **up** to whole milliseconds, plus one millisecond
//! (Redis stamps expiries from its truncated millisecond clock, so `PX n` can end up to 1 ms
//! early), so idle keys vanish by themselves and are never dropped before they are fresh.
//!
//! Keys are named `<prefix>:{<key>}:<algorithm>` (the sliding window log adds a second key,
//! the same name plus `:m`). The braces are a Redis Cluster hash tag, so every script touches a
//! single slot. So that the tag is never empty and never closed early, whatever bytes the key
//! holds, `%` in the key is written `%25`, `}` is written `%7D`, and the empty key is written
//! `%`: `api:{user:42}:gcra`, `api:{a%7Db}:gcra` for `a}b`, `api:{%}:gcra` for the empty key.
//!
//! ## Time
//!
//! [`TimeSource::Server`] (the default) reads Redis's own `TIME`, so application servers with
//! skewed clocks agree; decisions are then at microsecond granularity. [`TimeSource::System`] and
//! [`TimeSource::Custom`] use the caller's clock in nanoseconds, and
//! [`RedisLimiter::check_at`] injects a time for one call (tests do this to compare with the
//! in-process algorithms nanosecond for nanosecond). With a caller clock the key TTLs still run
//! on Redis's clock, so the callers' clocks must run at the same rate as Redis's.
//!
//! A reading older than a key's state (a caller whose clock lags another's, or Redis `TIME`
//! stepped back) never loosens a decision, exactly as in the core: GCRA and the buckets see
//! less time elapsed, and the window algorithms charge the key's stored window with its counts
//! as they are, however many windows behind the reading is, and never move that window back.
//!
//! ## Exactness
//!
//! Lua numbers are doubles, exact only up to 2^53, while nanosecond clock readings are near
//! 2^61. The scripts never form an absolute time: the client (or the script, from `TIME`) splits
//! each reading as `now = Q * L + R` with a per-limiter unit `L` (the period, or the smallest
//! multiple of it that is at least one second), state is stored in the same split form, and all
//! arithmetic is on small differences; products that could pass 2^53 go through an exact
//! shift-and-add `floor(a * b / d)`. Decisions are identical to [`traffik_core`]'s for any clock
//! reading below 2^62 ns when:
//!
//! * the period is below 2^52 ns (about 52 days);
//! * for GCRA and the leaky bucket, `burst * interval` is at most 2^51 ns (about 26 days);
//! * for the token bucket, the capacity is at most 2^50; for the token bucket with debt, the
//!   capacity plus the debt;
//! * for GCRA and the buckets, a check's reading is less than 2^52 ns (about 52 days) before
//!   the latest reading that charged its key (see *Time*). Further behind, the check is still
//!   denied, but its `retry_after` may be off by a few nanoseconds, or the reply refused as
//!   [`RedisLimiterError::BadReply`];
//! * for the window algorithms (the rollover quota is one), the limits the core accepts, and a key not left idle for longer
//!   than the core's truncated window index spans (at least 2^50 ns, about 13 days, and far
//!   more for most limits; the core could then read the key as ahead of the clock, whereas here
//!   it has long expired, which is the exact answer). Readings behind a key's window are exact
//!   at any distance: the scripts keep full window indices, and send a duration of 2^53 ns or
//!   more split in two numbers.
//!
//! The builder refuses configurations outside these ranges with [`RedisLimiterError::Config`].
//!
//! ## Rates that move
//!
//! A limiter's own script carries its rate as constants. For the core's strategies whose rate
//! moves between checks while each key keeps one theoretical arrival time (a
//! [`Live`](traffik_core::Live) rate, GCRA [`Tiers`](traffik_core::Tiers),
//! [`Adaptive`](traffik_core::Adaptive), [`Schedule`](traffik_core::Schedule),
//! [`PriorityLevel`](traffik_core::PriorityLevel)), [`RedisLimiter::check_gcra`] sends GCRA's
//! interval and burst ([`GcraParams`](traffik_core::GcraParams)) with each check. The TAT is
//! stored as one absolute time (split by a fixed unit of one second), so a key read under new
//! parameters decides exactly as in process; [`RedisTiered`] picks the parameters per key. The
//! ranges of *Exactness* hold with a tolerance (`burst * interval`) of at most 2^51 ns, checked
//! per call.
//!
//! ## Failures
//!
//! Every failure is a typed [`RedisLimiterError`]; none is ever turned into an admission. A check
//! whose reply was lost (timeout, dropped connection) is reported as such
//! ([`RedisLimiterError::is_indeterminate`]) and never resent, since a resend could count it
//! twice. While Redis is unreachable, calls fail within the configured timeout.
//!
//! On a cluster, the client is built with its retries off (redis-rs resends a request after an
//! I/O error by default), which is why a built `ClusterClient` is not accepted as a [`Target`]
//! (a [`ClusterClientBuilder`](redis::cluster::ClusterClientBuilder) is). The limiter itself
//! follows `MOVED` and `ASK` redirections (up to five per check), which is safe because a
//! node that redirects has not run the script; a batch's slot group that is redirected is
//! resent check by check. Other refusals during a topology change (`TRYAGAIN`, `CLUSTERDOWN`)
//! are returned as [`RedisLimiterError::Server`]: the script did not run, and the caller may
//! retry.
//!
//! ## Redis versions, persistence and failover
//!
//! Redis 5.0 or newer is required: a script that reads `TIME` and then writes relies on
//! script effects replication, the default since Redis 5.0 (Redis 3.2 to 4.x refuse such a
//! write unless the script opts in; the scripts do not). Everything else they use (`struct`,
//! `SET .. PX`, sorted sets, `EVALSHA` inside `MULTI`) is older. Tested on Redis 7.0.
//!
//! Limits are as durable as the keys. Replication is asynchronous: a replica promoted after its
//! primary failed may lack the last writes it had not received yet, so keys can be under-charged
//! by what was admitted in that replication lag (a key lost entirely reads as fresh), and the
//! same goes for a restart without persistence. The limiter does not use `WAIT`, which would
//! cost a round trip per check and still not make a failover lossless.
//!
//! ## Traffic shaping
//!
//! [`RedisShaper`] makes requests *wait* their turn instead of refusing them: one
//! first-come-first-served queue per key, shared by every process through Redis, whose head
//! leaves when GCRA admits it (the theoretical arrival time moves only on a departure), so
//! departures keep to the rate whatever the waiters do. Admission is decided when the enqueue
//! script runs, with the in-process shaper's refusals (the same
//! [`ShapeError`](traffik_core::ShapeError) in [`RedisShapeError::Refused`]); waiters poll
//! at their estimate (at most every poll interval), a dropped waiter gives its place back, and a
//! crashed one is purged when its lease runs out. The [`shape`] module documents the protocol.
//!
//! ## Features
//!
//! * `blocking` (off by default): the `blocking` module's `RedisLimiter`, a
//!   synchronous wrapper that drives the async limiter on a runtime of its own, for programs
//!   without tokio.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod connection;
mod contract;
mod error;
mod keys;
mod limiter;
mod near_cache;
mod reply;
mod scripts;
pub mod shape;
mod single;

#[cfg(feature = "blocking")]
#[cfg_attr(docsrs, doc(cfg(feature = "blocking")))]
pub mod blocking;

pub use config::{RedisAlgorithm, RedisLimiterBuilder, TimeSource, MAX_LOG_LIMIT};
pub use connection::Target;
pub use error::RedisLimiterError;
pub use limiter::{RedisLimiter, RedisMultiLimiter, RedisTiered};
pub use near_cache::NearCacheStats;
pub use shape::{Departure, RedisShapeError, RedisShaper, RedisShaperBuilder};
pub use traffik_core::{Decision, Rate};
