//! A lock-free circuit breaker whose whole state is one atomic `u64`.
//!
//! States and transitions:
//!
//! * **Closed**: every call is let through. Each failure adds one to a count of consecutive
//!   failures and a success sets it back to zero; the failure that makes it reach
//!   [`failure_threshold`](BreakerConfig::failure_threshold) opens the breaker.
//! * **Open**: no call is let through until [`recovery_timeout`](BreakerConfig::recovery_timeout)
//!   has passed since it opened. The first call after that moves it to half-open and is its
//!   probe.
//! * **Half-open**: exactly one call (the probe) is let through at a time; the others are turned
//!   away. Each successful probe counts; the one that reaches
//!   [`success_threshold`](BreakerConfig::success_threshold) closes the breaker. A failed probe
//!   opens it again, for another full recovery timeout.
//!
//! Every transition is one compare-and-swap on the word, so of any number of threads racing the
//! same transition exactly one makes it (the loom model in `loom-tests/tests/breaker.rs` checks
//! this). Each permit carries the *epoch* it was granted in (a counter bumped by every
//! transition), and a result reported for an earlier epoch is ignored: a slow call that was let
//! through while closed cannot close, reopen or count toward a later half-open state. (The
//! epoch has 16 bits: a permit outstanding across 65,536 further transitions would be taken for
//! a current one, and its one result counted.)
//!
//! The open deadline is kept in whole milliseconds of the breaker's [`Clock`], rounded up, so
//! the breaker stays open for at least the recovery timeout and at most one millisecond more.

use crate::sync::{AtomicU64, Ordering};
use std::fmt;
use std::time::Duration;
use traffik_core::Clock;

/// Bits 62..63: the state.
const STATE_SHIFT: u32 = 62;
/// Bit 61: a half-open probe is in flight.
const PROBE: u64 = 1 << 61;
/// Bits 45..60: the epoch, bumped by every transition (wraps).
const EPOCH_SHIFT: u32 = 45;
const EPOCH_MASK: u64 = 0xFFFF;
/// Bits 0..44: consecutive failures (closed), the reopen deadline in ms (open), or successful
/// probes (half-open).
const PAYLOAD_MASK: u64 = (1 << EPOCH_SHIFT) - 1;

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;

const NANOS_PER_MS: u64 = 1_000_000;

/// Where a breaker is in its cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls go through; failures are being counted.
    Closed,
    /// Calls are turned away until the recovery timeout has passed.
    Open,
    /// One probe at a time goes through to test the backend.
    HalfOpen,
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        })
    }
}

/// One decoded state word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Word(u64);

impl Word {
    #[inline]
    fn new(state: u64, probe: bool, epoch: u64, payload: u64) -> Word {
        let probe = if probe { PROBE } else { 0 };
        Word(
            state << STATE_SHIFT
                | probe
                | (epoch & EPOCH_MASK) << EPOCH_SHIFT
                | payload.min(PAYLOAD_MASK),
        )
    }
    #[inline]
    fn state(self) -> u64 {
        self.0 >> STATE_SHIFT
    }
    #[inline]
    fn probe(self) -> bool {
        self.0 & PROBE != 0
    }
    #[inline]
    fn epoch(self) -> u64 {
        self.0 >> EPOCH_SHIFT & EPOCH_MASK
    }
    #[inline]
    fn payload(self) -> u64 {
        self.0 & PAYLOAD_MASK
    }
    fn public_state(self) -> BreakerState {
        match self.state() {
            CLOSED => BreakerState::Closed,
            OPEN => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }
}

/// How a [`CircuitBreaker`] trips and recovers.
///
/// ```
/// use std::time::Duration;
/// use traffik::failover::BreakerConfig;
///
/// let config = BreakerConfig::new()
///     .failure_threshold(3)
///     .recovery_timeout(Duration::from_secs(5))
///     .success_threshold(2);
/// assert_eq!(config.get_failure_threshold(), 3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    failure_threshold: u32,
    success_threshold: u32,
    recovery_timeout: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl BreakerConfig {
    /// The defaults: open after 5 consecutive failures, probe after 10 s, close after 2
    /// successful probes.
    pub const fn new() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            success_threshold: 2,
            recovery_timeout: Duration::from_secs(10),
        }
    }

    /// Consecutive failures (while closed) that open the breaker; at least 1.
    pub const fn failure_threshold(mut self, failures: u32) -> Self {
        self.failure_threshold = failures;
        self
    }

    /// Successful probes (while half-open) that close it again; at least 1.
    pub const fn success_threshold(mut self, successes: u32) -> Self {
        self.success_threshold = successes;
        self
    }

    /// How long it stays open before letting a probe through.
    pub const fn recovery_timeout(mut self, timeout: Duration) -> Self {
        self.recovery_timeout = timeout;
        self
    }

    /// See [`failure_threshold`](Self::failure_threshold).
    pub const fn get_failure_threshold(&self) -> u32 {
        self.failure_threshold
    }

    /// See [`success_threshold`](Self::success_threshold).
    pub const fn get_success_threshold(&self) -> u32 {
        self.success_threshold
    }

    /// See [`recovery_timeout`](Self::recovery_timeout).
    pub const fn get_recovery_timeout(&self) -> Duration {
        self.recovery_timeout
    }

    /// Checks the thresholds.
    pub const fn validate(&self) -> Result<(), BreakerConfigError> {
        if self.failure_threshold == 0 {
            return Err(BreakerConfigError::ZeroFailureThreshold);
        }
        if self.success_threshold == 0 {
            return Err(BreakerConfigError::ZeroSuccessThreshold);
        }
        Ok(())
    }
}

