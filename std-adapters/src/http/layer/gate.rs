//! The admission decision for one request, as a machine that asks its limiters questions one at
//! a time, so that one piece of logic serves both the synchronous fast path (`check_now`,
//! `peek_now`) and the asynchronous one (awaiting `check`, `peek`).
//!
//! With one policy charged before the handler, the gate asks a single `check`. Otherwise:
//!
//! 1. **Look**: peek every policy in order. A policy showing less left than the request costs
//!    is then asked a real `check` (the peek is only a hint, and the check gives the exact
//!    wait): a denial ends the request; an admission (the key refilled between the peek and
//!    the check) stands as that policy's charge.
//! 2. **Charge**: `check` every policy charged before the handler and not yet charged. A
//!    denial here ends the request.
//!
//! Policies charged by outcome are only looked at here; the response decides their charge.
//!
//! What holds under concurrency, exactly:
//!
//! * No policy charged before the handler ever admits more than its limiter allows: every
//!   request let through passed a charging `check` (atomic in the limiter) on each of them.
//! * A denied request charges nothing when its keys do not change between its look and its
//!   checks. They change when another request charges one of them, or when time refills a key
//!   whose look came up short just before its check; then the policies this request had
//!   already charged (earlier in policy order, or admitted by such a check) keep that charge:
//!   at most this request's cost each, which only makes the limits stricter.
//! * A policy charged by outcome bounds the outcomes it counts, not the attempts in flight:
//!   requests on one key that look at the same time all see the same room and all go on; when
//!   their outcomes come back, only what still fits is charged. Sequential requests are
//!   bounded exactly.

use smallvec::SmallVec;
use traffik_core::{AsyncLimiter, Decision, ErrorKind, LimiterError};

use super::super::key::HttpKey;
use super::{report_failure, Shared};

/// One policy applied to one request.
#[derive(Clone, Debug)]
pub(crate) struct Item {
    /// The policy's index in the layer.
    pub policy: usize,
    pub key: HttpKey,
    pub cost: u64,
    /// Charged by outcome (after the response), not before the handler.
    pub deferred: bool,
    /// This request has been charged on this policy.
    pub charged: bool,
    /// The limiter failed and the outcome let the request through without this policy.
    pub failed: bool,
    /// The deferred charge the response asked for is still to be made.
    pub owed: bool,
    /// The last answer (peek or check).
    pub decision: Option<Decision>,
}

impl Item {
    pub(crate) fn new(policy: usize, key: HttpKey, cost: u64, deferred: bool) -> Self {
        Item {
            policy,
            key,
            cost,
            deferred,
            charged: false,
            failed: false,
            owed: false,
            decision: None,
        }
    }
}

/// The limiter call the gate needs answered next (about item `.0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ask {
    Peek(usize),
    Check(usize),
}

/// Why the gate did not admit the request.
#[derive(Debug)]
pub(crate) enum Refusal<E> {
    /// Item `item` refused the request; `never` when its cost can never be admitted.
    Deny { item: usize, never: bool },
    /// Item `item`'s limiter failed and the outcome is to answer with an error.
    Fail { item: usize, error: E },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Look,
    Probe,
    Charge,
    Done,
}

pub(crate) type Items = SmallVec<[Item; 2]>;

pub(crate) struct Gate {
    pub items: Items,
    phase: Phase,
    at: usize,
}

impl Gate {
    pub(crate) fn new(items: Items) -> Self {
        let look_first = items.len() > 1 || items.iter().any(|i| i.deferred);
        Gate {
            items,
            phase: if look_first {
                Phase::Look
            } else {
                Phase::Charge
            },
            at: 0,
        }
    }

    /// The next question, or `None` when every policy admitted the request.
    pub(crate) fn ask(&mut self) -> Option<Ask> {
        loop {
            match self.phase {
                Phase::Look if self.at < self.items.len() => return Some(Ask::Peek(self.at)),
                Phase::Look => {
                    self.phase = Phase::Charge;
                    self.at = 0;
                }
                Phase::Probe => return Some(Ask::Check(self.at)),
                Phase::Charge => {
                    while let Some(i) = self.items.get(self.at) {
                        if i.charged || i.failed || i.deferred {
                            self.at += 1;
                        } else {
                            return Some(Ask::Check(self.at));
                        }
                    }
                    self.phase = Phase::Done;
                }
                Phase::Done => return None,
            }
        }
    }

