//! Traffic shaping on Redis: the leaky bucket as a first-come-first-served queue per key,
//! shared by every process that shapes that key. The distributed counterpart of the in-process
//! shaper (`traffik::shape::Shaper`), with the same schedule and the same refusals.
//!
//! **Schedule.** Each key keeps GCRA's theoretical arrival time (TAT) of the requests that have
//! *left* its queue, with emission interval `T = ceil(period / limit)` and a burst `b` (default
//! 1: requests leave `T * cost` apart). A request of cost `c` may leave at `now` iff
//! `max(TAT, now) + c * T <= now + b * T`; leaving moves the TAT to `max(TAT, now) + c * T`.
//! Only the head of the queue may leave, and only when that test passes, so the departures obey
//! GCRA's bound (at most `b + ceil(W / T) - 1` units in any `W` nanoseconds of Redis time)
//! whatever the waiters do: the TAT moves only on a departure, never on a reservation.
//!
//! **Admission** is decided by one script when the call reaches Redis, so the order in which
//! the calls reach Redis (from any process) is the queue order. (Unlike the in-process
//! shaper, whose queue position is fixed when `acquire` is called, calls started at the same
//! moment, even from one task, may reach Redis in either order.) When the script runs:
//!
//! * a request that can leave now, with nobody queued, leaves at once;
//! * otherwise it joins the back of the queue, unless the queue already holds
//!   [`max_queue`](RedisShaperBuilder::max_queue) requests ([`ShapeError::QueueFull`]) or
//!   its departure would be more than [`max_wait`](RedisShaperBuilder::max_wait) away
//!   ([`ShapeError::WaitTooLong`]). With `Q` units queued ahead, the departure estimate is
//!   `max(now, max(TAT, now) + Q * T - (b - c) * T)`, exact if everyone ahead leaves on time;
//! * a cost above the burst is [`ShapeError::InsufficientCapacity`], refused without a
//!   round trip.
//!
//! A refused request queued and charged nothing.
//!
//! **Waiting.** A queued request holds a *ticket* and sleeps until its estimate or for one
//! [`poll_interval`](RedisShaperBuilder::poll_interval), whichever is sooner, then runs the
//! depart script: if its ticket is the head and GCRA admits it now, the ticket is removed and
//! the TAT moves (it has left); otherwise it gets a fresh estimate and sleeps again. So a
//! request leaves at most one round trip after its turn when it is on time, and within one
//! poll interval when the requests ahead of it changed (a cancellation, a late holder).
//!
//! As in process, a departure that comes late (here by a round trip, or a poll interval for a
//! waiter whose turn came early) pushes the schedule back by as much when the burst is 1: the
//! TAT moves from the moment of the departure. A burst of 2 or more absorbs such delays.
//!
//! **Cancellation gives the slot back.** Dropping the future of a waiting request removes its
//! ticket (a best-effort task spawned on the current tokio runtime; if that fails, the lease
//! below removes it). It never charged anything, so everyone behind it moves up by its cost and
//! sees so at their next poll: the slot is given back within one poll interval. No
//! cancellation can make departures faster than the rate, since the schedule is the departures.
//!
//! **Leases.** Every ticket carries a lease: the time of its last script plus the time until
//! it must poll again (its estimate, at most the poll interval) plus
//! [`lease_grace`](RedisShaperBuilder::lease_grace). A holder that crashed or stalled past its
//! lease is purged by the next script on that key, so it blocks the queue for at most one poll
//! interval and one grace; if it polls afterwards it gets [`RedisShapeError::LeaseExpired`].
//! The grace must cover a round trip and the holder's scheduling delays.
//!
//! **Failures.** A Redis failure while waiting ends the call with [`RedisShapeError::Redis`]
//! and gives the place back (best effort). An enqueue whose reply was lost
//! ([`RedisLimiterError::is_indeterminate`]) may have queued a ticket nobody holds: it blocks
//! the queue until its lease runs out, one poll interval and one grace after it was queued.
//!
//! **Keys and time.** Per user key, four keys in one cluster hash slot:
//! `<prefix>:{<key>}:shape:tat` (the TAT, stored like the GCRA script's, with a TTL until it
//! is fresh), `…:shape:q` (sorted set of tickets `"<seq>:<cost>"` by sequence: the queue),
//! `…:shape:l` (the same tickets by lease deadline) and `…:shape:m` (hash: the last sequence
//! and the units queued). The queue's keys live until the last lease and are deleted when the
//! queue empties, so abandoned queues vanish. Sequences only grow (reseeded from the clock),
//! so a stale ticket never names a newer request. All times are Redis `TIME` read inside the
//! scripts (microseconds), so processes need no synchronised clocks; the departure times
//! reported by [`Departure::left_at`] are on Redis's clock.
//!
//! **Costs.** Each script is one round trip; the depart script of a request at position `p`
//! reads the `p` tickets ahead of it to sum their costs, so a long queue costs Redis
//! `O(queue length)` per poll per waiter. Keep queues short with `max_queue`.
//!
//! **Bounds.** Estimates are computed in Lua doubles, exact below 2^53 ns; a wait above
//! [`MAX_WAIT`] (2^52 ns, about 52 days) is always refused as `WaitTooLong`, and
//! `burst * interval` is at most 2^51 ns as for [`RedisLimiter`].
//!
//! ```no_run
//! use std::time::Duration;
//! use traffik_redis::{Rate, RedisShaper};
//!
//! # async fn demo() -> Result<(), traffik_redis::RedisShapeError> {
//! let shaper = RedisShaper::builder("redis://127.0.0.1:6380/")
//!     .rate(Rate::per_second(10))
//!     .max_queue(100)
//!     .max_wait(Duration::from_secs(5))
//!     .build()
//!     .await?;
//! let departure = shaper.acquire("upstream-api", 1).await?;
//! println!("waited {:?}", departure.waited());
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use traffik_core::{Gcra, Rate, ShapeError};

