//! [`Builder::rates`] and [`Builder::build_multi`]: several limits on the same keys, checked
//! all or nothing.

use super::{BuildError, Builder};
use crate::clock::QuantaClock;
use traffik_core::{AnyAlgorithm, Clock, Key, KeyedLimiter, MultiKeyed, Rates, RatesParseError};

/// A keyed limiter enforcing several rates at once (all or nothing) on the default clock.
pub type MultiRateLimiter<K> = MultiKeyed<K, AnyAlgorithm, QuantaClock>;

/// Something that names one or more rates: [`Rates`], a single [`Rate`](traffik_core::Rate),
/// or a string such as `"10/s, 1000/h"`.
pub trait IntoRates {
    /// The rates, or why the string is not a list of them.
    fn into_rates(self) -> Result<Rates, RatesParseError>;
}

impl IntoRates for Rates {
    fn into_rates(self) -> Result<Rates, RatesParseError> {
        Ok(self)
    }
}

impl IntoRates for traffik_core::Rate {
    fn into_rates(self) -> Result<Rates, RatesParseError> {
        Ok(Rates::single(self))
    }
}

impl IntoRates for &str {
    fn into_rates(self) -> Result<Rates, RatesParseError> {
        self.parse()
    }
}

impl IntoRates for String {
    fn into_rates(self) -> Result<Rates, RatesParseError> {
        self.parse()
    }
}

impl Builder {
    /// Several rates that all apply, such as `"10/s, 1000/h"`: build them with
    /// [`build_multi`](Self::build_multi) (a single-rate list also works with
    /// [`build`](Self::build)). Each rate gets the builder's algorithm; a burst, if set, applies
    /// to each. Overrides [`rate`](Self::rate) for `build_multi`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use traffik::{builder, ManualClock};
    ///
    /// let clock = ManualClock::new();
    /// let limiter = builder().rates("10/s, 15/min").build_multi_with_clock::<str, _>(&clock)?;
    /// let burst = (0..20).filter(|_| limiter.check("k", 1).unwrap().is_allowed()).count();
    /// assert_eq!(burst, 10);
    /// clock.advance(Duration::from_secs(1));
    /// let then = (0..20).filter(|_| limiter.check("k", 1).unwrap().is_allowed()).count();
    /// assert_eq!(then, 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rates(mut self, rates: impl IntoRates) -> Self {
        self.rates = Some(rates.into_rates());
        self
    }

    /// A multi-rate keyed limiter on the default clock: one table per rate (each of
    /// [`capacity`](Self::capacity) keys), checked all or nothing in the order the rates were
    /// given (put the one most likely to deny first: a check it denies writes nothing).
    pub fn build_multi<K: Key + ?Sized>(&self) -> Result<MultiRateLimiter<K>, BuildError> {
        self.build_multi_with_clock(QuantaClock::new())
    }

    /// [`build_multi`](Self::build_multi) on a clock of your choice (cloned once per rate).
    pub fn build_multi_with_clock<K: Key + ?Sized, C: Clock + Clone>(
        &self,
        clock: C,
    ) -> Result<MultiKeyed<K, AnyAlgorithm, C>, BuildError> {
        let rates = match (self.rates, self.rate) {
            (Some(rates), _) => rates.map_err(BuildError::Rates)?,
            (None, Some(rate)) => Rates::single(rate.map_err(BuildError::Rate)?),
            (None, None) => return Err(BuildError::MissingRate),
        };
        let tables = rates
            .iter()
            .map(|rate| {
                let algorithm =
                    AnyAlgorithm::new(self.kind(), rate, self.burst).map_err(BuildError::Config)?;
                KeyedLimiter::new(algorithm, clock.clone(), self.table_config())
                    .map_err(BuildError::Table)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MultiKeyed::new(tables))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::builder;
    use traffik_core::{Algorithm, ManualClock, RateParseErrorKind, RatesParseErrorKind};

    #[test]
    fn typed_errors() {
        let e = builder()
            .rates("10/s, 5/fortnight")
            .build_multi::<str>()
            .unwrap_err();
        match e {
            BuildError::Rates(e) => {
                assert_eq!(e.member(), 1);
                assert_eq!(
                    e.kind(),
                    RatesParseErrorKind::Rate(RateParseErrorKind::UnknownUnit)
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            builder().rates("10/s, 1/h").build::<str>().unwrap_err(),
            BuildError::MultipleRates
        );
        assert!(builder().rates("10/s").build::<str>().is_ok());
        assert_eq!(
            builder().build_multi::<str>().unwrap_err(),
            BuildError::MissingRate
        );
    }

    #[test]
    fn one_table_per_rate_in_order() {
        let clock = ManualClock::new();
        let limiter = builder()
            .rates("2/s, 3/min")
            .capacity(16)
            .build_multi_with_clock::<u64, _>(&clock)
            .unwrap();
        assert_eq!(limiter.tables().len(), 2);
        assert_eq!(limiter.tables()[1].algorithm().capacity(), 3);
        assert!(limiter.check(&1, 1).unwrap().is_allowed());
        assert!(limiter.check(&1, 1).unwrap().is_allowed());
        assert!(limiter.check(&1, 1).unwrap().is_denied());
        clock.advance_nanos(1_000_000_000);
        assert!(limiter.check(&1, 1).unwrap().is_allowed());
        assert!(limiter.check(&1, 1).unwrap().is_denied());
        assert_eq!(limiter.tables()[0].peek(&1).remaining(), 1);
    }
}
