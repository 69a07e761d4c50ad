//! Rates: "at most this many units per this long", in exact integer nanoseconds.
//!
//! A [`Rate`] is a pair of integers, a `limit` and a period in nanoseconds. It never holds a
//! float, so `3/s` means exactly three per 1 000 000 000 ns and the algorithms that consume it
//! can do their own rounding in the safe direction.
//!
//! Rates can be written as constants ([`Rate::per_second`] and friends), assembled from parts
//! ([`Rate::builder`]), checked at run time ([`Rate::new`], [`Rate::from_nanos`]) or parsed from
//! text such as `"100/minute"`, `"20 per 2 mins"` or `"1000/500ms"` (see the
//! [`FromStr`](core::str::FromStr) implementation on [`Rate`] for the grammar, in the `parse`
//! submodule). Displaying a rate gives text that parses back to the same rate.
//!
//! The special rate `0/0` ([`Rate::unlimited`]) means "no limit at all".

use core::fmt;
use core::time::Duration;

mod parse;

pub use parse::{RateParseError, RateParseErrorKind};

const NANOS_PER_MICRO: u64 = 1_000;
const NANOS_PER_MILLI: u64 = 1_000_000;
const NANOS_PER_SECOND: u64 = 1_000_000_000;
const NANOS_PER_MINUTE: u64 = 60 * NANOS_PER_SECOND;
const NANOS_PER_HOUR: u64 = 60 * NANOS_PER_MINUTE;
const NANOS_PER_DAY: u64 = 24 * NANOS_PER_HOUR;

/// A rate: at most `limit` units per `period`, with the period stored as exact integer
/// nanoseconds (a `u64`, so at most about 584 years).
///
/// Every `Rate` is one of:
///
/// * a finite rate: `limit >= 1` and a period of at least 1 ns;
/// * [unlimited](Rate::unlimited): limit 0 and period 0, written `0/0`;
/// * a zero-limit rate such as `Rate::per_second(0)`, which only the infallible `const`
///   constructors can make. It admits nothing, so the algorithms reject it when they are
///   configured; [`Rate::new`], [`Rate::from_nanos`], the builder and the parser all refuse it
///   with a `ZeroLimit` error.
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use traffik_core::Rate;
///
/// // Constants, builders and run-time checked constructors agree.
/// const API: Rate = Rate::per_minute(100);
/// assert_eq!(API.limit(), 100);
/// assert_eq!(API.period(), Duration::from_secs(60));
/// assert_eq!(Rate::new(100, Duration::from_secs(60)), Ok(API));
///
/// let burst = Rate::builder(10).minutes(1).seconds(30).build()?;
/// assert_eq!(burst.period_nanos(), 90_000_000_000);
///
/// // Text parses case-insensitively and displays in a canonical form that parses back.
/// let parsed: Rate = "20 per 2 MINS".parse()?;
/// assert_eq!(parsed, Rate::new(20, Duration::from_secs(120))?);
/// assert_eq!(parsed.to_string(), "20/2m");
/// assert_eq!(parsed.to_string().parse::<Rate>(), Ok(parsed));
///
/// assert!("0/0".parse::<Rate>()?.is_unlimited());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    limit: u64,
    period_nanos: u64,
}

impl Rate {
    /// `limit` per second.
    ///
    /// Infallible and usable in `const` items. A `limit` of 0 gives a zero-limit rate, which the
    /// algorithms reject when configured (use [`Rate::unlimited`] for "no limit").
    pub const fn per_second(limit: u64) -> Rate {
        Rate {
            limit,
            period_nanos: NANOS_PER_SECOND,
        }
    }

    /// `limit` per minute.
    ///
    /// Infallible and usable in `const` items. A `limit` of 0 gives a zero-limit rate, which the
    /// algorithms reject when configured (use [`Rate::unlimited`] for "no limit").
    pub const fn per_minute(limit: u64) -> Rate {
        Rate {
            limit,
            period_nanos: NANOS_PER_MINUTE,
        }
    }

    /// `limit` per hour.
    ///
    /// Infallible and usable in `const` items. A `limit` of 0 gives a zero-limit rate, which the
    /// algorithms reject when configured (use [`Rate::unlimited`] for "no limit").
    pub const fn per_hour(limit: u64) -> Rate {
        Rate {
            limit,
            period_nanos: NANOS_PER_HOUR,
        }
    }

    /// `limit` per day (24 hours).
    ///
    /// Infallible and usable in `const` items. A `limit` of 0 gives a zero-limit rate, which the
    /// algorithms reject when configured (use [`Rate::unlimited`] for "no limit").
    pub const fn per_day(limit: u64) -> Rate {
        Rate {
            limit,
            period_nanos: NANOS_PER_DAY,
        }
    }

