//! Several rates at once: `"10/s, 1000/h"`, for limits that must all hold together.
//!
//! [`Rates`] is a short, fixed-capacity list of [`Rate`]s (at most [`MAX_RATES`], no allocator
//! needed). It parses from comma-separated [`Rate`] text and displays in the same form, each
//! member in [`Rate`]'s canonical spelling, so the output parses back to the same list. A parse
//! error says which member was wrong ([`RatesParseError::member`]) and where in the whole input
//! ([`RatesParseError::position`]).

use crate::rate::{Rate, RateParseError, RateParseErrorKind};
use core::fmt;
use core::str::FromStr;

/// The most rates one [`Rates`] holds.
pub const MAX_RATES: usize = 8;

/// One to [`MAX_RATES`] rates that apply together (for example per second and per hour).
///
/// ```
/// use traffik_core::{Rate, Rates};
///
/// let rates: Rates = "10/s, 1000 per hour".parse()?;
/// assert_eq!(rates.as_slice(), &[Rate::per_second(10), Rate::per_hour(1000)]);
/// assert_eq!(rates.to_string(), "10/s, 1000/h");
/// assert_eq!(rates.to_string().parse::<Rates>()?, rates);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rates {
    rates: [Rate; MAX_RATES],
    len: usize,
}

/// Why a list of rates could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RatesError {
    /// A list needs at least one rate.
    Empty,
    /// More than [`MAX_RATES`] rates.
    TooMany {
        /// How many were given.
        given: usize,
    },
}

impl fmt::Display for RatesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RatesError::Empty => f.write_str("a list of rates needs at least one rate"),
            RatesError::TooMany { given } => {
                write!(f, "{given} rates given; at most {MAX_RATES} apply together")
            }
        }
    }
}

impl core::error::Error for RatesError {}

impl Rates {
    /// The list of `rates`, in order.
    ///
    /// # Errors
    ///
    /// [`RatesError::Empty`] for no rate, [`RatesError::TooMany`] for more than [`MAX_RATES`].
    pub fn new(rates: &[Rate]) -> Result<Rates, RatesError> {
        if rates.is_empty() {
            return Err(RatesError::Empty);
        }
        if rates.len() > MAX_RATES {
            return Err(RatesError::TooMany { given: rates.len() });
        }
        let mut list = [Rate::unlimited(); MAX_RATES];
        list[..rates.len()].copy_from_slice(rates);
        Ok(Rates {
            rates: list,
            len: rates.len(),
        })
    }

    /// A list of one rate.
    pub const fn single(rate: Rate) -> Rates {
        let mut rates = [Rate::unlimited(); MAX_RATES];
        rates[0] = rate;
        Rates { rates, len: 1 }
    }

    /// The rates, in the order given.
    pub fn as_slice(&self) -> &[Rate] {
        &self.rates[..self.len]
    }

    /// How many rates (at least 1).
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: a list holds at least one rate.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The rates, in order.
    pub fn iter(&self) -> core::iter::Copied<core::slice::Iter<'_, Rate>> {
        self.as_slice().iter().copied()
    }
}

impl From<Rate> for Rates {
    fn from(rate: Rate) -> Rates {
        Rates::single(rate)
    }
}

impl<'a> IntoIterator for &'a Rates {
    type Item = Rate;
    type IntoIter = core::iter::Copied<core::slice::Iter<'a, Rate>>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Displays the members in [`Rate`]'s canonical form, separated by `", "`: `10/s, 1000/h`.
/// The output parses back to the same list (unless it holds a zero-limit rate, which only
/// `Rate`'s `const` constructors make and which does not parse back on its own either).
impl fmt::Display for Rates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rate) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            fmt::Display::fmt(&rate, f)?;
        }
        Ok(())
    }
}

/// An error from parsing [`Rates`]: which member (counting from 0), what was wrong with it,
/// and the byte offset in the whole input.
///
/// ```
/// use traffik_core::{Rates, RatesParseErrorKind, RateParseErrorKind};
///
/// let err = "10/s, 5/week".parse::<Rates>().unwrap_err();
/// assert_eq!(err.member(), 1);
/// assert_eq!(err.kind(), RatesParseErrorKind::Rate(RateParseErrorKind::UnknownUnit));
/// assert_eq!(err.position(), 8);
/// assert_eq!(
///     err.to_string(),
///     "rate 2 of the list: unknown time unit at byte 8 (expected ns, us, ms, s, m, h or d)"
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RatesParseError {
    kind: RatesParseErrorKind,
    member: usize,
    position: usize,
}

/// The kinds of [`RatesParseError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RatesParseErrorKind {
    /// The member is not a valid [`Rate`] (an empty member, as in `"10/s,,5/m"` or a trailing
    /// comma, is [`RateParseErrorKind::Empty`]).
    Rate(RateParseErrorKind),
    /// More than [`MAX_RATES`] members; the member index is the first one too many.
    TooMany,
}

impl RatesParseError {
    /// What was wrong.
    pub const fn kind(&self) -> RatesParseErrorKind {
        self.kind
    }

