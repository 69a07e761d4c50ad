//! Rates as text: the parser behind `"100/minute".parse::<Rate>()` and its errors, which say
//! what went wrong and at which byte. (The other direction, `Display`, sits with [`Rate`].)

use core::fmt;
use core::str::FromStr;

use super::{Rate, UNITS};

/// An error from parsing a [`Rate`]: what went wrong ([`kind`](RateParseError::kind)) and
/// where ([`position`](RateParseError::position)).
///
/// ```
/// use traffik_core::{Rate, RateParseErrorKind};
///
/// let err = "5/week".parse::<Rate>().unwrap_err();
/// assert_eq!(err.kind(), RateParseErrorKind::UnknownUnit);
/// assert_eq!(err.position(), 2);
/// assert_eq!(
///     err.to_string(),
///     "unknown time unit at byte 2 (expected ns, us, ms, s, m, h or d)"
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateParseError {
    kind: RateParseErrorKind,
    position: usize,
}

impl RateParseError {
    pub(crate) const fn new(kind: RateParseErrorKind, position: usize) -> Self {
        RateParseError { kind, position }
    }

    /// What was wrong with the input.
    pub const fn kind(&self) -> RateParseErrorKind {
        self.kind
    }

    /// The byte offset in the input where the problem was found.
    ///
    /// It is at most the input's length; it equals the length when the input ended too early.
    /// For [`RateParseErrorKind::Empty`] it is 0.
    pub const fn position(&self) -> usize {
        self.position
    }
}

impl fmt::Display for RateParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use RateParseErrorKind as K;
        let (what, hint) = match self.kind {
            K::Empty => (
                "empty rate",
                " (expected LIMIT/PERIOD, such as 100/m or 2/5s)",
            ),
            K::InvalidNumber => ("invalid number", " (expected an unsigned decimal integer)"),
            K::Negative => ("negative number", " (expected an unsigned decimal integer)"),
            K::MissingLimit => ("missing limit", " (expected a number before / or per)"),
            K::MissingSeparator => ("missing separator", " (expected / or per)"),
            K::MissingPeriod => (
                "missing period",
                " (expected an optional count and a time unit, such as s or 5s)",
            ),
            K::MissingUnit => ("missing time unit", " (expected ns, us, ms, s, m, h or d)"),
            K::UnknownUnit => ("unknown time unit", " (expected ns, us, ms, s, m, h or d)"),
            K::TrailingInput => ("unexpected trailing input", ""),
            K::ZeroPeriod => (
                "zero period with a non-zero limit",
                " (use 0/0 for unlimited)",
            ),
            K::ZeroLimit => (
                "zero limit with a non-zero period",
                " (use 0/0 for unlimited)",
            ),
            K::Overflow => (
                "number too large",
                " (the limit and the period in nanoseconds must each fit in a u64)",
            ),
        };
        write!(f, "{what} at byte {}{hint}", self.position)
    }
}

impl core::error::Error for RateParseError {}

/// The kinds of [`RateParseError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateParseErrorKind {
    /// The input is empty or only whitespace.
    Empty,
    /// A number is malformed: not decimal digits, or has a fraction (`5.5`), a sign (`+5`) or
    /// digit separators (`1_000`).
    InvalidNumber,
    /// A number has a minus sign.
    Negative,
    /// There is no limit before the separator (`/s`).
    MissingLimit,
    /// There is no `/` or `per` after the limit (`5s`).
    MissingSeparator,
    /// Nothing follows the separator (`5/`).
    MissingPeriod,
    /// A count follows the separator but no time unit does (`5/10`). The one exception is
    /// `0/0`, which means unlimited.
    MissingUnit,
    /// The time unit is not one of the recognised spellings (`5/week`).
    UnknownUnit,
    /// Something follows a complete rate (`5/10/s`).
    TrailingInput,
    /// A non-zero limit with a zero period (`5/0s`).
    ZeroPeriod,
    /// A zero limit with a non-zero period (`0/s`); write `0/0` for unlimited.
    ZeroLimit,
    /// The limit does not fit in a `u64`, or the period's nanoseconds do not (`1/300000d`).
    Overflow,
}

fn unit_nanos(word: &[u8]) -> Option<u64> {
    UNITS.iter().find_map(|&(nanos, _, spellings)| {
        spellings
            .iter()
            .any(|s| s.as_bytes().eq_ignore_ascii_case(word))
            .then_some(nanos)
    })
}

/// Parses `LIMIT SEP [COUNT] UNIT`, case-insensitively, with ASCII whitespace allowed around
/// every token.
///
/// * `LIMIT` and `COUNT` are unsigned decimal integers; `COUNT` defaults to 1.
/// * `SEP` is `/` or the word `per`, which may touch its neighbours (`5per5s`, `2 persecond`).
/// * `UNIT` is one of `ns`, `nanosecond(s)`; `us`, `µs`, `microsecond(s)`; `ms`,
///   `millisecond(s)`; `s`, `sec(s)`, `second(s)`; `m`, `min(s)`, `minute(s)`; `h`, `hr(s)`,
///   `hour(s)`; `d`, `day(s)`.
/// * `0/0` (no unit needed) and any zero limit over a zero period, such as `0/0s`, are
///   [`Rate::unlimited`].
///
/// ```
/// use traffik_core::{Rate, RateParseErrorKind};
///
/// assert_eq!("100/minute".parse(), Ok(Rate::per_minute(100)));
/// assert_eq!("  10  /  5s  ".parse::<Rate>()?.period_nanos(), 5_000_000_000);
/// assert_eq!("2 persecond".parse(), Ok(Rate::per_second(2)));
/// assert_eq!("0/0".parse(), Ok(Rate::unlimited()));
///
/// let err = "5/10".parse::<Rate>().unwrap_err();
/// assert_eq!((err.kind(), err.position()), (RateParseErrorKind::MissingUnit, 4));
/// # Ok::<(), traffik_core::RateParseError>(())
/// ```
impl FromStr for Rate {
    type Err = RateParseError;

