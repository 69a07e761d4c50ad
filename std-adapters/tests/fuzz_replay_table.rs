//! Replays `fuzz/corpus/table_ops/` on stable through the same harness the cargo-fuzz target
//! calls (it needs the core's `alloc` feature, which this crate enables).
#![allow(clippy::unwrap_used, missing_docs)]

// `table.rs` reaches the models as `super::reference`, so both sit in the crate root.
#[path = "../../fuzz/harness/reference.rs"]
mod reference;

#[path = "../../fuzz/harness/table.rs"]
mod table;

use std::fs;
use std::path::Path;

#[test]
fn table_ops_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/table_ops");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    for path in &files {
        let data = fs::read(path).unwrap();
        let outcome = std::panic::catch_unwind(|| table::table_ops(&data));
        assert!(outcome.is_ok(), "{} failed", path.display());
    }
    println!(
        "fuzz corpus replay ran: table_ops ({} inputs) ok",
        files.len()
    );
}