/// Why a [`BreakerConfig`] was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BreakerConfigError {
    /// A breaker that opens after zero failures would never let anything through.
    #[error("breaker failure threshold must be at least 1")]
    ZeroFailureThreshold,
    /// A breaker that closes after zero probes would need no probe at all.
    #[error("breaker success threshold must be at least 1")]
    ZeroSuccessThreshold,
}

/// Why [`CircuitBreaker::acquire`] turned a call away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rejected {
    /// The breaker is open and its recovery timeout has not passed.
    Open,
    /// The breaker is half-open and its one probe is already in flight.
    ProbeInFlight,
}

/// A lock-free circuit breaker: see the [module docs](self) for its states.
///
/// ```
/// use std::time::Duration;
/// use traffik::failover::{BreakerConfig, BreakerState, CircuitBreaker};
/// use traffik::ManualClock;
///
/// let clock = ManualClock::new();
/// let config = BreakerConfig::new().failure_threshold(2).success_threshold(1);
/// let breaker = CircuitBreaker::new(config, &clock)?;
///
/// breaker.acquire().expect("closed").fail();
/// breaker.acquire().expect("closed").fail();
/// assert_eq!(breaker.state(), BreakerState::Open);
/// assert!(breaker.acquire().is_err());
///
/// clock.advance(Duration::from_secs(10));
/// let probe = breaker.acquire().expect("recovery timeout passed");
/// assert!(probe.is_probe());
/// probe.succeed();
/// assert_eq!(breaker.state(), BreakerState::Closed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct CircuitBreaker<C> {
    word: AtomicU64,
    trips: AtomicU64,
    clock: C,
    config: BreakerConfig,
    recovery_nanos: u64,
}

