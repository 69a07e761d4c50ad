//! One-line construction of limiters with real clocks, random seeds and sensible defaults.

use crate::clock::QuantaClock;
pub use multi::{IntoRates, MultiRateLimiter};
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use traffik_core::{
    AlgorithmKind, AnyAlgorithm, Clock, ConfigError, Key, KeyedLimiter, Limiter, Live,
    OverflowPolicy, QuotaError, QuotaLimiter, Quotas, Rate, RateParseError, Rates, RatesParseError,
    Rollover, TableConfig, TableError, Tiers,
};

mod multi;
mod sliding_log;

/// A keyed limiter with the default clock and a runtime-chosen algorithm.
pub type RateLimiter<K> = KeyedLimiter<K, AnyAlgorithm, QuantaClock>;

/// A single-key limiter with the default clock and a runtime-chosen algorithm.
pub type DirectLimiter = Limiter<AnyAlgorithm, QuantaClock>;

/// A keyed limiter whose rate can change while it runs ([`KeyedLimiter::set_rate`]).
pub type LiveRateLimiter<K> = KeyedLimiter<K, Live<AnyAlgorithm>, QuantaClock>;

/// A single-key limiter whose rate can change while it runs ([`Limiter::set_rate`]).
pub type LiveDirectLimiter = Limiter<Live<AnyAlgorithm>, QuantaClock>;

/// A keyed limiter whose keys' tiers (from a closure `F`) multiply the base rate, with `N`
/// tiers; see [`Builder::build_tiered`].
pub type TieredRateLimiter<K, F, const N: usize> =
    QuotaLimiter<K, Tiers<AnyAlgorithm, F, N>, QuantaClock>;

/// Default number of keys a keyed limiter holds.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// Something that names a rate: a [`Rate`] or a rate string such as `"100/minute"`.
pub trait IntoRate {
    /// The rate, or why the string is not one.
    fn into_rate(self) -> Result<Rate, RateParseError>;
}

impl IntoRate for Rate {
    fn into_rate(self) -> Result<Rate, RateParseError> {
        Ok(self)
    }
}

impl IntoRate for &str {
    fn into_rate(self) -> Result<Rate, RateParseError> {
        self.parse()
    }
}

impl IntoRate for String {
    fn into_rate(self) -> Result<Rate, RateParseError> {
        self.parse()
    }
}

/// Why a limiter could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// No rate was given.
    MissingRate,
    /// The rate string did not parse.
    Rate(RateParseError),
    /// The algorithm rejected the rate or burst.
    Config(ConfigError),
    /// The table could not be sized.
    Table(TableError),
    /// The tiers could not be built.
    Quota(QuotaError),
    /// The rate list given to [`Builder::rates`] did not parse.
    Rates(RatesParseError),
    /// [`Builder::rates`] gave several rates: build with [`Builder::build_multi`].
    MultipleRates,
    /// A setting the chosen build cannot honour, such as an algorithm given to
    /// [`Builder::build_sliding_log`] (the log is its own algorithm).
    NotApplicable {
        /// The setting, named as its builder method (`"algorithm"`, `"overflow"`, `"shards"`).
        setting: &'static str,
        /// The build method that cannot use it.
        build: &'static str,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::MissingRate => f.write_str("no rate given: call .rate(\"100/minute\")"),
            BuildError::Rate(e) => write!(f, "invalid rate: {e}"),
            BuildError::Config(e) => write!(f, "invalid limiter configuration: {e}"),
            BuildError::Table(e) => write!(f, "invalid table configuration: {e}"),
            BuildError::Quota(e) => write!(f, "invalid tiers: {e}"),
            BuildError::Rates(e) => write!(f, "invalid rate list: {e}"),
            BuildError::MultipleRates => {
                f.write_str("several rates given: build them together with .build_multi()")
            }
            BuildError::NotApplicable { setting, build } => {
                write!(f, ".{setting}(..) does not apply to .{build}(): remove it")
            }
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::MissingRate => None,
            BuildError::Rate(e) => Some(e),
            BuildError::Config(e) => Some(e),
            BuildError::Table(e) => Some(e),
            BuildError::Quota(e) => Some(e),
            BuildError::Rates(e) => Some(e),
            BuildError::MultipleRates | BuildError::NotApplicable { .. } => None,
        }
    }
}

/// Builds [`RateLimiter`]s and [`DirectLimiter`]s.
///
/// ```
/// use std::net::IpAddr;
/// use traffik::RateLimiter;
///
/// // 100 requests a minute per client address, GCRA, room for 100,000 clients.
/// let limiter: RateLimiter<IpAddr> = traffik::builder().rate("100/minute").build()?;
/// let ip: IpAddr = "203.0.113.9".parse()?;
/// assert!(limiter.check(&ip, 1)?.is_allowed());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Builder {
    rate: Option<Result<Rate, RateParseError>>,
    // `None` until chosen (GCRA), so the sliding log can refuse an explicit choice.
    algorithm: Option<AlgorithmKind>,
    burst: Option<u64>,
    capacity: usize,
    // `None` until set, so builds that cannot honour a policy can tell a choice from the default.
    overflow: Option<OverflowPolicy>,
    shards: Option<usize>,
    rates: Option<Result<Rates, RatesParseError>>,
}

