//! What a key's state means, in the terms of its algorithm: [`Details`].
//!
//! A [`Decision`] says what is left in one number; `details` says it the way
//! the strategy counts (tokens, bucket level, window use, how far the GCRA schedule runs
//! ahead). Every figure is exact and computed from the stored word and `now` without writing.
//! The dynamic strategies have their own typed forms: [`Adaptive::details`](crate::Adaptive::details),
//! [`Schedule::details`](crate::Schedule::details) and
//! [`PriorityBudget::details`](crate::PriorityBudget::details).

use crate::algorithm::{Algorithm, AnyAlgorithm};
use crate::decision::Decision;

/// A key's state read through its algorithm; see [`AnyAlgorithm::details`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Details {
    /// [`Gcra`](crate::Gcra).
    Gcra {
        /// Units the key could take at once now.
        available: u64,
        /// The burst.
        burst: u64,
        /// How far the theoretical arrival time runs ahead of now, in nanoseconds.
        ahead_nanos: u64,
    },
    /// [`LeakyBucket`](crate::LeakyBucket).
    LeakyBucket {
        /// Units in the bucket now (rounded up: a unit partly drained still counts).
        level: u64,
        /// Units that could be poured in now.
        free: u64,
        /// The bucket's capacity.
        capacity: u64,
    },
    /// [`TokenBucket`](crate::TokenBucket).
    TokenBucket {
        /// Tokens in the bucket now.
        tokens: u64,
        /// The bucket's capacity.
        capacity: u64,
        /// Nanoseconds until the bucket is full again.
        full_in_nanos: u64,
    },
    /// [`FixedWindow`](crate::FixedWindow) or
    /// [`SlidingWindowCounter`](crate::SlidingWindowCounter).
    Window {
        /// Units counted against the window now (for the sliding counter, the previous
        /// window's weighted share included, rounded up).
        used: u64,
        /// Units still admitted now.
        remaining: u64,
        /// The limit per window.
        limit: u64,
    },
    /// [`Unlimited`](crate::Unlimited): no state.
    Unlimited,
    /// [`DebtBucket`](crate::DebtBucket): its tokens, or what the key owes.
    DebtBucket(crate::DebtBalance),
    /// [`QuotaRollover`](crate::QuotaRollover): the period's use, carry and what remains.
    Rollover(crate::QuotaView),
}

impl AnyAlgorithm {
    /// What `state` means at `now` for this algorithm.
    ///
    /// ```
    /// use traffik_core::{Algorithm, AlgorithmKind, AnyAlgorithm, Details, Rate};
    ///
    /// let bucket = AnyAlgorithm::new(AlgorithmKind::TokenBucket, Rate::per_second(10), None)?;
    /// let state = bucket.decide(0, 0, 4)?.next.unwrap();
    /// assert_eq!(
    ///     bucket.details(state, 0),
    ///     Details::TokenBucket { tokens: 6, capacity: 10, full_in_nanos: 400_000_000 }
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn details(&self, state: u64, now: u64) -> Details {
        // A zero-cost decision is the algorithm's own exact peek; it is never refused (a cost
        // of 0 is within every capacity), but a peek must not fail: read "nothing left" then.
        let peek = self
            .decide(state, now, 0)
            .map_or(Decision::deny(self.capacity(), 0, 0, 0), |t| t.decision);
        let (limit, remaining) = (peek.limit(), peek.remaining());
        match self {
            AnyAlgorithm::Gcra(_) => Details::Gcra {
                available: remaining,
                burst: limit,
                ahead_nanos: state.saturating_sub(now),
            },
            AnyAlgorithm::LeakyBucket(b) => Details::LeakyBucket {
                level: state.saturating_sub(now).div_ceil(b.drain_interval_nanos()),
                free: remaining,
                capacity: limit,
            },
            AnyAlgorithm::TokenBucket(_) => Details::TokenBucket {
                tokens: remaining,
                capacity: limit,
                full_in_nanos: peek.reset_after_nanos(),
            },
            AnyAlgorithm::FixedWindow(_) | AnyAlgorithm::SlidingWindowCounter(_) => {
                Details::Window {
                    used: limit - remaining,
                    remaining,
                    limit,
                }
            }
            AnyAlgorithm::Unlimited(_) => Details::Unlimited,
            AnyAlgorithm::DebtBucket(b) => Details::DebtBucket(b.balance(state, now)),
            AnyAlgorithm::QuotaRollover(q) => Details::Rollover(q.quota(state, now)),
        }
    }
}
