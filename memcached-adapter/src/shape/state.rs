//! One key's whole queue as one memcached value, and the three operations on it (enqueue,
//! depart, cancel), pure functions of the state read, the caller's clock and the constants.
//!
//! Layout (little-endian): a version byte (1), the TAT (`u64` ns), the last sequence handed
//! out (`u64`), the ticket count (`u32`), then per ticket its sequence, cost and lease deadline
//! (three `u64`), in queue order: [`HEADER`] + [`TICKET`] × tickets bytes.

/// Bytes before the tickets.
pub(super) const HEADER: usize = 1 + 8 + 8 + 4;
/// Bytes per ticket.
pub(super) const TICKET: usize = 24;
const VERSION: u8 = 1;

/// The constants every operation is decided with (nanoseconds).
#[derive(Clone, Copy, Debug)]
pub(super) struct Params {
    pub(super) interval: u64,
    pub(super) burst: u64,
    pub(super) max_queue: usize,
    pub(super) max_wait: u64,
    pub(super) poll: u64,
    pub(super) grace: u64,
}

impl Params {
    /// How long a lease runs from its last renewal: two polls and the grace, so that a waiter
    /// renews it (a write) only every other poll.
    fn lease_span(&self) -> u64 {
        self.poll.saturating_mul(2).saturating_add(self.grace)
    }
}

/// A queued request: its sequence (its identity), its cost, and when its lease runs out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Ticket {
    pub(super) seq: u64,
    pub(super) cost: u64,
    pub(super) lease: u64,
}

/// A key's queue: the TAT of the departures, the last sequence, the waiting tickets in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct QueueState {
    pub(super) tat: u64,
    pub(super) seq: u64,
    pub(super) tickets: Vec<Ticket>,
}

/// What an operation answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Answer {
    /// The request left at this clock reading.
    Left(u64),
    /// Enqueue: queued as ticket `seq`, leaving in about `wait` ns.
    Queued {
        seq: u64,
        wait: u64,
    },
    /// Depart: still waiting, about this many ns.
    Waiting(u64),
    QueueFull,
    WaitTooLong(u64),
    /// Depart: the ticket is no longer queued (its lease passed).
    Gone,
    /// Cancel: whether the ticket was still queued.
    Cancelled(bool),
}

impl QueueState {
    /// Serialises the state.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + TICKET * self.tickets.len());
        out.push(VERSION);
        out.extend_from_slice(&self.tat.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        // The count fits: `max_queue` is capped far below 2^32 (the item-size bound).
        let n = u32::try_from(self.tickets.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&n.to_le_bytes());
        for t in &self.tickets {
            out.extend_from_slice(&t.seq.to_le_bytes());
            out.extend_from_slice(&t.cost.to_le_bytes());
            out.extend_from_slice(&t.lease.to_le_bytes());
        }
        out
    }

