//! The default clock: the system's wall clock as nanoseconds since the Unix epoch.

use std::time::{SystemTime, UNIX_EPOCH};

use traffik_core::Clock;

/// Wall-clock time in nanoseconds since the Unix epoch (1970-01-01T00:00:00Z).
///
/// Memcached keeps no time a client can read, so every process sharing a limit reads its own
/// clock: this one, so that window algorithms align their windows to the epoch in every process
/// alike. The processes' clocks must be synchronised (NTP or better); see the crate docs for
/// what skew between them does. A system clock set before 1970 reads as zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_unix_nanoseconds() {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let now = SystemClock.now() / 1_000_000_000;
        assert!(now.abs_diff(secs) <= 1, "{now} vs {secs}");
        // After 2020-01-01: the clock is not some other epoch's.
        assert!(now > 1_577_836_800);
    }
}
