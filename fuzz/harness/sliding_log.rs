//! Reference model of the sliding window log: every admitted unit kept as a timestamp in a
//! plain list, the rule applied by counting. Independent of the ring in
//! `traffik_core::sliding_log` (no slots, no head, no expiries, no binary search).
#![allow(dead_code)]

/// What the model answers: (allowed, limit, remaining, retry_after, reset_after).
pub type Answer = (bool, u64, u64, u64, u64);

/// The model: `limit` per `period` nanoseconds over a trailing window.
#[derive(Clone, Debug)]
pub struct LogModel {
    pub limit: u64,
    pub period: u64,
    /// One timestamp per admitted unit of cost, in admission order.
    pub times: Vec<u64>,
}

impl LogModel {
    pub fn new(limit: u64, period: u64) -> Self {
        LogModel {
            limit,
            period,
            times: Vec::new(),
        }
    }

    /// Timestamps that still count at `now` (recorded after `now - period`), oldest first.
    fn live(&self, now: u64) -> Vec<u64> {
        let mut live: Vec<u64> = self
            .times
            .iter()
            .copied()
            .filter(|&t| t + self.period > now)
            .collect();
        live.sort_unstable();
        live
    }

    /// A check; `None` when the cost exceeds the limit.
    pub fn check(&mut self, now: u64, cost: u64) -> Option<Answer> {
        if cost > self.limit {
            return None;
        }
        let live = self.live(now);
        let count = live.len() as u64;
        let newest = self.times.iter().copied().max();
        let reset_of = |t: Option<u64>| t.map_or(0, |t| (t + self.period).saturating_sub(now));
        // A zero cost is a peek, always allowed (the core's contract); a stale reading may count
        // more than `limit` entries (some recorded after it), hence the saturation.
        if cost == 0 {
            let remaining = self.limit.saturating_sub(count);
            return Some((true, self.limit, remaining, 0, reset_of(newest)));
        }
        if count + cost <= self.limit {
            // A reading behind the newest entry records at the newest (the stale-clock rule).
            let at = newest.map_or(now, |n| n.max(now));
            for _ in 0..cost {
                self.times.push(at);
            }
            let newest = self.times.iter().copied().max();
            return Some((
                true,
                self.limit,
                self.limit - count - cost,
                0,
                reset_of(newest),
            ));
        }
        let need = (count + cost - self.limit) as usize;
        let retry = live[need - 1] + self.period - now;
        // At a stale reading more than `limit` entries may count (some recorded after it).
        Some((
            false,
            self.limit,
            self.limit.saturating_sub(count),
            retry,
            reset_of(newest),
        ))
    }

    pub fn reset(&mut self) {
        self.times.clear();
    }
}

/// The fuzz entry point (`fuzz_targets/sliding_log_ops.rs`, replayed on stable by
/// `core/tests/sliding_log.rs`): the first two bytes pick a limit (1 to 16) and a period
/// (1 to 256 ms); then each pair of bytes is one operation on a ring and the model, whose
/// decisions must agree to the nanosecond.
pub fn sliding_log_ops(data: &[u8]) {
    use traffik_core::{CheckError, LogRing, Rate, SlidingLog};
    const MS: u64 = 1_000_000;
    let [l, p, rest @ ..] = data else { return };
    let limit = u64::from(l % 16) + 1;
    let period = (u64::from(*p) + 1) * MS;
    let rate = Rate::new(limit, core::time::Duration::from_nanos(period)).unwrap();
    let log = SlidingLog::new(rate).unwrap();
    let ring = LogRing::new(&log);
    let mut model = LogModel::new(limit, period);
    let mut now = 1_000 * MS;
    for op in rest.chunks_exact(2) {
        let (kind, arg) = (op[0], u64::from(op[1]));
        match kind % 8 {
            // Advance by eighths of the period (landing on expiries) or by odd nanoseconds.
            0 | 1 => now += arg % 16 * (period / 8),
            2 => now += arg * 7_919,
            3 => {
                ring.reset();
                model.reset();
            }
            k => {
                // 4..=6: a check now; 7: a check whose reading lags by up to two periods.
                let cost = arg % (limit + 2);
                let at = if k == 7 {
                    now.saturating_sub(arg * period / 128)
                } else {
                    now
                };
                let got = ring.check(at, cost);
                match model.check(at, cost) {
                    None => assert_eq!(got, Err(CheckError::InsufficientCapacity { max: limit })),
                    Some(want) => {
                        let d = got.unwrap();
                        let seen = (
                            d.is_allowed(),
                            d.limit(),
                            d.remaining(),
                            d.retry_after_nanos(),
                            d.reset_after_nanos(),
                        );
                        assert_eq!(
                            seen, want,
                            "limit {limit} period {period} at {at} cost {cost}"
                        );
                    }
                }
            }
        }
    }
}
