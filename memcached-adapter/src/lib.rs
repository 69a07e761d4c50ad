//! # traffik-memcached
//!
//! Distributed rate limiting on memcached: many processes share one limit per key, and every
//! decision is made by **the same code as the in-process limiters**, [`traffik_core`]'s
//! [`Algorithm::decide`](traffik_core::Algorithm::decide), applied to a state kept in memcached
//! with compare-and-swap. There is no second implementation of any algorithm to drift.
//!
//! ```no_run
//! use traffik_core::AlgorithmKind;
//! use traffik_memcached::MemcachedLimiter;
//!
//! # async fn demo() -> Result<(), traffik_memcached::MemcachedLimiterError> {
//! let limiter = MemcachedLimiter::builder("memcache://127.0.0.1:11211")
//!     .rate("100/minute")
//!     .algorithm(AlgorithmKind::Gcra)
//!     .prefix("api")
//!     .build()?;
//! let decision = limiter.check("client-42", 1).await?;
//! if decision.is_denied() {
//!     println!("429, retry in {:?}", decision.retry_after());
//! }
//! # Ok(()) }
//! ```
//!
//! ## How a check runs
//!
//! 1. `gets <key>`: the key's packed state (8 bytes, a little-endian `u64`, with flags
//!    `0x7472`) and its CAS token; a missing key is the fresh state `0`.
//! 2. The core decides: `decide(state, now, cost)`. A denial or a peek (cost 0) writes nothing
//!    and the check is done after one round trip.
//! 3. An admission writes the next state with `cas <key> ... <token>` (or `add` for a key that
//!    did not exist), so it lands only if nobody changed the key since step 1. If somebody did
//!    (`EXISTS`, `NOT_FOUND`, `NOT_STORED`), nothing was written and the check starts again
//!    from step 1 with what is there now, up to
//!    [`cas_attempts`](MemcachedLimiterBuilder::cas_attempts) times.
//!
//! This is the core's own CAS loop with memcached as the atomic word, so decisions match the
//! in-process [`StateCell`](traffik_core::StateCell) exactly; a differential test compares them
//! nanosecond for nanosecond for every algorithm. [`check_many`](MemcachedLimiter::check_many)
//! pipelines a batch: all its `gets` in one write, all its `cas`/`add` in another.
//! [`MemcachedMultiLimiter`] checks several limits on one key all or nothing (`10/s` *and*
//! `1000/h`), with the core's charge-then-refund design (see [`multi`]).
//! [`check_with`](MemcachedLimiter::check_with) decides a key with an algorithm given per call
//! (a [`Live`](traffik_core::Live) rate, an [`Adaptive`](traffik_core::Adaptive) limit, a
//! [`Schedule`](traffik_core::Schedule), a priority), and [`MemcachedQuotas`] picks one per key
//! from [`Tiers`](traffik_core::Tiers); see [`dynamic`] for which algorithms may share a key.
//!
//! ## Traffic shaping
//!
//! [`MemcachedShaper`] makes requests *wait* rather than be refused: one first-come-first-served
//! queue per key, shared by every process, whose requests leave at the rate (GCRA's schedule,
//! moved only by departures). The whole queue of a key is one memcached item (the TAT, the last
//! sequence and the waiting tickets), changed by the same `gets` + `cas` loop as a check;
//! waiters poll with `gets` alone, a dropped waiter gives its place back within one poll
//! interval, and a stalled one is purged when its lease runs out. See [`shape`] for the
//! protocol, its guarantees and the item-size bound.
//!
//! The client speaks memcached's classic text protocol itself (`gets`, `add`, `cas`, `delete`,
//! `version`), over a small fixed pool of TCP connections per server. Every memcached release
//! and memcached-speaking proxy accepts these commands, and owning the few lines of protocol
//! lets the limiter know, for every failure, whether a write had been sent: that is the
//! difference between "not charged" and "indeterminate" below. A connection whose call failed,
//! timed out or was dropped is closed, never reused, so a late reply cannot be read as the
//! answer to another request.
//!
//! ## Time
//!
//! Memcached has no clock a client can read, so time is the caller's: by default
//! [`SystemClock`], nanoseconds since the Unix epoch (window algorithms align their windows to
//! it), or any [`Clock`](traffik_core::Clock) given to
//! [`clock`](MemcachedLimiterBuilder::clock) (a `ManualClock` in tests), or a time passed to
//! [`check_at`](MemcachedLimiter::check_at). **All processes sharing a limit must have
//! synchronised clocks.** What skew does:
//!
//! * A process whose clock is *behind* the time a state was written at only gets stricter
//!   decisions: the core's algorithms are written so that a reading older than the stored state
//!   never loosens a decision and never underflows (for the window algorithms, for lags under
//!   one window).
//! * A process whose clock runs *ahead* by `s` sees budget come back `s` early, and so hands
//!   it out early: in any window, up to `s` worth of rate more than the limit. The expiries it
//!   sets are computed on its clock too, so keys it writes can vanish up to `s` early, which is
//!   the same effect.
//!
//! The system clock is not monotonic: an NTP step backwards acts like a lag (stricter), a step
//! forwards like running ahead.
//!
//! ## Keys
//!
//! A user key (any bytes) is stored under `{prefix}:{algorithm}:{form}:{body}`, where `form` is
//! `k` (the key itself, when it is printable ASCII without spaces and fits), `x` (lowercase
//! hex, for other bytes) or `h` (SHA-256 in hex, for keys too long for memcached's 250 bytes).
//! Different user keys never share a memcached key, short of a SHA-256 collision.
//! [`memcached_key`](MemcachedLimiter::memcached_key) shows the name of any key.
//!
//! With several servers, each key lives on one: the one with the highest rendezvous score
//! `splitmix64(fnv1a64(memcached key) ^ fnv1a64("host:port"))`. The mapping depends only on the
//! set of servers, not their order, and adding or removing one server moves only the keys that
//! server gains or loses. [`server_for`](MemcachedLimiter::server_for) tells where a key lives.
//!
//! ## Expiry
//!
//! Each write sets the key's expiry to the time until its state would be fresh again
//! (`reset_after`), rounded up to whole seconds, plus one second for memcached's one-second
//! clock tick, so idle keys vanish and none vanishes while it still counts. Expiries over 30
//! days, which memcached reads as absolute Unix times, are sent as absolute times from this
//! machine's wall clock plus a minute's margin; past 2038 (memcached's 32-bit limit) such keys
//! are stored without expiry. Memcached is a cache: under memory pressure it evicts keys before
//! they expire, which resets their limits. Give it memory for every live key, or start it with
//! `-M` so that it refuses writes instead (a refused write is an error here, never an
//! admission).
//!
//! ## Failures
//!
//! Every failure is a typed [`MemcachedLimiterError`], and its
//! [`kind`](traffik_core::LimiterError::kind) says what it means for the key:
//!
//! * **not charged**: the server could not be reached, the connection failed while reading, the
//!   server refused the write (`SERVER_ERROR`), the key kept changing under every attempt
//!   ([`Contention`](MemcachedLimiterError::Contention)), or the timeout passed before any
//!   write was sent;
//! * **indeterminate**: a `cas`/`add` was sent and no reply came back (connection lost,
//!   timeout, garbage). The write may have landed; it is never resent;
//! * **config**: a bad configuration, a key holding a value this crate did not write
//!   ([`CorruptState`](MemcachedLimiterError::CorruptState)), a server that refuses the
//!   commands, or CAS disabled on the server;
//! * a cost above what the limit can ever admit is
//!   [`InsufficientCapacity`](MemcachedLimiterError::InsufficientCapacity), without touching
//!   the network.
//!
//! One [`timeout`](MemcachedLimiterBuilder::timeout) (default 500 ms) covers a whole call,
//! connecting and CAS retries included.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod clock;
mod config;
mod connection;
pub mod dynamic;
mod engine;
mod error;
mod expiry;
mod keys;
mod limiter;
pub mod multi;
mod protocol;
pub mod shape;

pub use clock::SystemClock;
pub use config::{MemcachedLimiterBuilder, RateSpec, DEFAULT_PORT};
pub use dynamic::{MemcachedQuotas, PerCallAlgorithm, StateFormat};
pub use error::MemcachedLimiterError;
pub use limiter::MemcachedLimiter;
pub use multi::MemcachedMultiLimiter;
pub use shape::{Departure, MemcachedShapeError, MemcachedShaper, MemcachedShaperBuilder};
pub use traffik_core::{AlgorithmKind, Decision, Rate, ShapeError};