/// A new [`Builder`] with the defaults: GCRA, burst equal to the limit, room for
/// [`DEFAULT_CAPACITY`] keys, evict-stalest on overflow, shards from the core count.
pub fn builder() -> Builder {
    Builder {
        rate: None,
        algorithm: None,
        burst: None,
        capacity: DEFAULT_CAPACITY,
        overflow: None,
        shards: None,
        rates: None,
    }
}

impl Builder {
    /// The rate: a [`Rate`] or a string such as `"100/minute"` or `"5 per 2 seconds"`.
    pub fn rate(mut self, rate: impl IntoRate) -> Self {
        self.rate = Some(rate.into_rate());
        self
    }

    /// The algorithm (default [`AlgorithmKind::Gcra`]).
    pub fn algorithm(mut self, kind: AlgorithmKind) -> Self {
        self.algorithm = Some(kind);
        self
    }

    /// The token bucket with debt ([`DebtBucket`](traffik_core::DebtBucket)): a key may owe
    /// up to `max_debt` tokens, repaid before its next admission. The same as
    /// `.algorithm(AlgorithmKind::DebtBucket { max_debt })`; the burst sets the bucket's
    /// capacity.
    ///
    /// ```
    /// use traffik::{builder, ManualClock};
    ///
    /// let clock = ManualClock::new();
    /// let limiter = builder().rate("10/s").max_debt(10).build_with_clock::<str, _>(&clock)?;
    /// assert!(limiter.check("k", 20)?.is_allowed()); // 10 held, 10 borrowed
    /// assert_eq!(limiter.check("k", 1)?.retry_after_nanos(), 1_000_000_000); // repay first
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_debt(mut self, max_debt: u64) -> Self {
        self.algorithm = Some(AlgorithmKind::DebtBucket { max_debt });
        self
    }

    /// The quota with rollover ([`QuotaRollover`](traffik_core::QuotaRollover)): per fixed
    /// period, with part of what a period leaves unused carried into the next. The same as
    /// `.algorithm(AlgorithmKind::QuotaRollover(rollover))`.
    ///
    /// ```
    /// use traffik::{builder, ManualClock, Rollover};
    ///
    /// let clock = ManualClock::new();
    /// // Half of what a period leaves of its 100, at most 50, carries into the next.
    /// let limiter = builder()
    ///     .rate("100/s")
    ///     .rollover(Rollover::new(1, 2, 50))
    ///     .build_with_clock::<str, _>(&clock)?;
    /// assert_eq!(limiter.check("k", 0)?.remaining(), 150); // a fresh key: 100 + 50
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rollover(mut self, rollover: Rollover) -> Self {
        self.algorithm = Some(AlgorithmKind::QuotaRollover(rollover));
        self
    }

    /// Burst (GCRA) or capacity (buckets); defaults to the rate's limit.
    pub fn burst(mut self, burst: u64) -> Self {
        self.burst = Some(burst);
        self
    }

    /// Keys the keyed limiter holds (default [`DEFAULT_CAPACITY`]); memory is fixed at
    /// 24 bytes per key of capacity.
    pub fn capacity(mut self, keys: usize) -> Self {
        self.capacity = keys;
        self
    }

    /// What to do when a new key finds the table full.
    pub fn overflow(mut self, policy: OverflowPolicy) -> Self {
        self.overflow = Some(policy);
        self
    }

