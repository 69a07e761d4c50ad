//! Loom model checks of `StateCell::apply`, the CAS loop every limiter check runs.
//!
//! Each model starts a cell at a fixed clock reading and lets two or three threads charge it at
//! once. Time never moves, so the algorithm's answers depend only on what has been charged, and
//! the outcome of any interleaving can be judged exactly:
//!
//! * the admitted cost never exceeds the capacity;
//! * the admissions are consistent with *some* sequential order: sorted by the `remaining` they
//!   report, each one's `remaining` is the capacity less every cost admitted up to and including
//!   it (so no two admissions saw the same state, and none double-counted or skipped a charge);
//! * every denial saw one of those intermediate states and really could not fit its cost, and
//!   no denial was spurious (its cost does not fit what is left at the end either);
//! * no update is lost: the final word equals the state that sequential application of the
//!   admitted costs, in that order, produces, and a peek reports what is left.
#![cfg(loom)]
#![allow(clippy::unwrap_used, missing_docs)]

use loom::sync::Arc;
use loom::thread;
use traffik_core::{
    Algorithm, AnyAlgorithm, Decision, FixedWindow, Gcra, Rate, StateCell, TokenBucket,
};

const SEC: u64 = 1_000_000_000;
/// The fixed clock reading: a few periods in, and not on a window boundary.
const NOW: u64 = 5 * SEC + 123_456_789;

fn gcra(limit: u64, burst: u64) -> AnyAlgorithm {
    AnyAlgorithm::Gcra(Gcra::with_burst(Rate::per_second(limit), burst).unwrap())
}

fn token_bucket(limit: u64, capacity: u64) -> AnyAlgorithm {
    AnyAlgorithm::TokenBucket(
        TokenBucket::with_capacity(Rate::per_second(limit), capacity).unwrap(),
    )
}

fn fixed_window(limit: u64) -> AnyAlgorithm {
    AnyAlgorithm::FixedWindow(FixedWindow::new(Rate::per_second(limit)).unwrap())
}

/// Explores every interleaving (up to `preemptions` forced switches) of one thread per cost,
/// all charging one fresh cell at `NOW`, and checks the outcome.
fn model(alg: AnyAlgorithm, costs: &'static [u64], preemptions: usize) {
    assert!(
        (2..=3).contains(&costs.len()),
        "loom allows at most 4 threads with main"
    );
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemptions);
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&runs);
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cell = Arc::new(StateCell::new());
        let handles: Vec<_> = costs
            .iter()
            .map(|&cost| {
                let cell = Arc::clone(&cell);
                thread::spawn(move || (cost, cell.apply(&alg, NOW, cost).unwrap()))
            })
            .collect();
        let outcomes: Vec<(u64, Decision)> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        judge(&alg, &cell, &outcomes);
    });
    let runs = runs.load(std::sync::atomic::Ordering::Relaxed);
    // More than one schedule explored, or the model proved nothing about races.
    assert!(runs > 1, "loom explored only {runs} interleaving");
    println!("{costs:?}: {runs} interleavings explored");
}

fn judge(alg: &AnyAlgorithm, cell: &StateCell, outcomes: &[(u64, Decision)]) {
    let capacity = alg.capacity();
    let mut admitted: Vec<(u64, Decision)> = outcomes
        .iter()
        .copied()
        .filter(|(_, d)| d.is_allowed())
        .collect();
    let total: u64 = admitted.iter().map(|(c, _)| c).sum();
    assert!(
        total <= capacity,
        "admitted {total} > capacity {capacity}: {outcomes:?}"
    );

    // Recover the linearization order: later admissions saw less left.
    admitted.sort_by_key(|(_, d)| core::cmp::Reverse(d.remaining()));
    let mut left = capacity;
    let mut seen = vec![capacity];
    for (cost, d) in &admitted {
        assert_eq!(d.limit(), capacity);
        assert_eq!(d.retry_after_nanos(), 0);
        left -= cost;
        assert_eq!(
            d.remaining(),
            left,
            "an admission of {cost} does not follow the ones before it: {outcomes:?}"
        );
        seen.push(left);
    }

    for (cost, d) in outcomes.iter().filter(|(_, d)| d.is_denied()) {
        assert!(
            seen.contains(&d.remaining()),
            "a denial saw a state no sequential order passes through: {outcomes:?}"
        );
        assert!(
            d.remaining() < *cost,
            "denied {cost} with {} left",
            d.remaining()
        );
        assert!(
            *cost > left,
            "spurious denial of {cost}: {left} left at the end"
        );
        assert!(d.retry_after_nanos() > 0);
    }

    // No lost update: the word is exactly what applying the admissions one by one gives.
    let mut state = 0;
    for (cost, _) in &admitted {
        let t = alg.decide(state, NOW, *cost).unwrap();
        assert!(t.decision.is_allowed());
        state = t.next.unwrap_or(state);
    }
    assert_eq!(
        cell.load(),
        state,
        "the final state lost or added a charge: {outcomes:?}"
    );
    assert_eq!(cell.peek(alg, NOW).remaining(), left);
}

// Two threads: full exploration is cheap, so allow three preemptions.

#[test]
fn gcra_two_threads_contend_for_the_last_units() {
    model(gcra(10, 3), &[2, 2], 3);
}

#[test]
fn gcra_two_threads_both_fit() {
    model(gcra(10, 3), &[1, 2], 3);
}

#[test]
fn token_bucket_two_threads_contend() {
    model(token_bucket(4, 3), &[2, 2], 3);
}

#[test]
fn token_bucket_two_threads_both_fit() {
    model(token_bucket(4, 4), &[3, 1], 3);
}

#[test]
fn fixed_window_two_threads_contend() {
    model(fixed_window(3), &[2, 2], 3);
}

#[test]
fn fixed_window_two_threads_both_fit() {
    model(fixed_window(3), &[1, 2], 3);
}

// Three threads: two preemptions keep the state space small while still reaching every
// "lost race, retry from the winner's value" path.

#[test]
fn gcra_three_threads() {
    model(gcra(10, 2), &[1, 1, 1], 3);
}

#[test]
fn gcra_three_threads_mixed_costs() {
    model(gcra(5, 4), &[1, 2, 3], 3);
}

#[test]
fn token_bucket_three_threads() {
    model(token_bucket(10, 2), &[1, 1, 1], 3);
}

#[test]
fn token_bucket_three_threads_mixed_costs() {
    model(token_bucket(3, 5), &[2, 1, 3], 3);
}

#[test]
fn fixed_window_three_threads() {
    model(fixed_window(2), &[1, 1, 1], 3);
}

#[test]
fn fixed_window_three_threads_mixed_costs() {
    model(fixed_window(4), &[3, 1, 2], 3);
}
