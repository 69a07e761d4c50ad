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

/// The same through keyed tables, where a leg may place a new key (and its refund then
/// restores the fresh state): two per-user-and-per-tenant checks and a per-user check race
/// on a fresh user and tenant.
#[test]
fn keyed_multi_checks_never_over_admit() {
    // The table's clock is a `std` Arc (a `Clock`); loom sees only the table's atomics.
    use std::sync::Arc;
    use traffik_core::{KeyedLimiter, ManualClock, TableConfig};
    type Table = KeyedLimiter<u64, Gcra, Arc<ManualClock>>;
    fn table(clock: &Arc<ManualClock>, burst: u64) -> Arc<Table> {
        let mut config = TableConfig::new(1, [1, 2, 3, 4]);
        config.shards = 1;
        let gcra = Gcra::with_burst(Rate::per_second(1), burst).unwrap();
        Arc::new(KeyedLimiter::new(gcra, Arc::clone(clock), config).unwrap())
    }
    traffik_loom_tests::explore("multi-keyed", || {
        let clock = Arc::new(ManualClock::new());
        let users = table(&clock, 2);
        let tenants = table(&clock, 1);
        let multi = |users: &Arc<Table>, tenants: &Arc<Table>| {
            let (u, t) = (Arc::clone(users), Arc::clone(tenants));
            thread::spawn(move || check_all(&[u.leg(&1), t.leg(&9)], 1).unwrap().is_allowed())
        };
        let first = multi(&users, &tenants);
        let second = multi(&users, &tenants);
        let single = {
            let u = Arc::clone(&users);
            thread::spawn(move || u.check(&1, 1).unwrap().is_allowed())
        };
        let (first, second, single) = (
            first.join().unwrap(),
            second.join().unwrap(),
            single.join().unwrap(),
        );
        let on_tenant = u64::from(first) + u64::from(second);
        let on_user = on_tenant + u64::from(single);
        let denied_multi = u64::from(!first) + u64::from(!second);
        assert_eq!(
            on_tenant, 1,
            "the tenant's burst of 1 admits exactly one multi-check"
        );
        assert!(on_user <= 2, "the user over-admitted: {on_user}");
        // At a fixed time, a burst-b GCRA has `b - standing` left.
        let user_standing = 2 - users.peek(&1).remaining();
        assert!(
            user_standing >= on_user && user_standing <= on_user + denied_multi,
            "user: {user_standing} standing, {on_user} admitted"
        );
        assert_eq!(tenants.peek(&9).remaining(), 0);
    });
}