    /// Feeds the answer to the last question; `Some` ends the gate.
    pub(crate) fn answer<E: LimiterError>(
        &mut self,
        result: Result<Decision, E>,
        fail_open: bool,
    ) -> Option<Refusal<E>> {
        let at = self.at;
        let item = self.items.get_mut(at)?;
        let d = match result {
            Ok(d) => d,
            Err(e) => {
                if let ErrorKind::InsufficientCapacity { max } = e.kind() {
                    // A client matter, not a backend failure: no wait will ever admit it.
                    let (remaining, reset) = item
                        .decision
                        .map_or((0, 0), |d| (d.remaining(), d.reset_after_nanos()));
                    item.decision = Some(Decision::deny(max, remaining, 0, reset));
                    self.phase = Phase::Done;
                    return Some(Refusal::Deny {
                        item: at,
                        never: true,
                    });
                }
                if fail_open {
                    item.failed = true;
                    item.decision = None;
                    self.at += 1;
                    if self.phase == Phase::Probe {
                        self.phase = Phase::Look;
                    }
                    return None;
                }
                self.phase = Phase::Done;
                return Some(Refusal::Fail { item: at, error: e });
            }
        };
        item.decision = Some(d);
        match self.phase {
            Phase::Look => {
                if d.remaining() >= item.cost {
                    self.at += 1;
                } else {
                    self.phase = Phase::Probe;
                }
                None
            }
            Phase::Probe | Phase::Charge => {
                if d.is_denied() {
                    self.phase = Phase::Done;
                    return Some(Refusal::Deny {
                        item: at,
                        never: false,
                    });
                }
                item.charged = true;
                self.at += 1;
                if self.phase == Phase::Probe {
                    self.phase = Phase::Look;
                }
                None
            }
            Phase::Done => None,
        }
    }
}

pub(crate) fn report<L>(shared: &Shared<L>, gate: &Gate, error: &dyn LimiterError) {
    if let Some(item) = gate.items.get(gate.at) {
        report_failure(
            &shared.policies[item.policy].name,
            error,
            "before the handler",
        );
    }
}

/// Runs the gate on answers given on the spot; `None` when a limiter can only answer through
/// its future (nothing was asked of it, so the gate resumes asynchronously where it stopped).
pub(crate) fn drive_now<L: AsyncLimiter<[u8]>>(
    shared: &Shared<L>,
    gate: &mut Gate,
) -> Option<Result<(), Refusal<L::Error>>> {
    let fail_open = shared.fail_open();
    while let Some(ask) = gate.ask() {
        let result = match ask {
            Ask::Peek(i) => {
                let item = &gate.items[i];
                shared.policies[item.policy]
                    .limiter
                    .peek_now(item.key.as_bytes())?
            }
            Ask::Check(i) => {
                let item = &gate.items[i];
                shared.policies[item.policy]
                    .limiter
                    .check_now(item.key.as_bytes(), item.cost)?
            }
        };
        if let Err(e) = &result {
            report(shared, gate, e);
        }
        if let Some(refusal) = gate.answer(result, fail_open) {
            return Some(Err(refusal));
        }
    }
    Some(Ok(()))
}

