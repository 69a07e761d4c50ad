//! Replays the fuzz corpora on stable: every file in `fuzz/corpus/rate_parse/` and
//! `fuzz/corpus/algorithm_ops/` goes through the same harness functions the cargo-fuzz targets
//! call, so seeds and anything the fuzzer found worth keeping stay regression tests without
//! nightly or cargo-fuzz.
#![allow(clippy::unwrap_used, missing_docs)]

// `algorithms.rs` reaches the models as `super::reference`, so both sit in the crate root.
#[path = "../../fuzz/harness/reference/mod.rs"]
mod reference;

#[path = "../../fuzz/harness/algorithms.rs"]
mod algorithms;

#[path = "../../fuzz/harness/rate.rs"]
mod rate;

#[path = "../../fuzz/harness/replay.rs"]
mod replay;

use replay::replay;

#[test]
fn rate_parse_corpus() {
    replay("rate_parse", rate::rate_parse);
}

#[test]
fn algorithm_ops_corpus() {
    replay("algorithm_ops", algorithms::algorithm_ops);
}