use crate::connection::Target;
use crate::error::RedisLimiterError;
use crate::limiter::RedisLimiter;

mod script;
mod ticket;

use script::{parse, Answer, Constants, QueueKeys, ShapeScript};
use ticket::Ticket;

/// The longest wait a shaper can grant (2^52 ns, about 52 days): longer waits are refused as
/// [`ShapeError::WaitTooLong`] whatever the configured maximum.
pub const MAX_WAIT: Duration = Duration::from_nanos(1 << 52);

/// Why a request did not leave: one of the shaper's refusals (nothing queued or charged), a
/// purged ticket, or a Redis failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisShapeError {
    /// One of the shaper's refusals, in the same words as the in-process shaper's: the
    /// queue is full, the wait would pass the maximum (the configured one, or [`MAX_WAIT`]), or
    /// the cost exceeds the burst. Nothing was queued or charged.
    #[error(transparent)]
    Refused(#[from] ShapeError),
    /// The request's ticket was purged because it did not poll within its lease (its task
    /// stalled longer than the lease grace). It did not leave and holds no place.
    #[error("the request's place in the shaping queue expired before it polled again")]
    LeaseExpired,
    /// Redis failed (or the configuration is invalid); see [`RedisLimiterError`]. A request
    /// that was waiting gave its place back (best effort).
    #[error(transparent)]
    Redis(#[from] RedisLimiterError),
}

/// A request that left the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Departure {
    waited: Duration,
    left_at: SystemTime,
    queued: bool,
}

impl Departure {
    /// How long the call took, from `acquire` to the reply that let it leave (this process's
    /// clock).
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// When it left, on Redis's clock (`TIME`, microseconds): departures of one key are
    /// spaced by the schedule on this clock.
    pub fn left_at(&self) -> SystemTime {
        self.left_at
    }

    /// Whether it waited in the queue (false: it left on arrival).
    pub fn was_queued(&self) -> bool {
        self.queued
    }
}

/// Builds a [`RedisShaper`]; see [`RedisShaper::builder`].
#[derive(Debug)]
#[must_use]
pub struct RedisShaperBuilder {
    target: Target,
    rate: Option<Rate>,
    burst: u64,
    max_queue: Option<usize>,
    max_wait: Option<Duration>,
    poll_interval: Duration,
    lease_grace: Duration,
    prefix: String,
    timeout: Duration,
}