    /// Shard count (default [`TableConfig::default_shards`]: four per core, none below 4,096
    /// slots).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    fn rate_for(&self) -> Result<Rate, BuildError> {
        match (self.rate, self.rates) {
            (Some(rate), _) => rate.map_err(BuildError::Rate),
            (None, Some(rates)) => match rates.map_err(BuildError::Rates)?.as_slice() {
                [one] => Ok(*one),
                _ => Err(BuildError::MultipleRates),
            },
            (None, None) => Err(BuildError::MissingRate),
        }
    }

    /// The chosen algorithm, GCRA unless one was set.
    fn kind(&self) -> AlgorithmKind {
        self.algorithm.unwrap_or_default()
    }

    fn algorithm_for(&self) -> Result<AnyAlgorithm, BuildError> {
        AnyAlgorithm::new(self.kind(), self.rate_for()?, self.burst).map_err(BuildError::Config)
    }

    /// The table configuration: capacity, shards, overflow policy and fresh random seeds.
    fn table_config(&self) -> TableConfig {
        let shards = self.shards.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            TableConfig::default_shards(self.capacity, cores)
        });
        let mut config = TableConfig::new(self.capacity, random_seeds());
        config.shards = shards;
        config.overflow = self.overflow.unwrap_or_default();
        config
    }

    /// A keyed limiter on the default clock.
    pub fn build<K: Key + ?Sized>(&self) -> Result<RateLimiter<K>, BuildError> {
        self.build_with_clock(QuantaClock::new())
    }

    /// A keyed limiter on a clock of your choice (for example a `ManualClock` in tests).
    pub fn build_with_clock<K: Key + ?Sized, C: Clock>(
        &self,
        clock: C,
    ) -> Result<KeyedLimiter<K, AnyAlgorithm, C>, BuildError> {
        let algorithm = self.algorithm_for()?;
        KeyedLimiter::new(algorithm, clock, self.table_config()).map_err(BuildError::Table)
    }

    /// A keyed limiter whose rate can be changed while it runs, on the default clock.
    ///
    /// ```
    /// use traffik::{LiveRateLimiter, Rate};
    ///
    /// let limiter: LiveRateLimiter<str> = traffik::builder().rate("10/s").build_live()?;
    /// assert!(limiter.check("alice", 10)?.is_allowed());
    /// limiter.set_rate(Rate::per_second(100), None)?; // alice keeps her TAT
    /// assert_eq!(limiter.peek("bob").remaining(), 100);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build_live<K: Key + ?Sized>(&self) -> Result<LiveRateLimiter<K>, BuildError> {
        self.build_live_with_clock(QuantaClock::new())
    }

    /// [`build_live`](Self::build_live) on a clock of your choice.
    pub fn build_live_with_clock<K: Key + ?Sized, C: Clock>(
        &self,
        clock: C,
    ) -> Result<KeyedLimiter<K, Live<AnyAlgorithm>, C>, BuildError> {
        let algorithm = Live::new(self.algorithm_for()?);
        KeyedLimiter::new(algorithm, clock, self.table_config()).map_err(BuildError::Table)
    }

    /// A keyed limiter in which a key's tier, chosen by `select` (an index into
    /// `multipliers`; past the end means tier 0), multiplies the configured rate and burst.
    /// The algorithm must let tiers differ in rate (GCRA or the leaky bucket) unless all
    /// multipliers are equal; see [`Tiers::scaled`].
    ///
    /// ```
    /// use traffik::TieredRateLimiter;
    ///
    /// // Free x1, premium x5 over 10/s: bursts of 10 and 50.
    /// let limiter = traffik::builder().rate("10/s").build_tiered(
    ///     [1, 5],
    ///     |user: &str| usize::from(user.starts_with("premium:")),
    /// )?;
    /// assert!(limiter.check("free:ann", 10)?.is_allowed());
    /// assert!(limiter.check("free:ann", 1)?.is_denied());
    /// assert!(limiter.check("premium:bo", 50)?.is_allowed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build_tiered<K, F, const N: usize>(
        &self,
        multipliers: [u64; N],
        select: F,
    ) -> Result<TieredRateLimiter<K, F, N>, BuildError>
    where
        K: Key + ?Sized,
        F: Fn(&K) -> usize,
    {
        self.build_tiered_with_clock(multipliers, select, QuantaClock::new())
    }

    /// [`build_tiered`](Self::build_tiered) on a clock of your choice.
    pub fn build_tiered_with_clock<K, F, C, const N: usize>(
        &self,
        multipliers: [u64; N],
        select: F,
        clock: C,
    ) -> Result<QuotaLimiter<K, Tiers<AnyAlgorithm, F, N>, C>, BuildError>
    where
        K: Key + ?Sized,
        F: Fn(&K) -> usize,
        C: Clock,
    {
        let tiers = Tiers::scaled(
            self.kind(),
            self.rate_for()?,
            self.burst,
            multipliers,
            select,
        )
        .map_err(BuildError::Quota)?;
        QuotaLimiter::new(tiers, clock, self.table_config()).map_err(BuildError::Table)
    }

    /// A keyed limiter over quotas of your own (any [`Quotas`], for example [`Tiers::new`]
    /// over algorithms with different bursts), with this builder's table settings; the rate,
    /// algorithm and burst set on the builder are not used.
    pub fn build_quotas<K: Key + ?Sized, Q: Quotas<K>, C: Clock>(
        &self,
        quotas: Q,
        clock: C,
    ) -> Result<QuotaLimiter<K, Q, C>, BuildError> {
        QuotaLimiter::new(quotas, clock, self.table_config()).map_err(BuildError::Table)
    }

    /// A single-key limiter on the default clock.
    pub fn build_direct(&self) -> Result<DirectLimiter, BuildError> {
        Ok(Limiter::new(self.algorithm_for()?, QuantaClock::new()))
    }

    /// A single-key limiter whose rate can be changed while it runs, on the default clock.
    pub fn build_direct_live(&self) -> Result<LiveDirectLimiter, BuildError> {
        Ok(Limiter::new(
            Live::new(self.algorithm_for()?),
            QuantaClock::new(),
        ))
    }
}

/// Four secret seeds from the OS-seeded keys of std's `RandomState`.
fn random_seeds() -> [u64; 4] {
    let state = RandomState::new();
    std::array::from_fn(|i| {
        let mut h = state.build_hasher();
        h.write_usize(i);
        h.finish()
    })
}