    fn from_str(s: &str) -> Result<Rate, RateParseError> {
        Parser::new(s.as_bytes()).rate()
    }
}

/// A cursor over the input bytes. `pos` never exceeds `bytes.len()`.
struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Parser { bytes, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos.checked_add(ahead)?).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    fn advance(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n).min(self.bytes.len());
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.advance(1);
        }
    }

    fn starts_with_per(&self) -> bool {
        self.rest()
            .get(..3)
            .is_some_and(|word| word.eq_ignore_ascii_case(b"per"))
    }

    fn error(&self, kind: RateParseErrorKind) -> RateParseError {
        RateParseError::new(kind, self.pos)
    }

    /// Reads a run of ASCII digits (the caller has checked there is at least one) and rejects a
    /// fractional part or digit separators straight after it.
    fn number(&mut self) -> Result<u64, RateParseError> {
        let start = self.pos;
        let mut value: Option<u64> = Some(0);
        while let Some(digit @ b'0'..=b'9') = self.peek() {
            value = value
                .and_then(|v| v.checked_mul(10))
                .and_then(|v| v.checked_add(u64::from(digit - b'0')));
            self.advance(1);
        }
        if matches!(self.peek(), Some(b'.' | b',' | b'_')) {
            return Err(self.error(RateParseErrorKind::InvalidNumber));
        }
        value.ok_or(RateParseError::new(RateParseErrorKind::Overflow, start))
    }

    /// The error for a token that should have been a number but does not start with a digit,
    /// or `None` if it does not look like an attempt at a number at all.
    fn not_a_number(&self) -> Option<RateParseError> {
        let next_is_digit = self.peek_at(1).is_some_and(|b| b.is_ascii_digit());
        match self.peek() {
            Some(b'-') if next_is_digit => Some(self.error(RateParseErrorKind::Negative)),
            Some(b'+' | b'.') if next_is_digit => {
                Some(self.error(RateParseErrorKind::InvalidNumber))
            }
            _ => None,
        }
    }

    fn rate(mut self) -> Result<Rate, RateParseError> {
        use RateParseErrorKind as K;

        self.skip_whitespace();
        if self.at_end() {
            return Err(RateParseError::new(K::Empty, 0));
        }

        // LIMIT
        let limit_pos = self.pos;
        let limit = match self.peek() {
            Some(b'0'..=b'9') => self.number()?,
            Some(b'/') => return Err(self.error(K::MissingLimit)),
            _ if self.starts_with_per() => return Err(self.error(K::MissingLimit)),
            _ => return Err(self.not_a_number().unwrap_or(self.error(K::InvalidNumber))),
        };

        // SEP
        self.skip_whitespace();
        if self.peek() == Some(b'/') {
            self.advance(1);
        } else if self.starts_with_per() {
            self.advance(3);
        } else {
            return Err(self.error(K::MissingSeparator));
        }

        // [COUNT]
        self.skip_whitespace();
        let count_pos = self.pos;
        let count = match self.peek() {
            Some(b'0'..=b'9') => Some(self.number()?),
            _ => match self.not_a_number() {
                Some(err) => return Err(err),
                None => None,
            },
        };

        // UNIT
        self.skip_whitespace();
        let unit_pos = self.pos;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphabetic() || !b.is_ascii())
        {
            self.advance(1);
        }
        let word = self.bytes.get(unit_pos..self.pos).unwrap_or_default();
        if word.is_empty() {
            return match (count, self.at_end()) {
                // `0/0` needs no unit.
                (Some(0), true) if limit == 0 => Ok(Rate::unlimited()),
                (Some(_), true) => Err(self.error(K::MissingUnit)),
                (Some(_), false) => Err(self.error(K::TrailingInput)),
                (None, _) => Err(self.error(K::MissingPeriod)),
            };
        }
        let unit = unit_nanos(word).ok_or(RateParseError::new(K::UnknownUnit, unit_pos))?;

        self.skip_whitespace();
        if !self.at_end() {
            return Err(self.error(K::TrailingInput));
        }

        let period = count
            .unwrap_or(1)
            .checked_mul(unit)
            .ok_or(RateParseError::new(K::Overflow, count_pos))?;
        match (limit, period) {
            (0, 0) => Ok(Rate::unlimited()),
            (_, 0) => Err(RateParseError::new(K::ZeroPeriod, count_pos)),
            (0, _) => Err(RateParseError::new(K::ZeroLimit, limit_pos)),
            _ => Ok(Rate {
                limit,
                period_nanos: period,
            }),
        }
    }
}
