//! Traffic shaping on memcached: the leaky bucket as a first-come-first-served queue per key,
//! shared by every process that shapes that key. The memcached counterpart of the in-process
//! shaper (`traffik::shape::Shaper`) and of `traffik_redis::RedisShaper`, with the same
//! schedule and the same refusals.
//!
//! **Schedule.** Each key keeps GCRA's theoretical arrival time (TAT) of the requests that have
//! *left* its queue, with emission interval `T = ceil(period / limit)` and a burst `b` (default
//! 1: requests leave `T * cost` apart). A request of cost `c` may leave at `now` iff
//! `max(TAT, now) + c * T <= now + b * T`; leaving moves the TAT to `max(TAT, now) + c * T`.
//! Only the head of the queue may leave, and only when that test passes, so departures obey
//! GCRA's bound (at most `b + ceil(W / T) - 1` units in any `W` nanoseconds of the shapers'
//! clock) whatever the waiters do: the TAT moves only on a departure.
//!
//! **One item per key.** The whole queue of a user key lives in one memcached item: the TAT,
//! the last sequence handed out, and the queued tickets (sequence, cost, lease deadline), in
//! a compact binary form of `21 + 24 × tickets` bytes with flags `0x7473`. Every operation
//! reads it with `gets`, decides, and writes the result with `cas` (or `add` when the item
//! was absent) only if something changed; a conflicting write from another client sends it
//! back to a fresh `gets`, up to [`cas_attempts`](MemcachedShaperBuilder::cas_attempts) times,
//! as the limiter's own loop does. So every operation is atomic, and the order in which the
//! enqueues *land* is the queue order.
//!
//! **Admission** is decided on the state read when the enqueue lands:
//!
//! * a request that can leave now, with nobody queued, leaves at once;
//! * otherwise it joins the back of the queue, unless the queue already holds
//!   [`max_queue`](MemcachedShaperBuilder::max_queue) requests ([`ShapeError::QueueFull`]) or
//!   its departure would be more than [`max_wait`](MemcachedShaperBuilder::max_wait) away
//!   ([`ShapeError::WaitTooLong`]). With `Q` units queued ahead, the departure estimate is
//!   `max(now, max(TAT, now) + Q * T - (b - c) * T)`, exact if everyone ahead leaves on time;
//! * a cost above the burst is [`ShapeError::InsufficientCapacity`], refused without a round
//!   trip.
//!
//! A refused request queued and charged nothing (a refusal writes nothing, unless the same
//! read found expired leases to purge).
//!
//! **Waiting.** A queued request holds a *ticket* and sleeps until its estimate or for one
//! [`poll_interval`](MemcachedShaperBuilder::poll_interval), whichever is sooner, then polls:
//! a `gets`, and a write only if its ticket is the head and GCRA admits it now (it leaves: the
//! ticket is removed and the TAT moves), if its lease needs renewing, or if the read found
//! expired tickets to purge. Otherwise it takes its fresh estimate and sleeps again. A
//! departure that comes late (by a round trip, or a poll interval after a cancellation ahead)
//! pushes the schedule back by as much when the burst is 1: the TAT moves from the moment of
//! the departure. A burst of 2 or more absorbs such delays.
//!
//! **Cancellation gives the slot back.** Dropping the future of a waiting request removes its
//! ticket (a best-effort task spawned on the current tokio runtime; if that fails, the lease
//! removes it). It never charged anything, so everyone behind it moves up by its cost and sees
//! so at their next poll: within one poll interval. No cancellation can make departures faster
//! than the rate, since the schedule is the departures.
//!
//! **Leases.** A ticket's lease runs two poll intervals plus the
//! [`lease_grace`](MemcachedShaperBuilder::lease_grace) from its last renewal, and a waiter
//! renews it (a write) when less than one poll interval and the grace remain, so a waiter
//! that keeps polling writes at most every other poll. A holder that crashed or stalled past
//! its lease is purged by the next operation on that key: it blocks the queue for at most two
//! poll intervals and one grace; if it polls afterwards it gets
//! [`MemcachedShapeError::LeaseExpired`].
//!
//! **Failures.** A memcached failure ends the call with [`MemcachedShapeError::Store`] and
//! gives the place back (best effort). An enqueue whose reply was lost
//! ([`MemcachedLimiterError::is_indeterminate`]) may have queued a ticket nobody holds: it
//! blocks the queue until its lease runs out.
//!
//! **Time** is the shapers' [`clock`](MemcachedShaperBuilder::clock) (memcached has none a
//! client can read), [`SystemClock`](crate::SystemClock) by default. Every process shaping a
//! key must have synchronised clocks; the crate docs' section on time says what skew does to
//! the limiter, and it does the same here: a process whose clock runs ahead by `s` may let a
//! request leave up to `s` early (so GCRA's bound holds on the shapers' common clock only up to
//! the skew) and may purge another process's waiter up to `s` early; a process whose clock is
//! behind only lets requests leave later and purges later.
//!
//! **Expiry and size.** The item's expiry is the time until its TAT is past and its last
//! lease has run out (plus memcached's one-second tick), so an abandoned queue vanishes.
//! [`max_queue`](MemcachedShaperBuilder::max_queue) (default 1000) caps the item at
//! `21 + 24 × max_queue` bytes; a configuration whose largest item would not fit in
//! memcached's default 1 MB item size ([`MAX_QUEUE`]) is refused when built.
//!
//! Memcached is a cache: an item evicted under memory pressure takes its queue and TAT with
//! it, so the schedule starts afresh and its waiters end with
//! [`LeaseExpired`](MemcachedShapeError::LeaseExpired). Give memcached room, or run it with
//! `-M`.
//!
//! **Costs.** Every poll reads the whole item, `21 + 24 × tickets` bytes, so a long queue costs
//! `O(queue length)` bytes per poll per waiter; keep queues short with `max_queue`, and the poll
//! interval no shorter than needed.
//!
//! ```no_run
//! use std::time::Duration;
//! use traffik_memcached::MemcachedShaper;
//!
//! # async fn demo() -> Result<(), traffik_memcached::MemcachedShapeError> {
//! let shaper = MemcachedShaper::builder("127.0.0.1:11211")
//!     .rate("10/s")
//!     .max_queue(100)
//!     .max_wait(Duration::from_secs(5))
//!     .build()?;
//! let departure = shaper.acquire("upstream-api", 1).await?;
//! println!("waited {:?}", departure.waited());
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use traffik_core::{AlgorithmKind, Clock, Gcra, Rate, ShapeError};