    /// `limit` per `period`, checked.
    ///
    /// `Rate::new(0, Duration::ZERO)` is [`Rate::unlimited`].
    ///
    /// # Errors
    ///
    /// * [`RateError::PeriodOverflow`] if `period` is longer than `u64::MAX` nanoseconds;
    /// * [`RateError::ZeroPeriod`] for a non-zero `limit` with a zero `period`;
    /// * [`RateError::ZeroLimit`] for a zero `limit` with a non-zero `period`.
    pub fn new(limit: u64, period: Duration) -> Result<Rate, RateError> {
        match u64::try_from(period.as_nanos()) {
            Ok(nanos) => Rate::from_nanos(limit, nanos),
            Err(_) => Err(RateError::PeriodOverflow),
        }
    }

    /// `limit` per `period_nanos` nanoseconds, checked.
    ///
    /// `Rate::from_nanos(0, 0)` is [`Rate::unlimited`].
    ///
    /// # Errors
    ///
    /// * [`RateError::ZeroPeriod`] for a non-zero `limit` with a zero period;
    /// * [`RateError::ZeroLimit`] for a zero `limit` with a non-zero period.
    pub const fn from_nanos(limit: u64, period_nanos: u64) -> Result<Rate, RateError> {
        match (limit, period_nanos) {
            (0, 0) => Ok(Rate::unlimited()),
            (_, 0) => Err(RateError::ZeroPeriod),
            (0, _) => Err(RateError::ZeroLimit),
            _ => Ok(Rate {
                limit,
                period_nanos,
            }),
        }
    }

    /// The rate that imposes no limit: limit 0 and period 0, written `0/0`.
    pub const fn unlimited() -> Rate {
        Rate {
            limit: 0,
            period_nanos: 0,
        }
    }

    /// Whether this is [`Rate::unlimited`] (limit 0 and period 0).
    pub const fn is_unlimited(&self) -> bool {
        self.limit == 0 && self.period_nanos == 0
    }

    /// How many units are allowed per period (0 for [`Rate::unlimited`]).
    pub const fn limit(&self) -> u64 {
        self.limit
    }

    /// The period as a [`Duration`] (zero for [`Rate::unlimited`]).
    pub const fn period(&self) -> Duration {
        Duration::from_nanos(self.period_nanos)
    }

    /// The period in whole nanoseconds (0 for [`Rate::unlimited`]).
    pub const fn period_nanos(&self) -> u64 {
        self.period_nanos
    }

    /// Starts a [`RateBuilder`] for `limit` per a period summed from parts.
    ///
    /// ```
    /// use traffik_core::Rate;
    ///
    /// let rate = Rate::builder(10).minutes(1).seconds(30).build()?;
    /// assert_eq!(rate.period_nanos(), 90_000_000_000);
    /// # Ok::<(), traffik_core::RateError>(())
    /// ```
    #[must_use]
    pub const fn builder(limit: u64) -> RateBuilder {
        RateBuilder {
            limit,
            period_nanos: 0,
            overflowed: false,
        }
    }
}

/// Builds a [`Rate`] whose period is the sum of its parts.
///
/// `Rate::builder(10).minutes(1).seconds(30).build()` is 10 per 90 s. Each part method may be
/// called any number of times and adds to the period. Overflow while summing is remembered and
/// reported by [`RateBuilder::build`] as [`RateError::PeriodOverflow`]; the part methods never
/// panic.
///
/// ```
/// use traffik_core::{Rate, RateError};
///
/// let rate = Rate::builder(3).seconds(1).millis(500).build()?;
/// assert_eq!(rate.to_string(), "3/1500ms");
/// assert_eq!(Rate::builder(1).days(300_000).build(), Err(RateError::PeriodOverflow));
/// # Ok::<(), RateError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct RateBuilder {
    limit: u64,
    period_nanos: u64,
    overflowed: bool,
}

impl RateBuilder {
    const fn add(self, count: u64, unit_nanos: u64) -> Self {
        let sum = match count.checked_mul(unit_nanos) {
            Some(part) => self.period_nanos.checked_add(part),
            None => None,
        };
        match sum {
            Some(period_nanos) => RateBuilder {
                period_nanos,
                ..self
            },
            None => RateBuilder {
                overflowed: true,
                ..self
            },
        }
    }

    /// Adds `n` nanoseconds to the period.
    #[must_use]
    pub const fn nanos(self, n: u64) -> Self {
        self.add(n, 1)
    }

    /// Adds `n` microseconds to the period.
    #[must_use]
    pub const fn micros(self, n: u64) -> Self {
        self.add(n, NANOS_PER_MICRO)
    }

