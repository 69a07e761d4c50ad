//! Replays `fuzz/corpus/forwarded/` on stable through the same harness the cargo-fuzz target
//! calls: the resolver's invariants on each stored input.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../../fuzz/harness/forwarded.rs"]
mod forwarded;

#[path = "../../fuzz/harness/replay.rs"]
mod replay;

#[test]
fn forwarded_corpus() {
    replay::replay("forwarded", forwarded::forwarded);
}