use crate::config::{MemcachedLimiterBuilder, RateSpec};
use crate::error::MemcachedLimiterError;
use crate::keys;
use crate::limiter::MemcachedLimiter;

mod state;
mod store;

use state::{Answer, Params, HEADER, TICKET};

/// The largest [`max_queue`](MemcachedShaperBuilder::max_queue): the most tickets whose item
/// (with a 250-byte key and memcached's per-item overhead) fits in memcached's default 1 MB
/// item size.
pub const MAX_QUEUE: usize = (ITEM_LIMIT - ITEM_OVERHEAD - HEADER) / TICKET;

/// Memcached's default largest item (`-I 1m`).
const ITEM_LIMIT: usize = 1 << 20;
/// What an item costs memcached beyond its value: a key of up to 250 bytes, its header and
/// CAS, rounded up generously.
const ITEM_OVERHEAD: usize = 512;

/// The longest wait a shaper can grant (2^52 ns, about 52 days), as for the Redis shaper.
pub const MAX_WAIT: Duration = Duration::from_nanos(1 << 52);

/// Why a request did not leave: one of the shaper's refusals (nothing queued or charged), a
/// purged ticket, or a memcached failure (or a bad configuration).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemcachedShapeError {
    /// One of the shaper's refusals, in the in-process shaper's words: the queue is full, the
    /// wait would pass the maximum, or the cost exceeds the burst. Nothing was queued or
    /// charged.
    #[error(transparent)]
    Refused(#[from] ShapeError),
    /// The request's ticket was purged because it did not poll within its lease (its task
    /// stalled longer than the lease grace). It did not leave and holds no place.
    #[error("the request's place in the shaping queue expired before it polled again")]
    LeaseExpired,
    /// Memcached failed, or the configuration is invalid
    /// ([`MemcachedLimiterError::Config`] and kin); see [`MemcachedLimiterError`]. A request
    /// that was waiting gave its place back (best effort).
    #[error(transparent)]
    Store(#[from] MemcachedLimiterError),
}

/// A request that left the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Departure {
    waited: Duration,
    left_at: u64,
    queued: bool,
}

