//! Replays the fuzz corpora on stable: every file in `fuzz/corpus/rate_parse/` and
//! `fuzz/corpus/algorithm_ops/` goes through the same harness functions the cargo-fuzz targets
//! call, so seeds and anything the fuzzer found worth keeping stay regression tests without
//! nightly or cargo-fuzz.
#![allow(clippy::unwrap_used, missing_docs)]

// `algorithms.rs` reaches the models as `super::reference`, so both sit in the crate root.
#[path = "../../fuzz/harness/reference.rs"]
mod reference;

#[path = "../../fuzz/harness/algorithms.rs"]
mod algorithms;

#[path = "../../fuzz/harness/rate.rs"]
mod rate;

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The files of one corpus, sorted by name; panics if there are none.
fn corpus(name: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(name);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read corpus {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "corpus {} is empty: the replay would pass without testing anything",
        dir.display()
    );
    files
}

/// Runs every file of corpus `name` through `target`, reporting all failing files at once.
fn replay(name: &str, target: fn(&[u8])) {
    let files = corpus(name);
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = fs::read(path).unwrap();
            catch_unwind(AssertUnwindSafe(|| target(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} {name} inputs failed: {failed:#?}",
        failed.len(),
        files.len()
    );
    println!("replayed {} {name} inputs", files.len());
}

#[test]
fn rate_parse_corpus() {
    replay("rate_parse", rate::rate_parse);
}

#[test]
fn algorithm_ops_corpus() {
    replay("algorithm_ops", algorithms::algorithm_ops);
}