    /// Reads a state back; `Err` says what is wrong with bytes this crate did not write.
    pub(super) fn decode(bytes: &[u8]) -> Result<Self, String> {
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(b)
        };
        if bytes.len() < HEADER {
            return Err(format!(
                "a {}-byte value, shorter than a queue header",
                bytes.len()
            ));
        }
        if bytes[0] != VERSION {
            return Err(format!(
                "queue format version {}, where this crate writes {VERSION}",
                bytes[0]
            ));
        }
        let mut n = [0u8; 4];
        n.copy_from_slice(&bytes[17..21]);
        let n = u32::from_le_bytes(n) as usize;
        if bytes.len() != HEADER + n.saturating_mul(TICKET) {
            return Err(format!("a {}-byte value for {n} tickets", bytes.len()));
        }
        let tickets = (0..n)
            .map(|i| {
                let at = HEADER + i * TICKET;
                Ticket {
                    seq: u64_at(at),
                    cost: u64_at(at + 8),
                    lease: u64_at(at + 16),
                }
            })
            .collect();
        Ok(QueueState {
            tat: u64_at(1),
            seq: u64_at(9),
            tickets,
        })
    }

    /// Drops the tickets whose lease passed; whether any was.
    fn purge(&mut self, now: u64) -> bool {
        let before = self.tickets.len();
        self.tickets.retain(|t| t.lease >= now);
        self.tickets.len() != before
    }

    /// How far the TAT is ahead of `now`.
    fn ahead(&self, now: u64) -> u64 {
        self.tat.saturating_sub(now)
    }

    /// GCRA's test: may `cost` leave now, the TAT being `b` ahead?
    fn admits(p: &Params, b: u64, cost: u64) -> bool {
        b.saturating_add(cost.saturating_mul(p.interval)) <= p.burst.saturating_mul(p.interval)
    }

    /// Leaves now: the TAT moves to `max(TAT, now) + cost * T`.
    fn leave(&mut self, p: &Params, now: u64, b: u64, cost: u64) {
        self.tat = now
            .saturating_add(b)
            .saturating_add(cost.saturating_mul(p.interval));
    }

    /// Ns until a request of `cost` with `queued` units ahead leaves, everyone ahead on time:
    /// `max(0, b + Q * T - (burst - cost) * T)`.
    fn estimate(p: &Params, b: u64, queued: u64, cost: u64) -> u64 {
        let at = u128::from(b) + u128::from(queued) * u128::from(p.interval);
        let slack = u128::from(p.burst.saturating_sub(cost)) * u128::from(p.interval);
        u64::try_from(at.saturating_sub(slack)).unwrap_or(u64::MAX)
    }

    /// Enqueue `cost` at `now`; whether the state changed (and must be written).
    pub(super) fn enqueue(&mut self, p: &Params, now: u64, cost: u64) -> (Answer, bool) {
        let purged = self.purge(now);
        let b = self.ahead(now);
        if self.tickets.is_empty() && Self::admits(p, b, cost) {
            self.leave(p, now, b, cost);
            return (Answer::Left(now), true);
        }
        if self.tickets.len() >= p.max_queue {
            return (Answer::QueueFull, purged);
        }
        let queued = self.tickets.iter().map(|t| t.cost).sum();
        let wait = Self::estimate(p, b, queued, cost);
        if wait > p.max_wait {
            return (Answer::WaitTooLong(wait), purged);
        }
        // Sequences only grow, and start from the clock when the item had vanished, so a stale
        // ticket never names a newer request.
        let seq = self.seq.saturating_add(1).max(now);
        self.seq = seq;
        self.tickets.push(Ticket {
            seq,
            cost,
            lease: now.saturating_add(p.lease_span()),
        });
        (Answer::Queued { seq, wait }, true)
    }

    /// Ticket `seq` polls at `now`: it leaves if it is the head and GCRA admits it; otherwise
    /// it learns its estimate, renewing its lease when fewer than a poll and a grace remain.
    pub(super) fn depart(&mut self, p: &Params, now: u64, seq: u64) -> (Answer, bool) {
        let purged = self.purge(now);
        let Some(rank) = self.tickets.iter().position(|t| t.seq == seq) else {
            return (Answer::Gone, purged);
        };
        let b = self.ahead(now);
        let cost = self.tickets[rank].cost;
        if rank == 0 && Self::admits(p, b, cost) {
            self.tickets.remove(0);
            self.leave(p, now, b, cost);
            return (Answer::Left(now), true);
        }
        let queued = self.tickets[..rank].iter().map(|t| t.cost).sum();
        let wait = Self::estimate(p, b, queued, cost);
        let ticket = &mut self.tickets[rank];
        let renew = ticket.lease.saturating_sub(now) < p.poll.saturating_add(p.grace);
        if renew {
            ticket.lease = now.saturating_add(p.lease_span());
        }
        (Answer::Waiting(wait), purged || renew)
    }

    /// Removes ticket `seq` (it never charged anything, so only its place is given back).
    pub(super) fn cancel(&mut self, now: u64, seq: u64) -> (Answer, bool) {
        let purged = self.purge(now);
        let before = self.tickets.len();
        self.tickets.retain(|t| t.seq != seq);
        let was = self.tickets.len() != before;
        (Answer::Cancelled(was), purged || was)
    }

    /// Ns from `now` until the item is of no more use: the TAT is in the past and every lease
    /// has run out. Its expiry, so an abandoned queue vanishes.
    pub(super) fn useful_for(&self, now: u64) -> u64 {
        let last_lease = self.tickets.iter().map(|t| t.lease).max().unwrap_or(0);
        self.tat.max(last_lease).saturating_sub(now)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const P: Params = Params {
        interval: 100,
        burst: 1,
        max_queue: 3,
        max_wait: 1_000,
        poll: 50,
        grace: 10,
    };

    #[test]
    fn round_trips_and_refuses_foreign_bytes() {
        let s = QueueState {
            tat: 7,
            seq: 9,
            tickets: vec![Ticket {
                seq: 9,
                cost: 2,
                lease: 300,
            }],
        };
        let bytes = s.encode();
        assert_eq!(bytes.len(), HEADER + TICKET);
        assert_eq!(QueueState::decode(&bytes).unwrap(), s);
        assert!(QueueState::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(QueueState::decode(&[2; HEADER]).is_err());
        assert!(QueueState::decode(&[1, 2, 3]).is_err());
    }

    #[test]
    fn spacing_refusals_and_cancellation() {
        let mut s = QueueState::default();
        assert_eq!(s.enqueue(&P, 1_000, 1), (Answer::Left(1_000), true));
        assert_eq!(s.tat, 1_100);
        assert_eq!(
            s.enqueue(&P, 1_000, 1),
            (
                Answer::Queued {
                    seq: 1_000,
                    wait: 100
                },
                true
            )
        );
        assert_eq!(
            s.enqueue(&P, 1_000, 1),
            (
                Answer::Queued {
                    seq: 1_001,
                    wait: 200
                },
                true
            )
        );
        assert_eq!(
            s.enqueue(&P, 1_000, 1),
            (
                Answer::Queued {
                    seq: 1_002,
                    wait: 300
                },
                true
            )
        );
        assert_eq!(s.enqueue(&P, 1_000, 1), (Answer::QueueFull, false));
        // Not the head: waits; the head is early: waits, no write (its lease is fresh).
        assert_eq!(s.depart(&P, 1_050, 1_001), (Answer::Waiting(150), false));
        assert_eq!(s.depart(&P, 1_050, 1_000), (Answer::Waiting(50), false));
        assert_eq!(s.cancel(1_060, 1_000), (Answer::Cancelled(true), true));
        // The second moves up to the head and leaves at the TAT, not before.
        // Its lease has under a poll and a grace left: renewed (a write).
        assert_eq!(s.depart(&P, 1_099, 1_001), (Answer::Waiting(1), true));
        assert_eq!(s.tickets[0].lease, 1_209);
        assert_eq!(s.depart(&P, 1_100, 1_001), (Answer::Left(1_100), true));
        assert_eq!(s.tat, 1_200);
        assert_eq!(s.depart(&P, 1_100, 1_000), (Answer::Gone, false));
        let mut long = QueueState {
            tat: 2_000,
            ..QueueState::default()
        };
        assert_eq!(
            long.enqueue(&P, 500, 1),
            (Answer::WaitTooLong(1_500), false)
        );
    }

    #[test]
    fn costs_and_bursts_follow_the_estimate() {
        // Burst 3, T = 100: 3 units may leave at once, then the queue forms.
        let p = Params {
            burst: 3,
            max_queue: 10,
            max_wait: 10_000,
            grace: 1_000,
            ..P
        };
        let mut s = QueueState::default();
        assert_eq!(s.enqueue(&p, 1_000, 2).0, Answer::Left(1_000));
        assert_eq!(s.enqueue(&p, 1_000, 1).0, Answer::Left(1_000));
        assert_eq!(s.tat, 1_300);
        // b = 300: a cost of 2 waits b - (3 - 2) T = 200; a cost of 3 behind it waits
        // b + 2 T - 0 = 500.
        assert_eq!(
            s.enqueue(&p, 1_000, 2).0,
            Answer::Queued {
                seq: 1_000,
                wait: 200
            }
        );
        assert_eq!(
            s.enqueue(&p, 1_000, 3).0,
            Answer::Queued {
                seq: 1_001,
                wait: 500
            }
        );
        // Only the head leaves, and only when GCRA admits it.
        assert_eq!(s.depart(&p, 1_200, 1_001).0, Answer::Waiting(300));
        assert_eq!(s.depart(&p, 1_199, 1_000).0, Answer::Waiting(1));
        assert_eq!(s.depart(&p, 1_200, 1_000).0, Answer::Left(1_200));
        assert_eq!(s.tat, 1_500);
        assert_eq!(s.depart(&p, 1_499, 1_001).0, Answer::Waiting(1));
        assert_eq!(s.depart(&p, 1_500, 1_001).0, Answer::Left(1_500));
        assert_eq!(s.tat, 1_800);
    }

    #[test]
    fn leases_renew_every_other_poll_and_expire() {
        let mut s = QueueState {
            tat: 500,
            ..QueueState::default()
        };
        let (a, _) = s.enqueue(&P, 0, 1);
        let Answer::Queued { seq, .. } = a else {
            panic!("{a:?}")
        };
        assert_eq!(s.tickets[0].lease, 110);
        assert!(!s.depart(&P, 50, seq).1);
        assert!(s.depart(&P, 51, seq).1);
        assert_eq!(s.tickets[0].lease, 161);
        assert_eq!(s.depart(&P, 162, seq), (Answer::Gone, true));
        assert!(s.tickets.is_empty());
    }
}
