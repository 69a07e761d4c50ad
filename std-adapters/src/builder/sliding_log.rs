//! [`Builder::build_sliding_log`] and [`Builder::build_direct_sliding_log`]: the exact sliding
//! window log, in process, from the same one-line configuration as the other limiters.

use super::{BuildError, Builder};
use crate::clock::QuantaClock;
use crate::sliding_log::KeyedSlidingLog;
use std::hash::Hash;
use traffik_core::{Clock, ConfigError, OverflowPolicy, SlidingLog, SlidingLogLimiter, TableError};

impl Builder {
    /// The log's configuration, refusing the settings it cannot honour: an algorithm (the log is
    /// its own), a burst other than the limit (it admits exactly `limit` per trailing period),
    /// and, for the keyed log, shards (its map shards itself) and an overflow policy other than
    /// [`OverflowPolicy::Deny`] (a key beyond the capacity is refused, never evicted).
    fn sliding_log_for(&self, build: &'static str, keyed: bool) -> Result<SlidingLog, BuildError> {
        if self.algorithm.is_some() {
            return Err(BuildError::NotApplicable {
                setting: "algorithm",
                build,
            });
        }
        if keyed {
            if self.shards.is_some() {
                return Err(BuildError::NotApplicable {
                    setting: "shards",
                    build,
                });
            }
            if matches!(self.overflow, Some(policy) if policy != OverflowPolicy::Deny) {
                return Err(BuildError::NotApplicable {
                    setting: "overflow",
                    build,
                });
            }
        }
        let rate = self.rate_for()?;
        let log = SlidingLog::new(rate).map_err(BuildError::Config)?;
        if self.burst.is_some_and(|burst| burst != log.limit()) {
            return Err(BuildError::Config(ConfigError::BurstNotSupported));
        }
        Ok(log)
    }

    /// A keyed sliding window log ([`KeyedSlidingLog`]) on the default clock: exactly `limit`
    /// in every trailing period per key, holding at most the builder's
    /// [`capacity`](Self::capacity) keys (a new key beyond it is refused with
    /// [`CheckError::TableFull`](traffik_core::CheckError::TableFull) until
    /// [`remove_idle`](KeyedSlidingLog::remove_idle) drops quiet keys).
    ///
    /// Each key costs `limit * 8 + 64` bytes of ring, so the limit is capped at
    /// [`MAX_LOG_LIMIT`](traffik_core::MAX_LOG_LIMIT) ([`ConfigError::LimitTooLarge`]). A burst
    /// other than the limit is [`ConfigError::BurstNotSupported`]; an algorithm, shard count or
    /// overflow policy other than `Deny` is [`BuildError::NotApplicable`].
    ///
    /// ```
    /// use traffik::sliding_log::KeyedSlidingLog;
    /// use traffik::{builder, ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let log: KeyedSlidingLog<String, _> = builder()
    ///     .rate("3/s")
    ///     .capacity(2)
    ///     .build_sliding_log_with_clock(&clock)?;
    /// assert!(log.check("alice", 3)?.is_allowed());
    /// clock.advance(Duration::from_millis(400));
    /// let denied = log.check("alice", 1)?;
    /// assert_eq!(denied.retry_after(), Duration::from_millis(600)); // the 0 s entries leave at 1 s
    /// assert!(log.check("bob", 1)?.is_allowed());
    /// assert!(log.check("carol", 1).is_err()); // a third key: TableFull
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build_sliding_log<K: Hash + Eq + Clone>(
        &self,
    ) -> Result<KeyedSlidingLog<K, QuantaClock>, BuildError> {
        self.build_sliding_log_with_clock(QuantaClock::new())
    }

    /// [`build_sliding_log`](Self::build_sliding_log) on a clock of your choice.
    pub fn build_sliding_log_with_clock<K: Hash + Eq + Clone, C: Clock>(
        &self,
        clock: C,
    ) -> Result<KeyedSlidingLog<K, C>, BuildError> {
        let log = self.sliding_log_for("build_sliding_log", true)?;
        if self.capacity == 0 {
            return Err(BuildError::Table(TableError::ZeroCapacity));
        }
        Ok(KeyedSlidingLog::with_max_keys(log, clock, self.capacity))
    }

    /// A single-key sliding window log ([`SlidingLogLimiter`]) on the default clock; the
    /// rate and burst rules are [`build_sliding_log`](Self::build_sliding_log)'s (the table
    /// settings are not used).
    pub fn build_direct_sliding_log(&self) -> Result<SlidingLogLimiter<QuantaClock>, BuildError> {
        self.build_direct_sliding_log_with_clock(QuantaClock::new())
    }

    /// [`build_direct_sliding_log`](Self::build_direct_sliding_log) on a clock of your choice.
    pub fn build_direct_sliding_log_with_clock<C: Clock>(
        &self,
        clock: C,
    ) -> Result<SlidingLogLimiter<C>, BuildError> {
        let log = self.sliding_log_for("build_direct_sliding_log", false)?;
        Ok(SlidingLogLimiter::new(log, clock))
    }
}