impl RedisShaperBuilder {
    /// The departure rate of every key (required).
    pub fn rate(mut self, rate: Rate) -> Self {
        self.rate = Some(rate);
        self
    }

    /// How much cost may leave at once after an idle spell, and the largest cost of one
    /// request (default 1).
    pub fn burst(mut self, burst: u64) -> Self {
        self.burst = burst;
        self
    }

    /// The most requests that may wait at once per key (default: no bound).
    pub fn max_queue(mut self, max: usize) -> Self {
        self.max_queue = Some(max);
        self
    }

    /// The longest a request may be told to wait (default and upper bound: [`MAX_WAIT`]).
    pub fn max_wait(mut self, max: Duration) -> Self {
        self.max_wait = Some(max);
        self
    }

    /// The longest a waiter sleeps between two depart scripts (default 50 ms): how soon it
    /// notices that the queue moved faster than estimated (a cancellation, a purged ticket).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// How late past its expected poll a waiter may be before its ticket is purged (default
    /// 1 s). Bounds how long a crashed holder blocks its queue.
    pub fn lease_grace(mut self, grace: Duration) -> Self {
        self.lease_grace = grace;
        self
    }

    /// The namespace put before every key (default `traffik`). It may not contain braces.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The most one script call may take, connecting included (default 1 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Validates the configuration and connects.
    pub async fn build(self) -> Result<RedisShaper, RedisLimiterError> {
        let cfg = |reason: &str| RedisLimiterError::config(reason);
        let rate = self.rate.ok_or_else(|| cfg("a rate is required"))?;
        if rate.is_unlimited() {
            return Err(cfg("a shaper needs a finite rate"));
        }
        let gcra = Gcra::with_burst(rate, self.burst).map_err(|e| {
            RedisLimiterError::config_from(
                format!(
                    "traffik-core refuses GCRA at {rate} with burst {}",
                    self.burst
                ),
                e,
            )
        })?;
        let nanos = |d: Duration, what: &str| -> Result<u64, RedisLimiterError> {
            match u64::try_from(d.as_nanos()) {
                Ok(n) if n > 0 && n <= 1 << 52 => Ok(n),
                _ => Err(cfg(&format!(
                    "the {what} must be positive and at most {MAX_WAIT:?}, not {d:?}"
                ))),
            }
        };
        let poll = nanos(self.poll_interval, "poll interval")?;
        let grace = nanos(self.lease_grace, "lease grace")?;
        let max_wait = match self.max_wait {
            None => MAX_WAIT,
            Some(w) if w > MAX_WAIT => {
                return Err(cfg(&format!(
                    "the maximum wait {w:?} exceeds the most a shaper can grant, {MAX_WAIT:?}"
                )))
            }
            Some(w) => w,
        };
        // The limiter validates the prefix, the timeout and `burst * interval` exactly as for
        // GCRA checks, and carries the transport (NOSCRIPT recovery, redirects, deadlines).
        let limiter = RedisLimiter::builder(self.target)
            .rate(rate)
            .burst(self.burst)
            .prefix(self.prefix.clone())
            .timeout(self.timeout)
            .build()
            .await?;
        let consts = Constants {
            interval: gcra.interval_nanos(),
            burst: self.burst,
            max_queue: self.max_queue,
            // Exact: at most 2^52.
            max_wait: max_wait.as_nanos() as u64,
            poll,
            grace,
        };
        Ok(RedisShaper {
            inner: Arc::new(Inner {
                limiter,
                prefix: self.prefix,
                timeout: self.timeout,
                poll: self.poll_interval,
                max_wait,
                consts,
                enqueue: ShapeScript::enqueue(&consts),
                depart: ShapeScript::depart(&consts),
                cancel: ShapeScript::cancel(&consts),
            }),
        })
    }
}

#[derive(Debug)]
struct Inner {
    limiter: RedisLimiter,
    prefix: String,
    timeout: Duration,
    poll: Duration,
    max_wait: Duration,
    consts: Constants,
    enqueue: ShapeScript,
    depart: ShapeScript,
    cancel: ShapeScript,
}