impl Departure {
    /// How long the call took, from `acquire` to the write that let it leave (tokio's clock).
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// When it left, on the shaper's [`Clock`] (nanoseconds): the reading the departure was
    /// decided at. Departures of one key are spaced by the schedule on this clock.
    pub fn left_at_nanos(&self) -> u64 {
        self.left_at
    }

    /// Whether it waited in the queue (false: it left on arrival).
    pub fn was_queued(&self) -> bool {
        self.queued
    }
}

/// Builds a [`MemcachedShaper`]; see [`MemcachedShaper::builder`]. Servers, prefix, timeout,
/// pool and clock are the limiter's settings ([`MemcachedLimiterBuilder`]), validated alike.
#[derive(Debug)]
#[must_use]
pub struct MemcachedShaperBuilder {
    limiter: MemcachedLimiterBuilder,
    burst: u64,
    max_queue: usize,
    max_wait: Option<Duration>,
    poll_interval: Duration,
    lease_grace: Duration,
}

impl MemcachedShaperBuilder {
    /// Adds a server (see [`MemcachedLimiterBuilder::server`]); each key's queue lives on one.
    pub fn server(mut self, address: impl Into<String>) -> Self {
        self.limiter = self.limiter.server(address);
        self
    }

    /// The departure rate of every key (required): a [`Rate`] or text such as `"10/s"`.
    pub fn rate(mut self, rate: impl RateSpec) -> Self {
        self.limiter = self.limiter.rate(rate);
        self
    }

    /// How much cost may leave at once after an idle spell, and the largest cost of one
    /// request (default 1).
    pub fn burst(mut self, burst: u64) -> Self {
        self.burst = burst;
        self
    }

    /// The most requests that may wait at once per key (default 1000, at most [`MAX_QUEUE`]).
    pub fn max_queue(mut self, max: usize) -> Self {
        self.max_queue = max;
        self
    }

    /// The longest a request may be told to wait (default and upper bound: [`MAX_WAIT`]).
    pub fn max_wait(mut self, max: Duration) -> Self {
        self.max_wait = Some(max);
        self
    }

    /// The longest a waiter sleeps between two polls (default 50 ms): how soon it notices
    /// that the queue moved faster than estimated (a cancellation, a purged ticket).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// How late a waiter may be past its expected renewal before its ticket is purged (default
    /// 1 s). Bounds how long a crashed holder blocks its queue.
    pub fn lease_grace(mut self, grace: Duration) -> Self {
        self.lease_grace = grace;
        self
    }