    /// The member that was wrong, counting from 0.
    pub const fn member(&self) -> usize {
        self.member
    }

    /// The byte offset in the whole input where the problem was found (for an empty member,
    /// where that member starts).
    pub const fn position(&self) -> usize {
        self.position
    }
}

impl fmt::Display for RatesParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Members are numbered from 1 for people.
        let n = self.member + 1;
        match self.kind {
            RatesParseErrorKind::TooMany => write!(
                f,
                "rate {n} of the list at byte {}: at most {MAX_RATES} rates apply together",
                self.position
            ),
            // The member's own message, with the offset in the whole input.
            RatesParseErrorKind::Rate(kind) => write!(
                f,
                "rate {n} of the list: {}",
                RateParseError::new(kind, self.position)
            ),
        }
    }
}

impl core::error::Error for RatesParseError {}

/// Parses comma-separated [`Rate`]s (each in `Rate`'s grammar, whitespace allowed around the
/// commas): `"10/s, 1000/h"`, `"5 per second,100 per minute"`. One to [`MAX_RATES`] members.
impl FromStr for Rates {
    type Err = RatesParseError;

    fn from_str(s: &str) -> Result<Rates, RatesParseError> {
        let mut rates = [Rate::unlimited(); MAX_RATES];
        let mut len = 0;
        let mut start = 0;
        for (member, text) in s.split(',').enumerate() {
            if member >= MAX_RATES {
                return Err(RatesParseError {
                    kind: RatesParseErrorKind::TooMany,
                    member,
                    position: start,
                });
            }
            match text.parse::<Rate>() {
                Ok(rate) => rates[member] = rate,
                Err(e) => {
                    return Err(RatesParseError {
                        kind: RatesParseErrorKind::Rate(e.kind()),
                        member,
                        position: start + e.position(),
                    })
                }
            }
            len = member + 1;
            // Past this member and its comma.
            start += text.len() + 1;
        }
        Ok(Rates { rates, len })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use core::time::Duration;

    #[test]
    fn parses_and_round_trips() {
        let rates: Rates = " 10/s ,1000/h,  20 per 2 mins ".parse().unwrap();
        assert_eq!(
            rates.as_slice(),
            &[
                Rate::per_second(10),
                Rate::per_hour(1000),
                Rate::new(20, Duration::from_secs(120)).unwrap()
            ]
        );
        let mut buf = [0u8; 64];
        let text = fmt_into(&rates, &mut buf);
        assert_eq!(text, "10/s, 1000/h, 20/2m");
        assert_eq!(text.parse::<Rates>(), Ok(rates));
        assert_eq!(
            "7/90s".parse::<Rates>(),
            Ok(Rates::single(Rate::from_nanos(7, 90_000_000_000).unwrap()))
        );
    }

    #[test]
    fn errors_name_member_and_offset() {
        let e = "10/s, 5/week".parse::<Rates>().unwrap_err();
        assert_eq!((e.member(), e.position()), (1, 8));
        let e = "10/s,,5/m".parse::<Rates>().unwrap_err();
        assert_eq!(
            e.kind(),
            RatesParseErrorKind::Rate(RateParseErrorKind::Empty)
        );
        assert_eq!((e.member(), e.position()), (1, 5));
        let e = "10/s,".parse::<Rates>().unwrap_err();
        assert_eq!((e.member(), e.position()), (1, 5));
        let e = "".parse::<Rates>().unwrap_err();
        assert_eq!((e.member(), e.position()), (0, 0));
        let e = "1/s, 0/m".parse::<Rates>().unwrap_err();
        assert_eq!(
            e.kind(),
            RatesParseErrorKind::Rate(RateParseErrorKind::ZeroLimit)
        );
        assert_eq!(e.position(), 5);
        let e = "1/s,1/s,1/s,1/s,1/s,1/s,1/s,1/s,1/s"
            .parse::<Rates>()
            .unwrap_err();
        assert_eq!(e.kind(), RatesParseErrorKind::TooMany);
        assert_eq!((e.member(), e.position()), (8, 32));
    }

    #[test]
    fn new_checks_length() {
        assert_eq!(Rates::new(&[]), Err(RatesError::Empty));
        assert_eq!(
            Rates::new(&[Rate::per_second(1); 9]),
            Err(RatesError::TooMany { given: 9 })
        );
        assert_eq!(Rates::new(&[Rate::per_second(1); 8]).unwrap().len(), 8);
    }

    fn fmt_into<'b>(rates: &Rates, buf: &'b mut [u8]) -> &'b str {
        struct W<'b>(&'b mut [u8], usize);
        impl fmt::Write for W<'_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                let end = self.1 + s.len();
                self.0
                    .get_mut(self.1..end)
                    .ok_or(fmt::Error)?
                    .copy_from_slice(s.as_bytes());
                self.1 = end;
                Ok(())
            }
        }
        let mut w = W(buf, 0);
        fmt::write(&mut w, format_args!("{rates}")).unwrap();
        let n = w.1;
        core::str::from_utf8(&buf[..n]).unwrap()
    }
}
