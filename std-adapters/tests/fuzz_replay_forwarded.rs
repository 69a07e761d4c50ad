//! Replays `fuzz/corpus/forwarded/` on stable through the same harness the cargo-fuzz target
//! calls: the resolver's invariants on each stored input.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../../fuzz/harness/forwarded.rs"]
mod forwarded;

use std::fs;
use std::path::Path;

#[test]
fn forwarded_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/forwarded");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    for path in &files {
        let data = fs::read(path).unwrap();
        let outcome = std::panic::catch_unwind(|| forwarded::forwarded(&data));
        assert!(outcome.is_ok(), "{} failed", path.display());
    }
    println!(
        "fuzz corpus replay ran: forwarded ({} inputs) ok",
        files.len()
    );
}