    /// The first part of every memcached key (default `traffik`), as for the limiter.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.limiter = self.limiter.prefix(prefix);
        self
    }

    /// The longest one memcached operation (enqueue, one poll, cancel) may take (default
    /// 500 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.limiter = self.limiter.timeout(timeout);
        self
    }

    /// Connections kept per server (default 8).
    pub fn pool_size(mut self, connections: usize) -> Self {
        self.limiter = self.limiter.pool_size(connections);
        self
    }

    /// How many read-modify-write rounds one operation may take under contention (default 64)
    /// before failing with [`MemcachedLimiterError::Contention`], having written nothing.
    pub fn cas_attempts(mut self, attempts: u32) -> Self {
        self.limiter = self.limiter.cas_attempts(attempts);
        self
    }

    /// The clock every decision reads (default [`SystemClock`](crate::SystemClock)); all
    /// shapers of a key must read synchronised clocks.
    pub fn clock(mut self, clock: impl Clock + Send + Sync + 'static) -> Self {
        self.limiter = self.limiter.clock(clock);
        self
    }

    /// Checks the configuration and builds the shaper; every bad setting is a
    /// [`MemcachedLimiterError`] (`Config`, `Rate` or `Algorithm`). Nothing connects yet.
    pub fn build(self) -> Result<MemcachedShaper, MemcachedLimiterError> {
        let cfg = |m: String| MemcachedLimiterError::Config(m);
        let rate: Rate = match &self.limiter.rate {
            None => return Err(cfg("a rate is required".into())),
            Some(Err(e)) => return Err(MemcachedLimiterError::Rate(*e)),
            Some(Ok(r)) => *r,
        };
        if rate.is_unlimited() {
            return Err(cfg("a shaper needs a finite rate".into()));
        }
        let gcra = Gcra::with_burst(rate, self.burst).map_err(MemcachedLimiterError::Algorithm)?;
        let nanos = |d: Duration, what: &str| match u64::try_from(d.as_nanos()) {
            Ok(n) if n > 0 && n <= 1 << 52 => Ok(n),
            _ => Err(cfg(format!(
                "the {what} must be positive and at most {MAX_WAIT:?}, not {d:?}"
            ))),
        };
        let poll = nanos(self.poll_interval, "poll interval")?;
        let grace = nanos(self.lease_grace, "lease grace")?;
        let max_wait = match self.max_wait {
            None => MAX_WAIT,
            Some(w) if w > MAX_WAIT => {
                return Err(cfg(format!(
                    "the maximum wait {w:?} exceeds the most a shaper can grant, {MAX_WAIT:?}"
                )))
            }
            Some(w) => w,
        };
        if self.max_queue > MAX_QUEUE {
            return Err(cfg(format!(
                "a queue of {} tickets would make an item of {} bytes, past memcached's \
                 default 1 MB item size; at most {MAX_QUEUE} fit",
                self.max_queue,
                HEADER + TICKET * self.max_queue
            )));
        }
        // The limiter validates servers, prefix, timeout, pool and attempts, and owns the pool.
        let limiter = self
            .limiter
            .algorithm(AlgorithmKind::Gcra)
            .burst(self.burst)
            .build()?;
        let params = Params {
            interval: gcra.interval_nanos(),
            burst: self.burst,
            max_queue: self.max_queue,
            // Exact: at most 2^52.
            max_wait: u64::try_from(max_wait.as_nanos()).unwrap_or(1 << 52),
            poll,
            grace,
        };
        Ok(MemcachedShaper {
            inner: Arc::new(Inner {
                limiter,
                params,
                max_wait,
                poll: self.poll_interval,
            }),
        })
    }
}

#[derive(Debug)]
struct Inner {
    limiter: MemcachedLimiter,
    params: Params,
    max_wait: Duration,
    poll: Duration,
}

/// A traffic shaper whose queues live in memcached: requests for one key, from any number of
/// processes, leave one by one at the configured rate, first come first served. Cheap to
/// clone; clones share the connections. See the [module docs](self) for the protocol.
#[derive(Debug, Clone)]
pub struct MemcachedShaper {
    inner: Arc<Inner>,
}

impl MemcachedShaper {
    /// Starts a builder on `server` (`"127.0.0.1:11211"`, `"memcache://host:port"`; add more
    /// with [`server`](MemcachedShaperBuilder::server)).
    pub fn builder(server: impl Into<String>) -> MemcachedShaperBuilder {
        MemcachedShaperBuilder {
            limiter: MemcachedLimiter::builder(server),
            burst: 1,
            max_queue: 1000,
            max_wait: None,
            poll_interval: Duration::from_millis(50),
            lease_grace: Duration::from_secs(1),
        }
    }