impl<C> fmt::Debug for CircuitBreaker<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Relaxed: a diagnostic snapshot; see `load`.
        let word = Word(self.word.load(Ordering::Relaxed));
        f.debug_struct("CircuitBreaker")
            .field("state", &word.public_state())
            .field("epoch", &word.epoch())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<C: Clock> CircuitBreaker<C> {
    /// A closed breaker reading time from `clock`.
    pub fn new(config: BreakerConfig, clock: C) -> Result<Self, BreakerConfigError> {
        config.validate()?;
        Ok(CircuitBreaker {
            word: AtomicU64::new(Word::new(CLOSED, false, 0, 0).0),
            trips: AtomicU64::new(0),
            clock,
            recovery_nanos: u64::try_from(config.recovery_timeout.as_nanos()).unwrap_or(u64::MAX),
            config,
        })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The clock it reads.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Its state now. An open breaker whose recovery timeout has passed still reads
    /// [`Open`](BreakerState::Open) until a call moves it to half-open.
    pub fn state(&self) -> BreakerState {
        self.load().public_state()
    }

    /// How many times it has opened (from closed, or again from half-open).
    pub fn trips(&self) -> u64 {
        // Relaxed: a counter read on its own; nothing else is inferred from it.
        self.trips.load(Ordering::Relaxed)
    }

    #[inline]
    fn load(&self) -> Word {
        // Relaxed: the word is the breaker's only shared state and publishes no other memory;
        // a stale read is caught by the compare-and-swap that follows it, and all operations on
        // one atomic are totally ordered (coherence), so no transition can be lost or doubled.
        Word(self.word.load(Ordering::Relaxed))
    }

    fn swap(&self, from: Word, to: Word) -> bool {
        // Relaxed on both outcomes: as in `load`, the word guards nothing but itself, and a
        // compare-and-swap is atomic whatever its ordering, so exactly one racer wins.
        self.word
            .compare_exchange_weak(from.0, to.0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// Asks to make a call: a [`Permit`] to report its outcome through, or why not.
    ///
    /// Closed: always granted, and costs one atomic load. Open: turned away until the recovery
    /// timeout has passed; the first call after it becomes the half-open probe. Half-open:
    /// granted to one caller at a time.
    #[inline]
    pub fn acquire(&self) -> Result<Permit<'_, C>, Rejected> {
        let w = self.load();
        if w.state() == CLOSED {
            return Ok(Permit::granted(self, w.epoch(), false));
        }
        self.acquire_slow()
    }

    /// [`acquire`](Self::acquire) when the breaker did not read closed: kept out of line so
    /// the closed case inlines to one load and a compare.
    #[cold]
    #[inline(never)]
    fn acquire_slow(&self) -> Result<Permit<'_, C>, Rejected> {
        loop {
            let w = self.load();
            match w.state() {
                CLOSED => return Ok(Permit::granted(self, w.epoch(), false)),
                OPEN => {
                    let now_ms = self.clock.now() / NANOS_PER_MS;
                    if now_ms < w.payload() {
                        return Err(Rejected::Open);
                    }
                    let epoch = w.epoch().wrapping_add(1);
                    if self.swap(w, Word::new(HALF_OPEN, true, epoch, 0)) {
                        announce(BreakerState::Open, BreakerState::HalfOpen);
                        return Ok(Permit::granted(self, epoch & EPOCH_MASK, true));
                    }
                }
                _ => {
                    if w.probe() {
                        return Err(Rejected::ProbeInFlight);
                    }
                    let to = Word::new(HALF_OPEN, true, w.epoch(), w.payload());
                    if self.swap(w, to) {
                        return Ok(Permit::granted(self, w.epoch(), true));
                    }
                }
            }
        }
    }

    /// The word for "open now", with its deadline rounded up to a whole millisecond.
    fn opened(&self, epoch: u64) -> Word {
        let until = self.clock.now().saturating_add(self.recovery_nanos);
        Word::new(OPEN, false, epoch, until.div_ceil(NANOS_PER_MS))
    }

    fn open_from(&self, w: Word) -> bool {
        let from = w.public_state();
        if self.swap(w, self.opened(w.epoch().wrapping_add(1))) {
            // Relaxed: a statistic; only the thread whose CAS opened the breaker gets here, so
            // the count is exact whatever the ordering.
            self.trips.fetch_add(1, Ordering::Relaxed);
            announce(from, BreakerState::Open);
            return true;
        }
        false
    }

    /// Whether a success reported now for a non-probe permit of `epoch` would change nothing:
    /// the breaker is closed in that epoch with no failures counted. One load, no CAS.
    #[inline]
    fn success_is_noop(&self, epoch: u64) -> bool {
        self.load() == Word::new(CLOSED, false, epoch, 0)
    }

    #[cold]
    #[inline(never)]
    fn record_success(&self, epoch: u64, probe: bool) {
        loop {
            let w = self.load();
            if w.epoch() != epoch {
                return; // granted in an earlier state: no longer relevant
            }
            match w.state() {
                CLOSED => {
                    if w.payload() == 0 || self.swap(w, Word::new(CLOSED, false, epoch, 0)) {
                        return;
                    }
                }
                HALF_OPEN if probe => {
                    let successes = w.payload() + 1;
                    if successes >= u64::from(self.config.success_threshold) {
                        let closed = Word::new(CLOSED, false, epoch.wrapping_add(1), 0);
                        if self.swap(w, closed) {
                            announce(BreakerState::HalfOpen, BreakerState::Closed);
                            return;
                        }
                    } else if self.swap(w, Word::new(HALF_OPEN, false, epoch, successes)) {
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    fn record_failure(&self, epoch: u64, probe: bool) {
        loop {
            let w = self.load();
            if w.epoch() != epoch {
                return;
            }
            match w.state() {
                CLOSED => {
                    let failures = w.payload() + 1;
                    if failures >= u64::from(self.config.failure_threshold) {
                        if self.open_from(w) {
                            return;
                        }
                    } else if self.swap(w, Word::new(CLOSED, false, epoch, failures)) {
                        return;
                    }
                }
                HALF_OPEN if probe => {
                    if self.open_from(w) {
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    fn release_probe(&self, epoch: u64) {
        loop {
            let w = self.load();
            if w.epoch() != epoch || w.state() != HALF_OPEN || !w.probe() {
                return;
            }
            if self.swap(w, Word::new(HALF_OPEN, false, epoch, w.payload())) {
                return;
            }
        }
    }
}

/// Leave to make one call, from [`CircuitBreaker::acquire`]; report how it went with
/// [`succeed`](Self::succeed) or [`fail`](Self::fail).
///
/// Dropping a permit unreported counts as neither: a half-open probe is handed back so the next
/// call can probe instead (so a cancelled probe cannot wedge the breaker half-open).
#[must_use = "report the call's outcome with succeed() or fail()"]
pub struct Permit<'a, C: Clock> {
    breaker: &'a CircuitBreaker<C>,
    /// The epoch it was granted in (low 16 bits), and [`GRANT_PROBE`] for the half-open probe.
    /// One full word rather than separate flags: a permit is moved through a few places on the
    /// failover's fast path, and whole-word fields copy without partial-width stores.
    grant: u64,
}

/// In [`Permit::grant`]: this permit is the half-open probe.
const GRANT_PROBE: u64 = 1 << 16;

impl<C: Clock> fmt::Debug for Permit<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("epoch", &self.epoch())
            .field("probe", &self.is_probe())
            .finish()
    }
}

impl<'a, C: Clock> Permit<'a, C> {
    #[inline]
    fn granted(breaker: &'a CircuitBreaker<C>, epoch: u64, probe: bool) -> Self {
        let probe = if probe { GRANT_PROBE } else { 0 };
        Permit {
            breaker,
            grant: epoch & EPOCH_MASK | probe,
        }
    }

    #[inline]
    fn epoch(&self) -> u64 {
        self.grant & EPOCH_MASK
    }

    /// Whether this is the half-open probe.
    #[inline]
    pub fn is_probe(&self) -> bool {
        self.grant & GRANT_PROBE != 0
    }

    /// The call succeeded.
    #[inline]
    pub fn succeed(self) {
        let (breaker, epoch, probe) = (self.breaker, self.epoch(), self.is_probe());
        // Reported: the drop that hands an unreported probe back must not run.
        std::mem::forget(self);
        // The common case, a closed breaker that has counted no failures, records nothing.
        if !probe && breaker.success_is_noop(epoch) {
            return;
        }
        breaker.record_success(epoch, probe);
    }

    /// The call failed in a way that says the backend is unhealthy.
    pub fn fail(self) {
        let (breaker, epoch, probe) = (self.breaker, self.epoch(), self.is_probe());
        std::mem::forget(self);
        breaker.record_failure(epoch, probe);
    }
}

impl<C: Clock> Drop for Permit<'_, C> {
    #[inline]
    fn drop(&mut self) {
        // Only unreported permits get here (`succeed` and `fail` forget theirs).
        if self.is_probe() {
            self.breaker.release_probe(self.epoch());
        }
    }
}

/// Tells the world about a transition: a `tracing` event and a `metrics` counter when those
/// features are on. Called only by the thread whose compare-and-swap made the transition.
#[allow(unused_variables)]
fn announce(from: BreakerState, to: BreakerState) {
    #[cfg(feature = "tracing")]
    match to {
        BreakerState::Open => tracing::warn!(
            target: "traffik::failover",
            from = %from,
            to = %to,
            "circuit breaker opened: the primary limiter is not used until it recovers"
        ),
        _ => tracing::info!(
            target: "traffik::failover",
            from = %from,
            to = %to,
            "circuit breaker changed state"
        ),
    }
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "traffik_breaker_transitions_total",
        "from" => state_label(from),
        "to" => state_label(to)
    )
    .increment(1);
}

#[cfg(feature = "metrics")]
fn state_label(s: BreakerState) -> &'static str {
    match s {
        BreakerState::Closed => "closed",
        BreakerState::Open => "open",
        BreakerState::HalfOpen => "half_open",
    }
}
