//! How an algorithm reads a key's state word: [`StateFormat`], and [`PerCallAlgorithm`], the
//! algorithms that say theirs.
//!
//! [`SharedState`] compares two algorithms of one type (the tiers of a [`Tiers`](crate::Tiers),
//! the old and new value of a [`Live`]). A store that lets each call bring its own algorithm,
//! of any type, onto states other calls wrote (traffik-memcached's `check_with`) needs the same
//! rule in a form algorithms of different types can be compared by: the format of the states
//! they read and write.

use crate::{
    Adaptive, Algorithm, AnyAlgorithm, DebtBucket, FixedWindow, Gcra, LeakyBucket, Live,
    PriorityBudget, PriorityLevel, QuotaRollover, Schedule, SharedState, SlidingWindowCounter,
    TokenBucket, Unlimited,
};

/// How an algorithm reads (and writes) a key's state word: what decides whether a key's
/// state, written under one algorithm, may be decided by another.
///
/// This is the rule of [`SharedState`] (see [`crate::quota`]), put in a form
/// that algorithms of different types can be compared by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateFormat {
    /// Writes nothing and ignores the state ([`Unlimited`]): compatible with every key.
    Stateless,
    /// A GCRA theoretical arrival time, an absolute clock reading, meaningful at any rate and
    /// burst: GCRA, the leaky bucket, [`Adaptive`], [`Schedule`], [`PriorityBudget`] and its
    /// levels, and a [`Live`] holding one of these.
    Tat,
    /// Counts whose meaning depends on the whole configuration (token buckets, windows, the
    /// debt bucket, the rollover quota): readable only by an identical algorithm.
    Exact(AnyAlgorithm),
}

impl StateFormat {
    /// Whether a key whose states are written in `self`'s format may be decided by an
    /// algorithm of format `other`, and the other way round. A stateless algorithm fits every
    /// format; TATs fit TATs; exact formats fit only the identical algorithm.
    pub fn fits(&self, other: &StateFormat) -> bool {
        match (self, other) {
            (StateFormat::Stateless, _) | (_, StateFormat::Stateless) => true,
            (StateFormat::Tat, StateFormat::Tat) => true,
            (StateFormat::Exact(a), StateFormat::Exact(b)) => a == b,
            _ => false,
        }
    }
}

/// An algorithm that says how it reads states, so that it can decide checks per call on states
/// others wrote (traffik-memcached's `MemcachedLimiter::check_with`).
///
/// Implemented for every algorithm of the core that keeps its state in one word; implement it
/// for an algorithm of your own by naming the format its states are in (a wrong answer lets it
/// misread keys, as a wrong [`SharedState`] would in process).
pub trait PerCallAlgorithm: Algorithm {
    /// The format of the states this algorithm reads and writes now.
    fn state_format(&self) -> StateFormat;
}

impl<A: PerCallAlgorithm + ?Sized> PerCallAlgorithm for &A {
    fn state_format(&self) -> StateFormat {
        (**self).state_format()
    }
}

impl PerCallAlgorithm for AnyAlgorithm {
    fn state_format(&self) -> StateFormat {
        match self {
            AnyAlgorithm::Gcra(_) | AnyAlgorithm::LeakyBucket(_) => StateFormat::Tat,
            AnyAlgorithm::Unlimited(_) => StateFormat::Stateless,
            // Every other kind, including kinds added later: only with itself.
            other => StateFormat::Exact(*other),
        }
    }
}

macro_rules! tat {
    ($($t:ty),*) => {$(
        impl PerCallAlgorithm for $t {
            /// A GCRA TAT.
            fn state_format(&self) -> StateFormat {
                StateFormat::Tat
            }
        }
    )*};
}
tat!(
    Gcra,
    LeakyBucket,
    Adaptive,
    Schedule,
    PriorityBudget,
    PriorityLevel
);

macro_rules! exact {
    ($($t:ident),*) => {$(
        impl PerCallAlgorithm for $t {
            /// Only this exact configuration.
            fn state_format(&self) -> StateFormat {
                StateFormat::Exact(AnyAlgorithm::$t(*self))
            }
        }
    )*};
}
exact!(
    TokenBucket,
    FixedWindow,
    SlidingWindowCounter,
    DebtBucket,
    QuotaRollover
);

impl PerCallAlgorithm for Unlimited {
    fn state_format(&self) -> StateFormat {
        StateFormat::Stateless
    }
}

/// The format of the algorithm held now; while that is unlimited, the format of the last one
/// that wrote states (its [`anchor`](Live::anchor)), which is the format every change the
/// [`Live`] accepts must keep. (A `Live` that has never held a state-writing algorithm may
/// take any next one, so a check racing its first change is decided by whichever it loads.)
impl<A: PerCallAlgorithm + Copy + SharedState> PerCallAlgorithm for Live<A> {
    fn state_format(&self) -> StateFormat {
        match self.load().state_format() {
            // The anchor takes the writers' flag, so it is read only in this rare case.
            StateFormat::Stateless => self.anchor().state_format(),
            format => format,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AlgorithmKind, Rate};

    fn any(kind: AlgorithmKind, limit: u64) -> AnyAlgorithm {
        AnyAlgorithm::new(kind, Rate::per_second(limit), None)
            .unwrap_or(AnyAlgorithm::Unlimited(Unlimited))
    }

    #[test]
    fn formats_follow_the_core_rule() {
        let (g10, g50) = (any(AlgorithmKind::Gcra, 10), any(AlgorithmKind::Gcra, 50));
        let lb = any(AlgorithmKind::LeakyBucket, 3);
        let tb10 = any(AlgorithmKind::TokenBucket, 10);
        let tb20 = any(AlgorithmKind::TokenBucket, 20);
        let fw = any(AlgorithmKind::FixedWindow, 10);
        let open = AnyAlgorithm::Unlimited(Unlimited);
        assert_eq!(g10.state_format(), StateFormat::Tat);
        assert_eq!(lb.state_format(), StateFormat::Tat);
        assert_eq!(tb10.state_format(), StateFormat::Exact(tb10));
        assert_eq!(open.state_format(), StateFormat::Stateless);
        // Exactly what the core's `SharedState` says for the same pairs.
        let all = [g10, g50, lb, tb10, tb20, fw, open];
        for a in all {
            for b in all {
                assert_eq!(
                    a.state_format().fits(&b.state_format()),
                    a.shares_state_with(&b),
                    "{a:?} / {b:?}"
                );
            }
        }
    }

    #[test]
    fn a_live_algorithm_reports_what_wrote_its_states() {
        let bucket = any(AlgorithmKind::TokenBucket, 10);
        let live = Live::new(bucket);
        assert_eq!(live.state_format(), StateFormat::Exact(bucket));
        assert_eq!(live.set(AnyAlgorithm::Unlimited(Unlimited)), Ok(()));
        // Unlimited now, but the bucket's states are still there and it may come back.
        assert_eq!(live.state_format(), StateFormat::Exact(bucket));
        let fresh = Live::new(AnyAlgorithm::Unlimited(Unlimited));
        assert_eq!(fresh.state_format(), StateFormat::Stateless);
    }
}
