//! Loom model checks of all-or-nothing multi-limit checks (`traffik_core::check_all`).
//!
//! Time is fixed, so a GCRA limit's word is `NOW + (charges standing) * T` and every outcome can
//! be judged exactly. In every interleaving:
//!
//! * no limit admits more than its burst (no single limit over-admits);
//! * every admitted multi-check charged every one of its limits;
//! * each limit's word is at least what its admitted checks charged (never looser than if the
//!   denied checks had not run), and at most one unit more per denied multi-check that
//!   includes it (a refund that lost a race leaves at most its own cost);
//!
//! That a denied check leaves nothing when nothing raced it is checked exactly in
//! `core/tests/multi.rs`.
#![cfg(loom)]
#![allow(clippy::unwrap_used, missing_docs)]

use loom::sync::Arc;
use loom::thread;
use traffik_core::{check_all, CheckError, Decision, Gcra, Leg, Rate, Receipt, StateCell};

const SEC: u64 = 1_000_000_000;
const NOW: u64 = 5 * SEC + 123_456_789;
/// Emission interval of 10/s.
const T: u64 = SEC / 10;

/// A limit charged at the fixed reading.
struct Fixed {
    cell: Arc<StateCell>,
    gcra: Gcra,
}

impl Leg for Fixed {
    fn charge(&self, cost: u64) -> Result<(Decision, Option<Receipt>), CheckError> {
        self.cell.charge(&self.gcra, NOW, cost)
    }
    fn refund(&self, receipt: Receipt) -> bool {
        self.cell.refund(receipt)
    }
}

fn fixed(cell: &Arc<StateCell>, burst: u64) -> Fixed {
    Fixed {
        cell: Arc::clone(cell),
        gcra: Gcra::with_burst(Rate::per_second(10), burst).unwrap(),
    }
}

/// Charges standing on a cell at `NOW`.
fn standing(cell: &StateCell) -> u64 {
    let tat = cell.load();
    if tat == 0 {
        return 0;
    }
    assert!(tat >= NOW && (tat - NOW) % T == 0, "unexpected word {tat}");
    (tat - NOW) / T
}

/// Three threads: two multi-checks over limits A (burst `a`) and B (burst `b`) in opposite
/// orders, and a single check of B, all at once.
fn three_way(a: u64, b: u64) {
    traffik_loom_tests::explore("multi", move || {
        let ca = Arc::new(StateCell::new());
        let cb = Arc::new(StateCell::new());
        let ab = {
            let (la, lb) = (fixed(&ca, a), fixed(&cb, b));
            thread::spawn(move || check_all(&[la, lb], 1).unwrap().is_allowed())
        };
        let ba = {
            let (la, lb) = (fixed(&ca, a), fixed(&cb, b));
            thread::spawn(move || check_all(&[lb, la], 1).unwrap().is_allowed())
        };
        let single = {
            let lb = fixed(&cb, b);
            thread::spawn(move || check_all(&[lb], 1).unwrap().is_allowed())
        };
        let (ab, ba, single) = (
            ab.join().unwrap(),
            ba.join().unwrap(),
            single.join().unwrap(),
        );
        let on_a = u64::from(ab) + u64::from(ba);
        let on_b = on_a + u64::from(single);
        let denied_multi = u64::from(!ab) + u64::from(!ba);
        assert!(on_a <= a, "A over-admitted: {on_a} > {a}");
        assert!(on_b <= b, "B over-admitted: {on_b} > {b}");
        let (sa, sb) = (standing(&ca), standing(&cb));
        assert!(
            sa >= on_a && sa <= on_a + denied_multi,
            "A: {sa} standing, {on_a} admitted"
        );
        assert!(
            sb >= on_b && sb <= on_b + denied_multi,
            "B: {sb} standing, {on_b} admitted"
        );
    });
}

#[test]
fn multi_checks_never_over_admit_a_limit_tight_a() {
    // A admits one of the two multi-checks; B has room for everything.
    three_way(1, 3);
}

#[test]
fn multi_checks_never_over_admit_a_limit_tight_b() {
    // B is the contended one: the single check competes with both multi-checks.
    three_way(2, 2);
}

#[test]
fn multi_checks_never_over_admit_a_limit_both_tight() {
    three_way(1, 1);
}
