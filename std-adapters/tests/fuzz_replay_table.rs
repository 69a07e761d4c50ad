//! Replays `fuzz/corpus/table_ops/` on stable through the same harness the cargo-fuzz target
//! calls (it needs the core's `alloc` feature, which this crate enables).
#![allow(clippy::unwrap_used, missing_docs)]

// `table.rs` reaches the models as `super::reference`, so both sit in the crate root.
#[path = "../../fuzz/harness/reference/mod.rs"]
mod reference;

#[path = "../../fuzz/harness/table.rs"]
mod table;

#[path = "../../fuzz/harness/replay.rs"]
mod replay;

#[test]
fn table_ops_corpus() {
    replay::replay("table_ops", table::table_ops);
}
