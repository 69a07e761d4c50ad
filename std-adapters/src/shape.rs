//! Traffic shaping: the leaky bucket as a queue. Requests wait their turn (first come, first
//! served, asynchronously) instead of being refused, and leave at the configured rate.
//!
//! **Schedule.** A shaper keeps GCRA's theoretical arrival time (TAT) for the requests that
//! have *left* the queue, with emission interval `T = ceil(period / limit)` and a burst `b`
//! (default 1: requests leave exactly `T * cost` apart). A request of cost `c` may leave at
//! `now` iff `max(TAT, now) + c * T <= now + b * T`; leaving moves the TAT to
//! `max(TAT, now) + c * T`. Only the request at the head of the queue may leave, and only when
//! that test passes, so the departures obey GCRA's bound (at most `b + ceil(W / T) - 1` units
//! in any `W` nanoseconds) whatever happens to the waiters.
//!
//! **Admission to the queue.** [`Shaper::acquire`] decides at once, when it is called (not when
//! its future is first polled), so call order is queue order:
//!
//! * a request that can leave now, with nobody ahead of it, leaves at once;
//! * otherwise it joins the queue at the back, unless the queue already holds
//!   [`max_queue`](ShapeConfig::max_queue) requests ([`ShapeError::QueueFull`]) or its
//!   departure time would be more than [`max_wait`](ShapeConfig::max_wait) away
//!   ([`ShapeError::WaitTooLong`]). Its departure time is exact: with `Q` units queued ahead,
//!   `max(now, max(TAT, now) + Q * T - (b - c) * T)`, the time it leaves if everyone ahead
//!   leaves on time;
//! * a cost above the burst is [`ShapeError::InsufficientCapacity`].
//!
//! Every error is returned by the future's first poll, and nothing was charged or queued.
//!
//! **Cancellation gives the slot back.** Dropping a waiting future removes it from the queue.
//! The TAT only moves when a request leaves, so a cancelled request never charged anything:
//! everyone behind it moves up by its cost, and leaves exactly when it would have had the
//! cancelled request never arrived. No rule can let the schedule run faster than the rate,
//! because the schedule is the departures themselves, not the reservations. Only the head of
//! the queue holds a timer (at its exact departure time); the others wait to be woken when the
//! request ahead of them leaves or is cancelled.
//!
//! A request that has left is final: there is nothing to give back once the future has
//! returned.
//!
//! Time is `tokio::time::Instant`, so shapers follow tokio's paused test clock.

use std::collections::BTreeMap;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::{Instant, Sleep};
use traffik_core::{ConfigError, Gcra, Rate};

pub use traffik_core::ShapeError;

/// How a shaper paces requests.
///
/// ```
/// use std::time::Duration;
/// use traffik::shape::ShapeConfig;
/// use traffik::Rate;
///
/// let config = ShapeConfig::new(Rate::per_second(10))
///     .burst(2)
///     .max_queue(100)
///     .max_wait(Duration::from_secs(5));
/// assert_eq!(config.rate(), Rate::per_second(10));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShapeConfig {
    rate: Rate,
    burst: u64,
    max_queue: Option<usize>,
    max_wait: Option<Duration>,
}

impl ShapeConfig {
    /// Departures at `rate`, one request's worth at a time (burst 1), with no bound on the
    /// queue or the wait.
    pub fn new(rate: Rate) -> Self {
        ShapeConfig {
            rate,
            burst: 1,
            max_queue: None,
            max_wait: None,
        }
    }

    /// How much cost may leave at once after an idle spell (and the largest cost of one
    /// request).
    pub fn burst(mut self, burst: u64) -> Self {
        self.burst = burst;
        self
    }

    /// The most requests that may wait at once (those leaving at once are not counted).
    pub fn max_queue(mut self, max: usize) -> Self {
        self.max_queue = Some(max);
        self
    }

    /// The longest a request may be told to wait.
    pub fn max_wait(mut self, max: Duration) -> Self {
        self.max_wait = Some(max);
        self
    }

    /// The rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }
}

/// One waiting request.
#[derive(Debug)]
struct Waiter {
    cost: u64,
    waker: Option<Waker>,
}

#[derive(Debug)]
struct State {
    /// Nanoseconds since `Core::epoch`; 0 is fresh.
    tat: u64,
    /// Waiting requests by ticket; tickets grow, so the first entry is the head of the queue.
    queue: BTreeMap<u64, Waiter>,
    /// The total cost waiting.
    queued: u64,
    next_ticket: u64,
}

/// A validated configuration.
#[derive(Clone, Copy, Debug)]
struct Params {
    interval: u64,
    burst: u64,
    max_queue: Option<usize>,
    max_wait: Option<Duration>,
}

