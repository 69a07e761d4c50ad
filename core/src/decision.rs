//! What a check answers: [`Decision`] for admissions and denials, [`CheckError`] for checks that
//! can never succeed.

use core::fmt;
use core::time::Duration;

/// The answer to one check.
///
/// Backend-neutral: the in-process algorithms and the Redis scripts both produce it.
/// Durations are exact nanoseconds: for a denial, checking again at `now + retry_after` succeeds
/// (if nothing else was admitted meanwhile) and checking one nanosecond earlier fails.
///
/// ```
/// use traffik_core::Decision;
/// use core::time::Duration;
///
/// let d = Decision::deny(10, 0, 250_000_000, 1_000_000_000);
/// assert!(d.is_denied());
/// assert_eq!(d.retry_after(), Duration::from_millis(250));
/// ```
///
/// A decision must be looked at: a denial charges nothing, so dropping one silently lets the
/// request through. Ignoring it is a warning (`unused_must_use`); this does not compile where
/// that warning is denied:
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// use traffik_core::{Gcra, Limiter, ManualClock, Rate};
///
/// fn handle(limiter: &Limiter<Gcra, ManualClock>) -> Result<(), traffik_core::CheckError> {
///     limiter.check(1)?; // the decision is dropped
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// and this, which acts on it, does:
///
/// ```
/// #![deny(unused_must_use)]
/// use traffik_core::{Gcra, Limiter, ManualClock, Rate};
///
/// fn handle(limiter: &Limiter<Gcra, ManualClock>) -> Result<bool, traffik_core::CheckError> {
///     Ok(limiter.check(1)?.is_allowed())
/// }
/// # fn main() {}
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use = "a denied check charges nothing and must be acted on: check `is_allowed()`"]
pub struct Decision {
    allowed: bool,
    limit: u64,
    remaining: u64,
    retry_after: u64,
    reset_after: u64,
}

impl Decision {
    /// An admission: `remaining` is what is left after this charge.
    #[inline]
    pub const fn allow(limit: u64, remaining: u64, reset_after_nanos: u64) -> Self {
        Decision {
            allowed: true,
            limit,
            remaining,
            retry_after: 0,
            reset_after: reset_after_nanos,
        }
    }

    /// A denial: nothing was charged; `remaining` is what is left now.
    #[inline]
    pub const fn deny(
        limit: u64,
        remaining: u64,
        retry_after_nanos: u64,
        reset_after_nanos: u64,
    ) -> Self {
        Decision {
            allowed: false,
            limit,
            remaining,
            retry_after: retry_after_nanos,
            reset_after: reset_after_nanos,
        }
    }

    /// Whether the check was admitted (and charged).
    #[inline]
    pub const fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// Whether the check was denied (and nothing was charged).
    #[inline]
    pub const fn is_denied(&self) -> bool {
        !self.allowed
    }

    /// The most cost the key can take at once when fresh (burst or window limit).
    #[inline]
    pub const fn limit(&self) -> u64 {
        self.limit
    }

    /// Cost that could still be admitted right now, never more than [`limit`](Self::limit).
    #[inline]
    pub const fn remaining(&self) -> u64 {
        self.remaining
    }

    /// How long to wait before the same check would be admitted; zero when allowed.
    #[inline]
    pub const fn retry_after(&self) -> Duration {
        Duration::from_nanos(self.retry_after)
    }

    /// [`retry_after`](Self::retry_after) in nanoseconds.
    #[inline]
    pub const fn retry_after_nanos(&self) -> u64 {
        self.retry_after
    }

    /// How long until the key is back to a fresh state (nothing charged that still counts).
    #[inline]
    pub const fn reset_after(&self) -> Duration {
        Duration::from_nanos(self.reset_after)
    }

    /// [`reset_after`](Self::reset_after) in nanoseconds.
    #[inline]
    pub const fn reset_after_nanos(&self) -> u64 {
        self.reset_after
    }
}

/// A check that can never be answered with an admission, or could not be carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CheckError {
    /// The cost is larger than the most the limit can ever admit at once.
    InsufficientCapacity {
        /// The largest cost a single check can be granted.
        max: u64,
    },
    /// A keyed table had no slot for a new key and its overflow policy is to refuse.
    TableFull,
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::InsufficientCapacity { max } => write!(
                f,
                "cost can never be admitted: the limit allows at most {max} at once"
            ),
            CheckError::TableFull => {
                f.write_str("limiter table is full and its overflow policy refuses new keys")
            }
        }
    }
}

impl core::error::Error for CheckError {}