/// Runs the gate to the end, awaiting the limiters that cannot answer on the spot.
pub(crate) async fn drive<L: AsyncLimiter<[u8]>>(
    shared: &Shared<L>,
    gate: &mut Gate,
) -> Result<(), Refusal<L::Error>> {
    let fail_open = shared.fail_open();
    while let Some(ask) = gate.ask() {
        let result = match ask {
            Ask::Peek(i) => {
                let item = &gate.items[i];
                let limiter = &shared.policies[item.policy].limiter;
                match limiter.peek_now(item.key.as_bytes()) {
                    Some(r) => r,
                    None => limiter.peek(item.key.as_bytes()).await,
                }
            }
            Ask::Check(i) => {
                let item = &gate.items[i];
                let limiter = &shared.policies[item.policy].limiter;
                match limiter.check_now(item.key.as_bytes(), item.cost) {
                    Some(r) => r,
                    None => limiter.check(item.key.as_bytes(), item.cost).await,
                }
            }
        };
        if let Err(e) = &result {
            report(shared, gate, e);
        }
        if let Some(refusal) = gate.answer(result, fail_open) {
            return Err(refusal);
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use traffik_core::CheckError;

    fn item(policy: usize, cost: u64, deferred: bool) -> Item {
        Item::new(policy, HttpKey::from_bytes(b"k"), cost, deferred)
    }

    fn allow(remaining: u64) -> Result<Decision, CheckError> {
        Ok(Decision::allow(10, remaining, 1))
    }

    fn deny() -> Result<Decision, CheckError> {
        Ok(Decision::deny(10, 0, 5, 5))
    }

    #[test]
    fn one_policy_is_a_single_check() {
        let mut g = Gate::new(smallvec::smallvec![item(0, 1, false)]);
        assert_eq!(g.ask(), Some(Ask::Check(0)));
        assert!(g.answer(allow(3), false).is_none());
        assert_eq!(g.ask(), None);
        assert!(g.items[0].charged);
    }

    #[test]
    fn several_policies_look_then_charge() {
        let mut g = Gate::new(smallvec::smallvec![item(0, 1, false), item(1, 2, false)]);
        assert_eq!(g.ask(), Some(Ask::Peek(0)));
        assert!(g.answer(allow(5), false).is_none());
        assert_eq!(g.ask(), Some(Ask::Peek(1)));
        assert!(g.answer(allow(2), false).is_none());
        assert_eq!(g.ask(), Some(Ask::Check(0)));
        assert!(g.answer(allow(4), false).is_none());
        assert_eq!(g.ask(), Some(Ask::Check(1)));
        assert!(g.answer(allow(0), false).is_none());
        assert_eq!(g.ask(), None);
    }

    #[test]
    fn a_short_peek_is_probed_and_a_denial_charges_nothing() {
        let mut g = Gate::new(smallvec::smallvec![item(0, 1, false), item(1, 3, false)]);
        assert_eq!(g.ask(), Some(Ask::Peek(0)));
        assert!(g.answer(allow(5), false).is_none());
        assert_eq!(g.ask(), Some(Ask::Peek(1)));
        assert!(g.answer(allow(2), false).is_none());
        assert_eq!(g.ask(), Some(Ask::Check(1)));
        match g.answer(deny(), false) {
            Some(Refusal::Deny {
                item: 1,
                never: false,
            }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(g.ask(), None);
        assert!(g.items.iter().all(|i| !i.charged));
    }

    #[test]
    fn a_probe_that_admits_is_the_charge() {
        let mut g = Gate::new(smallvec::smallvec![item(0, 1, false), item(1, 1, false)]);
        assert_eq!(g.ask(), Some(Ask::Peek(0)));
        assert!(g.answer(allow(0), false).is_none());
        assert_eq!(g.ask(), Some(Ask::Check(0)));
        assert!(g.answer(allow(0), false).is_none());
        assert_eq!(g.ask(), Some(Ask::Peek(1)));
        assert!(g.answer(allow(1), false).is_none());
        // Item 0 is already charged: only item 1 is checked.
        assert_eq!(g.ask(), Some(Ask::Check(1)));
        assert!(g.answer(allow(0), false).is_none());
        assert_eq!(g.ask(), None);
    }

    #[test]
    fn deferred_policies_are_only_looked_at() {
        let mut g = Gate::new(smallvec::smallvec![item(0, 1, true)]);
        assert_eq!(g.ask(), Some(Ask::Peek(0)));
        assert!(g.answer(allow(1), false).is_none());
        assert_eq!(g.ask(), None);
        assert!(!g.items[0].charged);
    }

    #[test]
    fn errors_fail_open_or_end_the_gate_and_oversized_costs_never_pass() {
        let mut g = Gate::new(smallvec::smallvec![item(0, 1, false), item(1, 1, false)]);
        assert_eq!(g.ask(), Some(Ask::Peek(0)));
        assert!(g.answer(Err(CheckError::TableFull), true).is_none());
        assert_eq!(g.ask(), Some(Ask::Peek(1)));
        assert!(g.answer(allow(1), true).is_none());
        assert_eq!(g.ask(), Some(Ask::Check(1)));
        assert!(g.answer(allow(0), true).is_none());
        assert_eq!(g.ask(), None);
        assert!(g.items[0].failed && !g.items[0].charged);

        let mut g = Gate::new(smallvec::smallvec![item(0, 1, false)]);
        assert_eq!(g.ask(), Some(Ask::Check(0)));
        assert!(matches!(
            g.answer(Err(CheckError::TableFull), false),
            Some(Refusal::Fail {
                item: 0,
                error: CheckError::TableFull
            })
        ));

        let mut g = Gate::new(smallvec::smallvec![item(0, 50, false)]);
        assert_eq!(g.ask(), Some(Ask::Check(0)));
        assert!(matches!(
            g.answer(Err(CheckError::InsufficientCapacity { max: 10 }), true),
            Some(Refusal::Deny {
                item: 0,
                never: true
            })
        ));
        assert_eq!(g.items[0].decision.map(|d| d.limit()), Some(10));
    }
}