impl Params {
    fn new(config: &ShapeConfig) -> Result<Self, ConfigError> {
        // GCRA validates the rate and the burst the same way and gives the interval.
        let gcra = Gcra::with_burst(config.rate, config.burst)?;
        Ok(Params {
            interval: gcra.interval_nanos(),
            burst: config.burst,
            max_queue: config.max_queue,
            max_wait: config.max_wait,
        })
    }
}

/// One queue: configuration, clock epoch, state.
#[derive(Debug)]
struct Core {
    interval: u64,
    burst: u64,
    max_queue: Option<usize>,
    max_wait: Option<Duration>,
    epoch: Instant,
    state: Mutex<State>,
}

impl Core {
    fn new(p: Params) -> Self {
        Core {
            interval: p.interval,
            burst: p.burst,
            max_queue: p.max_queue,
            max_wait: p.max_wait,
            epoch: Instant::now(),
            state: Mutex::new(State {
                tat: 0,
                queue: BTreeMap::new(),
                queued: 0,
                next_ticket: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock; if some did, the state is still consistent
        // (every update is a few plain stores), so carry on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> u64 {
        self.since_epoch(Instant::now())
    }

    fn since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// When a request of `cost` with `ahead` units queued before it leaves, if everyone ahead
    /// leaves on time.
    fn departure(&self, state: &State, now: u64, ahead: u64, cost: u64) -> u64 {
        let virtual_tat = state
            .tat
            .max(now)
            .saturating_add(ahead.saturating_mul(self.interval));
        virtual_tat
            .saturating_sub((self.burst - cost) * self.interval)
            .max(now)
    }

    /// Leaves now: moves the TAT.
    fn depart(&self, state: &mut State, now: u64, cost: u64) {
        state.tat = state.tat.max(now).saturating_add(cost * self.interval);
    }

    fn enter(self: &Arc<Self>, cost: u64) -> Shaped {
        let created = Instant::now();
        let fail = |e| Shaped::done(Arc::clone(self), created, Err(e));
        if cost > self.burst {
            return fail(ShapeError::InsufficientCapacity {
                cost,
                max: self.burst,
            });
        }
        let mut state = self.lock();
        // One clock read: the request's creation is its arrival.
        let now = self.since_epoch(created);
        let at = self.departure(&state, now, state.queued, cost);
        if state.queue.is_empty() && at <= now {
            self.depart(&mut state, now, cost);
            drop(state);
            return Shaped::done(Arc::clone(self), created, Ok(Duration::ZERO));
        }
        if let Some(max) = self.max_queue {
            if state.queue.len() >= max {
                return fail(ShapeError::QueueFull { max });
            }
        }
        if let Some(max) = self.max_wait {
            let wait = Duration::from_nanos(at - now);
            if wait > max {
                return fail(ShapeError::WaitTooLong { wait, max });
            }
        }
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.insert(ticket, Waiter { cost, waker: None });
        state.queued += cost;
        drop(state);
        Shaped {
            core: Arc::clone(self),
            ticket: Some(ticket),
            cost,
            created,
            sleep: None,
            outcome: None,
        }
    }

    /// The head of the queue's waker, if any (after the one before it left or was
    /// cancelled). Woken by the caller once the lock is released, so an executor that polls
    /// inside `wake` cannot deadlock on the state's mutex.
    fn head_waker(state: &mut State) -> Option<Waker> {
        state
            .queue
            .iter_mut()
            .next()
            .and_then(|(_, head)| head.waker.take())
    }

    fn cancel(&self, ticket: u64) {
        let mut state = self.lock();
        let was_head = state.queue.keys().next() == Some(&ticket);
        if let Some(w) = state.queue.remove(&ticket) {
            state.queued -= w.cost;
        }
        let next = if was_head {
            Self::head_waker(&mut state)
        } else {
            None
        };
        drop(state);
        if let Some(waker) = next {
            waker.wake();
        }
    }

    fn is_idle(&self) -> bool {
        let state = self.lock();
        state.queue.is_empty() && state.tat <= self.now()
    }

    fn queue_len(&self) -> usize {
        self.lock().queue.len()
    }
}

/// The future of one request's turn: resolves to how long it waited, or to the reason it was
/// turned away. Dropping it before it resolves gives its place back.
#[derive(Debug)]
#[must_use = "the request waits only while this future is polled; dropping it gives the place back"]
pub struct Shaped {
    core: Arc<Core>,
    /// The ticket while queued.
    ticket: Option<u64>,
    cost: u64,
    created: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Decided when the request was made.
    outcome: Option<Result<Duration, ShapeError>>,
}

impl Shaped {
    fn done(core: Arc<Core>, created: Instant, outcome: Result<Duration, ShapeError>) -> Self {
        Shaped {
            core,
            ticket: None,
            cost: 0,
            created,
            sleep: None,
            outcome: Some(outcome),
        }
    }
}

impl Future for Shaped {
    type Output = Result<Duration, ShapeError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Some(outcome) = this.outcome.take() {
            return Poll::Ready(outcome);
        }
        let Some(ticket) = this.ticket else {
            // Polled again after it resolved.
            return Poll::Pending;
        };
        loop {
            let mut state = this.core.lock();
            let head = state.queue.keys().next().copied();
            if head != Some(ticket) {
                // Someone is ahead: wait to be woken when the head leaves or is cancelled.
                if let Some(w) = state.queue.get_mut(&ticket) {
                    w.waker = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
            let now = this.core.now();
            let at = this.core.departure(&state, now, 0, this.cost);
            if at <= now {
                this.core.depart(&mut state, now, this.cost);
                state.queue.remove(&ticket);
                state.queued -= this.cost;
                let next = Core::head_waker(&mut state);
                drop(state);
                if let Some(waker) = next {
                    waker.wake();
                }
                this.ticket = None;
                return Poll::Ready(Ok(Instant::now().saturating_duration_since(this.created)));
            }
            if let Some(w) = state.queue.get_mut(&ticket) {
                w.waker = Some(cx.waker().clone());
            }
            drop(state);
            let deadline = this.core.epoch + Duration::from_nanos(at);
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl Drop for Shaped {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.core.cancel(ticket);
        }
    }
}

/// A leaky bucket as a queue for one stream of requests (one upstream, one connection).
///
/// Cheap to clone: clones share the queue.
///
/// ```
/// use std::time::Duration;
/// use traffik::shape::{ShapeConfig, Shaper};
/// use traffik::Rate;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let shaper = Shaper::new(ShapeConfig::new(Rate::per_second(10)))?;
/// let start = tokio::time::Instant::now();
/// shaper.acquire(1).await?; // leaves at once
/// let waited = shaper.acquire(1).await?; // 100 ms later
/// assert_eq!(waited, Duration::from_millis(100));
/// assert_eq!(start.elapsed(), Duration::from_millis(100));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Shaper {
    core: Arc<Core>,
}

impl Shaper {
    /// A shaper with an empty queue; the rate and burst are checked as GCRA's are.
    pub fn new(config: ShapeConfig) -> Result<Self, ConfigError> {
        Ok(Shaper {
            core: Arc::new(Core::new(Params::new(&config)?)),
        })
    }

    /// Takes a place in the queue for `cost` now (see the [module docs](self) for the rules);
    /// the future resolves when the request may go, with how long it waited.
    pub fn acquire(&self, cost: u64) -> Shaped {
        self.core.enter(cost)
    }

    /// How many requests are waiting.
    pub fn queue_len(&self) -> usize {
        self.core.queue_len()
    }
}

/// A leaky bucket as a queue per key: each key has its own queue and schedule.
///
/// ```
/// use std::time::Duration;
/// use traffik::shape::{KeyedShaper, ShapeConfig};
/// use traffik::Rate;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let shaper: KeyedShaper<String> = KeyedShaper::new(ShapeConfig::new(Rate::per_second(2)))?;
/// shaper.acquire("a", 1).await?;
/// shaper.acquire("b", 1).await?; // another key's queue: no wait
/// assert_eq!(shaper.acquire("a", 1).await?, Duration::from_millis(500));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct KeyedShaper<K: Hash + Eq> {
    params: Params,
    queues: DashMap<K, Arc<Core>>,
}

impl<K: Hash + Eq + Clone> KeyedShaper<K> {
    /// A keyed shaper; `config` applies to every key's queue.
    pub fn new(config: ShapeConfig) -> Result<Self, ConfigError> {
        Ok(KeyedShaper {
            params: Params::new(&config)?,
            queues: DashMap::new(),
        })
    }

    fn core<Q>(&self, key: &Q) -> Arc<Core>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(core) = self.queues.get(key) {
            return Arc::clone(core.value());
        }
        let entry = self
            .queues
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(Core::new(self.params)));
        Arc::clone(entry.value())
    }

    /// Takes a place in `key`'s queue for `cost` now; as [`Shaper::acquire`].
    pub fn acquire<Q>(&self, key: &Q, cost: u64) -> Shaped
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.core(key).enter(cost)
    }

    /// How many requests wait in `key`'s queue.
    pub fn queue_len<Q>(&self, key: &Q) -> usize
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.queues.get(key).map_or(0, |c| c.queue_len())
    }

    /// Drops the queues that are empty, whose schedule has caught up with now, and that no
    /// request holds; returns how many. Such a queue decides like a new one.
    pub fn remove_idle(&self) -> usize {
        let before = self.queues.len();
        // Holding the shard's write lock, no lookup can share a queue out meanwhile.
        self.queues
            .retain(|_, core| Arc::strong_count(core) > 1 || !core.is_idle());
        before.saturating_sub(self.queues.len())
    }

    /// How many keys have a queue.
    pub fn len(&self) -> usize {
        self.queues.len()
    }

    /// Whether no key has a queue.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }
}