    /// The memcached key holding `key`'s queue.
    pub fn memcached_key(&self, key: impl AsRef<[u8]>) -> Vec<u8> {
        keys::memcached_key(self.inner.limiter.prefix(), "shape", key.as_ref())
    }

    /// Waits for `key`'s turn to send `cost` units, then returns when (and after how long) the
    /// request left. Refusals are decided when the enqueue lands, and cost nothing. Dropping
    /// the future while it waits gives its place back.
    pub async fn acquire(
        &self,
        key: impl AsRef<[u8]>,
        cost: u64,
    ) -> Result<Departure, MemcachedShapeError> {
        let started = tokio::time::Instant::now();
        let inner = &self.inner;
        let p = inner.params;
        if cost > p.burst {
            return Err(ShapeError::InsufficientCapacity { cost, max: p.burst }.into());
        }
        let mkey = self.memcached_key(key);
        let answer =
            store::update(&inner.limiter, &mkey, |s, now| s.enqueue(&p, now, cost)).await?;
        let (seq, mut wait) = match answer {
            Answer::Left(at) => {
                return Ok(Departure {
                    waited: started.elapsed(),
                    left_at: at,
                    queued: false,
                })
            }
            Answer::QueueFull => {
                return Err(ShapeError::QueueFull { max: p.max_queue }.into());
            }
            Answer::WaitTooLong(wait) => {
                return Err(ShapeError::WaitTooLong {
                    wait: Duration::from_nanos(wait),
                    max: inner.max_wait,
                }
                .into())
            }
            Answer::Queued { seq, wait } => (seq, wait),
            other => return Err(unexpected("enqueue", other).into()),
        };
        // From here on, dropping this future (or failing) removes the ticket.
        let mut ticket = Ticket {
            inner: Arc::clone(inner),
            mkey,
            seq,
            armed: true,
        };
        loop {
            // Told 0 while not the head: the head may leave now but has not polled yet; look
            // again after an interval (at least 1 ms, at most a poll interval).
            let nap = if wait == 0 {
                Duration::from_nanos(p.interval)
                    .max(Duration::from_millis(1))
                    .min(inner.poll)
            } else {
                Duration::from_nanos(wait).min(inner.poll)
            };
            tokio::time::sleep(nap).await;
            let answer = store::update(&inner.limiter, &ticket.mkey, |s, now| {
                s.depart(&p, now, seq)
            })
            .await?;
            match answer {
                Answer::Left(at) => {
                    ticket.armed = false;
                    return Ok(Departure {
                        waited: started.elapsed(),
                        left_at: at,
                        queued: true,
                    });
                }
                Answer::Waiting(w) => wait = w,
                Answer::Gone => {
                    ticket.armed = false;
                    return Err(MemcachedShapeError::LeaseExpired);
                }
                other => return Err(unexpected("depart", other).into()),
            }
        }
    }
}

fn unexpected(op: &str, answer: Answer) -> MemcachedLimiterError {
    MemcachedLimiterError::Config(format!("internal: the {op} operation answered {answer:?}"))
}

/// A waiting request's ticket. Dropped while armed (the future was dropped, or failed), it
/// removes itself from the queue in a task on the current tokio runtime; if there is none, or
/// the removal fails, the ticket's lease runs out and the next operation on the key purges it.
struct Ticket {
    inner: Arc<Inner>,
    mkey: Vec<u8>,
    seq: u64,
    armed: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = Arc::clone(&self.inner);
        let mkey = std::mem::take(&mut self.mkey);
        let seq = self.seq;
        runtime.spawn(async move {
            // Best effort: a failure leaves the ticket to its lease.
            let _ = store::update(&inner.limiter, &mkey, |s, now| s.cancel(now, seq)).await;
        });
    }
}
