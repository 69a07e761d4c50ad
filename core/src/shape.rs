//! What a shaping queue refuses. Shapers (the in-process `traffik::shape::Shaper` and
//! `traffik_redis::RedisShaper`) make requests wait their turn instead of refusing them, up to
//! bounds; a request beyond those bounds is refused at once with one of these reasons, and
//! nothing is queued or charged. One type, so both shapers refuse in the same words.

use core::fmt;
use core::time::Duration;

/// Why a request was turned away instead of queued. Nothing was charged or queued.
///
/// ```
/// use core::time::Duration;
/// use traffik_core::ShapeError;
///
/// let e = ShapeError::WaitTooLong { wait: Duration::from_millis(300), max: Duration::from_millis(250) };
/// assert_eq!(e.to_string(), "request would wait 300ms, more than the maximum of 250ms");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShapeError {
    /// The queue already holds its maximum number of waiting requests.
    QueueFull {
        /// The configured maximum queue length.
        max: usize,
    },
    /// The request would leave the queue later than the maximum wait allows.
    WaitTooLong {
        /// How long it would have waited.
        wait: Duration,
        /// The maximum wait (the configured one, or the shaper's own ceiling).
        max: Duration,
    },
    /// The cost is larger than the burst, so it could never leave.
    InsufficientCapacity {
        /// The cost asked for.
        cost: u64,
        /// The largest cost one request may have (the burst).
        max: u64,
    },
}

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShapeError::QueueFull { max } => {
                write!(f, "shaping queue full ({max} requests waiting)")
            }
            ShapeError::WaitTooLong { wait, max } => write!(
                f,
                "request would wait {wait:?}, more than the maximum of {max:?}"
            ),
            ShapeError::InsufficientCapacity { cost, max } => {
                write!(f, "cost {cost} exceeds the shaper's burst of {max}")
            }
        }
    }
}

impl core::error::Error for ShapeError {}
