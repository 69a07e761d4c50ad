//! Key expiry times in memcached's terms.
//!
//! A stored state gets an expiry equal to the time until it is fresh again (the core's
//! `reset_after`), rounded up to whole seconds, plus one second. The extra second is needed
//! because memcached's own clock ticks once a second: it stamps an item set with relative
//! expiry `E` at its current tick, which may be up to one second behind real time, so the item
//! can vanish up to one second before `E` real seconds have passed. With the extra second a key
//! is never dropped before it is fresh, so a vanished key decides exactly like the state it
//! held.
//!
//! Memcached reads an expiry above 30 days (2,592,000 s) as an absolute Unix time, and parses
//! expiries as signed 32-bit numbers (a larger one wraps and expires the item at once). So:
//!
//! * up to 2,592,000 s: sent as is (relative);
//! * above: sent as this machine's wall-clock Unix time plus the expiry plus
//!   [`ABSOLUTE_MARGIN`] seconds, which tolerates a memcached host whose clock runs up to that
//!   much ahead of this one; keys this long-lived are rare, and keeping one a minute longer than
//!   needed changes no decision;
//! * if that absolute time does not fit in 31 bits (past January 2038), or the wall clock reads
//!   before 1970: `0`, memcached's "never expires". Such a key stays until it is reset, evicted
//!   or the server restarts, which is never earlier than it should.

/// Memcached's boundary between relative and absolute expiry times, in seconds.
pub(crate) const RELATIVE_MAX: u64 = 30 * 24 * 60 * 60;

/// Seconds added to absolute expiry times, for the memcached host's clock being ahead.
pub(crate) const ABSOLUTE_MARGIN: u64 = 60;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// The `exptime` to store with a state that is fresh again after `reset_after_nanos`, given
/// this machine's wall clock in Unix seconds (`None` if it reads before 1970).
pub(crate) fn exptime(reset_after_nanos: u64, wall_unix_secs: Option<u64>) -> u32 {
    let secs = reset_after_nanos.div_ceil(NANOS_PER_SEC) + 1;
    if secs <= RELATIVE_MAX {
        // RELATIVE_MAX < 2^32, so this always converts.
        return u32::try_from(secs).unwrap_or(0);
    }
    wall_unix_secs
        .and_then(|wall| wall.checked_add(secs)?.checked_add(ABSOLUTE_MARGIN))
        .filter(|&at| at <= i32::MAX as u64)
        .and_then(|at| u32::try_from(at).ok())
        .unwrap_or(0)
}

/// This machine's wall clock in whole Unix seconds, for absolute expiry times.
pub(crate) fn wall_unix_secs() -> Option<u64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NANOS_PER_SEC;

    #[test]
    fn short_expiries_round_up_plus_one_second() {
        assert_eq!(exptime(0, Some(0)), 1);
        assert_eq!(exptime(1, Some(0)), 2);
        assert_eq!(exptime(S, Some(0)), 2);
        assert_eq!(exptime(S + 1, Some(0)), 3);
        assert_eq!(exptime(60 * S, None), 61);
    }

    #[test]
    fn the_thirty_day_boundary() {
        // 2,591,999 s + 1 = 2,592,000: still relative.
        assert_eq!(
            exptime((RELATIVE_MAX - 1) * S, Some(1_800_000_000)),
            2_592_000
        );
        // One nanosecond more needs 2,592,001 s: absolute.
        let wall = 1_800_000_000;
        assert_eq!(
            exptime((RELATIVE_MAX - 1) * S + 1, Some(wall)),
            (wall + RELATIVE_MAX + 1 + ABSOLUTE_MARGIN) as u32
        );
        // No wall clock: never expire rather than guess.
        assert_eq!(exptime(RELATIVE_MAX * S, None), 0);
    }

    #[test]
    fn absolute_times_past_2038_never_expire() {
        let wall = i32::MAX as u64 - RELATIVE_MAX - 1 - ABSOLUTE_MARGIN;
        assert_eq!(exptime(RELATIVE_MAX * S, Some(wall)), i32::MAX as u32);
        assert_eq!(exptime(RELATIVE_MAX * S, Some(wall + 1)), 0);
        assert_eq!(exptime(u64::MAX, Some(1_800_000_000)), 0);
        assert_eq!(exptime(u64::MAX, Some(u64::MAX)), 0);
    }
}
