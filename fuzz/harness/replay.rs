//! Replaying a fuzz corpus on stable: every stored input of `fuzz/corpus/<name>/` goes through
//! the same harness function its cargo-fuzz target calls, so seeds and whatever a fuzzer kept
//! stay regression tests without nightly. Used by the `*_corpus` tests of `traffik-core` and
//! `traffik` (both one directory below the workspace root); not by the fuzz targets.

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

/// Runs every file of corpus `name` through `target`, reporting all failing files at once;
/// returns how many inputs ran.
pub fn replay(name: &str, target: impl Fn(&[u8])) -> usize {
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
    println!("fuzz corpus replay ran: {name} ({} inputs) ok", files.len());
    files.len()
}
