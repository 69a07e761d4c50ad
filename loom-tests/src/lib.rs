//! Model checks run with `RUSTFLAGS="--cfg loom" cargo test -p traffik-loom-tests --release`.
//! Without `--cfg loom` the tests in `tests/` compile to nothing.

/// Runs `body` under loom with a preemption bound of 3, and asserts that loom explored more
/// than one interleaving (a model that explored one proved nothing about races).
#[cfg(loom)]
pub fn explore(name: &str, body: impl Fn() + Sync + Send + 'static) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    builder.check(move || {
        // Relaxed: a plain std counter of model runs, read after the model finishes.
        counter.fetch_add(1, Ordering::Relaxed);
        body();
    });
    let runs = runs.load(Ordering::Relaxed);
    assert!(runs > 1, "{name}: loom explored only {runs} interleaving");
    println!("{name}: {runs} interleavings explored");
}