    /// Adds `n` milliseconds to the period.
    #[must_use]
    pub const fn millis(self, n: u64) -> Self {
        self.add(n, NANOS_PER_MILLI)
    }

    /// Adds `n` seconds to the period.
    #[must_use]
    pub const fn seconds(self, n: u64) -> Self {
        self.add(n, NANOS_PER_SECOND)
    }

    /// Adds `n` minutes to the period.
    #[must_use]
    pub const fn minutes(self, n: u64) -> Self {
        self.add(n, NANOS_PER_MINUTE)
    }

    /// Adds `n` hours to the period.
    #[must_use]
    pub const fn hours(self, n: u64) -> Self {
        self.add(n, NANOS_PER_HOUR)
    }

    /// Adds `n` days (of 24 hours) to the period.
    #[must_use]
    pub const fn days(self, n: u64) -> Self {
        self.add(n, NANOS_PER_DAY)
    }

    /// Finishes the rate, with the same checks as [`Rate::from_nanos`].
    ///
    /// # Errors
    ///
    /// * [`RateError::PeriodOverflow`] if summing the parts went past `u64::MAX` nanoseconds;
    /// * otherwise the errors of [`Rate::from_nanos`]. With no parts the period is zero, so
    ///   `Rate::builder(0).build()` is unlimited and `Rate::builder(5).build()` is
    ///   [`RateError::ZeroPeriod`].
    pub const fn build(self) -> Result<Rate, RateError> {
        if self.overflowed {
            return Err(RateError::PeriodOverflow);
        }
        Rate::from_nanos(self.limit, self.period_nanos)
    }
}

/// Why a [`Rate`] could not be constructed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateError {
    /// A non-zero limit with a zero period (an infinitely fast rate).
    ZeroPeriod,
    /// A zero limit with a non-zero period (a rate that admits nothing). Use
    /// [`Rate::unlimited`] (`0/0`) for "no limit".
    ZeroLimit,
    /// The period is longer than `u64::MAX` nanoseconds (about 584 years).
    PeriodOverflow,
}

impl fmt::Display for RateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RateError::ZeroPeriod => "rate has a non-zero limit but a zero period",
            RateError::ZeroLimit => {
                "rate has a zero limit but a non-zero period (use 0/0 for unlimited)"
            }
            RateError::PeriodOverflow => {
                "rate period is longer than u64::MAX nanoseconds (about 584 years)"
            }
        })
    }
}

impl core::error::Error for RateError {}

/// The time units, longest first, with their display suffix and every accepted spelling.
const UNITS: [(u64, &str, &[&str]); 7] = [
    (NANOS_PER_DAY, "d", &["d", "day", "days"]),
    (NANOS_PER_HOUR, "h", &["h", "hr", "hrs", "hour", "hours"]),
    (
        NANOS_PER_MINUTE,
        "m",
        &["m", "min", "mins", "minute", "minutes"],
    ),
    (
        NANOS_PER_SECOND,
        "s",
        &["s", "sec", "secs", "second", "seconds"],
    ),
    (
        NANOS_PER_MILLI,
        "ms",
        &["ms", "millisecond", "milliseconds"],
    ),
    (
        NANOS_PER_MICRO,
        "us",
        // U+00B5 MICRO SIGN and U+03BC GREEK SMALL LETTER MU.
        &["us", "\u{b5}s", "\u{3bc}s", "microsecond", "microseconds"],
    ),
    (1, "ns", &["ns", "nanosecond", "nanoseconds"]),
];

/// Displays as `{limit}/{count}{unit}`, using the largest of `d`, `h`, `m`, `s`, `ms`, `us` and
/// `ns` that divides the period exactly and leaving out a count of 1: `100/m`, `2/5s`,
/// `1000/500ms`, `7/90s`. Unlimited displays as `0/0`.
///
/// The output always parses back to the same rate, except for the zero-limit rates that only
/// the `const` constructors can make (`Rate::per_second(0)` displays as `0/s`, which the parser
/// rejects with [`RateParseErrorKind::ZeroLimit`]).
impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let period = self.period_nanos;
        // The first (largest) unit that divides the period exactly; `ns` always does.
        let unit = UNITS.iter().find_map(|&(nanos, suffix, _)| {
            (period.checked_rem(nanos) == Some(0))
                .then(|| period.checked_div(nanos).map(|count| (count, suffix)))
                .flatten()
        });
        match unit {
            Some((1, suffix)) => write!(f, "{}/{suffix}", self.limit),
            Some((count, suffix)) if count != 0 => write!(f, "{}/{count}{suffix}", self.limit),
            // A zero period: only unlimited has one, displayed as `0/0`.
            _ => write!(f, "{}/{period}", self.limit),
        }
    }
}
