//! What a [`Failover`](super::Failover) has done: counters, their snapshot, and (with the
//! `metrics` feature) the same counts as `metrics` counters.
//!
//! Nothing here is touched when the primary answers on the first attempt: every counter counts
//! something off the hot path (a failure, a retry, a fallback, a replay).

use super::breaker::BreakerState;
use std::sync::atomic::{AtomicU64, Ordering};
use traffik_core::ErrorKind;

/// One thing worth counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    ShortCircuit,
    Retry,
    Timeout,
    Fallback,
    AllowedOnError,
    DeniedOnError,
    NotCharged,
    Indeterminate,
    InsufficientCapacity,
    Config,
    ReplayQueued,
    Replayed,
    ReplayDenied,
    ReplayRequeued,
    ReplayFailed,
    ReplayDropped,
}

const EVENTS: usize = 16;

impl Event {
    /// A primary failure of this kind.
    pub(crate) fn error(kind: ErrorKind) -> Event {
        match kind {
            ErrorKind::NotCharged => Event::NotCharged,
            ErrorKind::InsufficientCapacity { .. } => Event::InsufficientCapacity,
            ErrorKind::Config => Event::Config,
            // Unknown kinds are counted with the most cautious one.
            _ => Event::Indeterminate,
        }
    }

    #[cfg(feature = "metrics")]
    fn metric(self) -> (&'static str, Option<&'static str>) {
        const ERRORS: &str = "traffik_failover_primary_errors_total";
        match self {
            Event::ShortCircuit => ("traffik_failover_short_circuited_total", None),
            Event::Retry => ("traffik_failover_retries_total", None),
            Event::Timeout => ("traffik_failover_timeouts_total", None),
            Event::Fallback => ("traffik_failover_fallback_decisions_total", None),
            Event::AllowedOnError => ("traffik_failover_allowed_on_error_total", None),
            Event::DeniedOnError => ("traffik_failover_denied_on_error_total", None),
            Event::NotCharged => (ERRORS, Some("not_charged")),
            Event::Indeterminate => (ERRORS, Some("indeterminate")),
            Event::InsufficientCapacity => (ERRORS, Some("insufficient_capacity")),
            Event::Config => (ERRORS, Some("config")),
            Event::ReplayQueued => ("traffik_failover_replay_queued_total", None),
            Event::Replayed => ("traffik_failover_replayed_total", None),
            Event::ReplayDenied => ("traffik_failover_replay_denied_total", None),
            Event::ReplayRequeued => ("traffik_failover_replay_requeued_total", None),
            Event::ReplayFailed => ("traffik_failover_replay_failed_total", None),
            Event::ReplayDropped => ("traffik_failover_replay_dropped_total", None),
        }
    }
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct Counters([AtomicU64; EVENTS]);

impl Counters {
    pub(crate) fn add(&self, event: Event, n: u64) {
        // Relaxed: independent statistics; a snapshot promises no consistency between them.
        self.0[event as usize].fetch_add(n, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        match event.metric() {
            (name, None) => metrics::counter!(name).increment(n),
            (name, Some(kind)) => metrics::counter!(name, "kind" => kind).increment(n),
        }
    }

    pub(crate) fn bump(&self, event: Event) {
        self.add(event, 1);
    }

    fn get(&self, event: Event) -> u64 {
        // Relaxed: see `add`.
        self.0[event as usize].load(Ordering::Relaxed)
    }
}

/// Primary failures by [`ErrorKind`], one per failed attempt (timeouts count as
/// indeterminate).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorCounts {
    /// Failures known not to have charged anything.
    pub not_charged: u64,
    /// Failures that may have charged (timeouts included).
    pub indeterminate: u64,
    /// Costs the primary can never admit (returned to the caller, never masked).
    pub insufficient_capacity: u64,
    /// Configuration errors (returned to the caller, never masked).
    pub config: u64,
}

/// What happened to the charges the fallback admitted during an outage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayStats {
    /// Charges put in the queue.
    pub queued: u64,
    /// Charges the primary accepted after recovery.
    pub replayed: u64,
    /// Charges the primary denied (the key was already at its limit there): not charged.
    pub denied: u64,
    /// Replays that failed without charging and went back in the queue.
    pub requeued: u64,
    /// Replays that failed in a way that may or may not have charged (never resent), or were
    /// refused as a configuration or capacity error.
    pub failed: u64,
    /// Charges never queued because the queue was full, or lost because a replay was cancelled
    /// mid-flight.
    pub dropped: u64,
    /// Charges waiting in the queue now.
    pub pending: u64,
}

/// A snapshot of a [`Failover`](super::Failover)'s counters.
///
/// Each counter is exact; the snapshot is not atomic across counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailoverStats {
    /// The breaker's state when the snapshot was taken.
    pub breaker: BreakerState,
    /// How many times the breaker has opened.
    pub trips: u64,
    /// Calls that skipped the primary because the breaker turned them away.
    pub short_circuited: u64,
    /// Retries of the primary (attempts after the first).
    pub retries: u64,
    /// Primary attempts that hit the per-call timeout.
    pub timeouts: u64,
    /// Decisions made by the fallback limiter.
    pub fallback_decisions: u64,
    /// Calls admitted by the `Allow` policy.
    pub allowed_on_error: u64,
    /// Calls denied by the `Deny` policy.
    pub denied_on_error: u64,
    /// Primary failures by kind.
    pub errors: ErrorCounts,
    /// Replay of fallback charges to the primary.
    pub replay: ReplayStats,
}

impl Counters {
    pub(crate) fn snapshot(
        &self,
        breaker: BreakerState,
        trips: u64,
        pending: u64,
    ) -> FailoverStats {
        FailoverStats {
            breaker,
            trips,
            short_circuited: self.get(Event::ShortCircuit),
            retries: self.get(Event::Retry),
            timeouts: self.get(Event::Timeout),
            fallback_decisions: self.get(Event::Fallback),
            allowed_on_error: self.get(Event::AllowedOnError),
            denied_on_error: self.get(Event::DeniedOnError),
            errors: ErrorCounts {
                not_charged: self.get(Event::NotCharged),
                indeterminate: self.get(Event::Indeterminate),
                insufficient_capacity: self.get(Event::InsufficientCapacity),
                config: self.get(Event::Config),
            },
            replay: ReplayStats {
                queued: self.get(Event::ReplayQueued),
                replayed: self.get(Event::Replayed),
                denied: self.get(Event::ReplayDenied),
                requeued: self.get(Event::ReplayRequeued),
                failed: self.get(Event::ReplayFailed),
                dropped: self.get(Event::ReplayDropped),
                pending,
            },
        }
    }
}