impl Inner {
    /// One script call through the limiter's transport, under the call timeout.
    async fn run(
        &self,
        script: &ShapeScript,
        keys: &QueueKeys,
        arg: &[u8],
    ) -> Result<Answer, RedisLimiterError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let reply = self
            .limiter
            .send_script(&keys.queue, deadline, false, |by_sha| {
                script.command(by_sha, keys, arg)
            })
            .await?;
        parse(reply, &keys.label())
    }
}

/// A traffic shaper whose queues live in Redis: requests for one key, from any number of
/// processes, leave one by one at the configured rate, first come first served. Cheap to
/// clone; clones share the connection. See the [module docs](self) for the protocol.
#[derive(Debug, Clone)]
pub struct RedisShaper {
    inner: Arc<Inner>,
}

impl RedisShaper {
    /// Starts a builder connecting to `target`: a `redis://` URL, a [`redis::Client`], a
    /// [`ClusterClientBuilder`](redis::cluster::ClusterClientBuilder) or a [`Target`].
    pub fn builder(target: impl Into<Target>) -> RedisShaperBuilder {
        RedisShaperBuilder {
            target: target.into(),
            rate: None,
            burst: 1,
            max_queue: None,
            max_wait: None,
            poll_interval: Duration::from_millis(50),
            lease_grace: Duration::from_secs(1),
            prefix: "traffik".into(),
            timeout: Duration::from_secs(1),
        }
    }

    /// Waits for `key`'s turn to send `cost` units, then returns when (and after how long) the
    /// request left. Refusals are decided when the enqueue script runs, and cost nothing.
    /// Dropping the future while it waits gives its place back.
    pub async fn acquire(
        &self,
        key: impl AsRef<[u8]>,
        cost: u64,
    ) -> Result<Departure, RedisShapeError> {
        let started = tokio::time::Instant::now();
        let inner = &self.inner;
        if cost > inner.consts.burst {
            return Err(RedisShapeError::Refused(ShapeError::InsufficientCapacity {
                cost,
                max: inner.consts.burst,
            }));
        }
        let keys = QueueKeys::new(&inner.prefix, key.as_ref());
        let (seq, mut wait) = match inner
            .run(&inner.enqueue, &keys, cost.to_string().as_bytes())
            .await?
        {
            Answer::Left(left_at) => {
                return Ok(Departure {
                    waited: started.elapsed(),
                    left_at,
                    queued: false,
                })
            }
            Answer::QueueFull => {
                return Err(RedisShapeError::Refused(ShapeError::QueueFull {
                    max: inner.consts.max_queue.unwrap_or(usize::MAX),
                }))
            }
            Answer::WaitTooLong(wait) => {
                return Err(RedisShapeError::Refused(ShapeError::WaitTooLong {
                    wait,
                    max: inner.max_wait,
                }))
            }
            Answer::Queued { seq, wait } => (seq, wait),
            other => return Err(unexpected(&keys, "enqueue", other).into()),
        };
        // From here on, dropping this future (or failing) removes the ticket.
        let mut ticket = Ticket::new(Arc::clone(inner), keys, format!("{seq}:{cost}"));
        loop {
            // Told 0 while not the head: the head may leave now but has not polled yet; look
            // again after an interval (at least 1 ms, at most a poll interval).
            let nap = if wait.is_zero() {
                Duration::from_nanos(inner.consts.interval)
                    .max(Duration::from_millis(1))
                    .min(inner.poll)
            } else {
                wait.min(inner.poll)
            };
            tokio::time::sleep(nap).await;
            match inner
                .run(&inner.depart, ticket.keys(), ticket.id().as_bytes())
                .await?
            {
                Answer::Left(left_at) => {
                    ticket.disarm();
                    return Ok(Departure {
                        waited: started.elapsed(),
                        left_at,
                        queued: true,
                    });
                }
                Answer::Waiting(w) => wait = w,
                Answer::Gone => {
                    ticket.disarm();
                    return Err(RedisShapeError::LeaseExpired);
                }
                other => return Err(unexpected(ticket.keys(), "depart", other).into()),
            }
        }
    }
}

fn unexpected(keys: &QueueKeys, script: &str, answer: Answer) -> RedisLimiterError {
    RedisLimiterError::bad_reply(format!(
        "the {script} script for {} answered {answer:?}",
        keys.label()
    ))
}
