//! The keyed table against a HashMap of reference models, and its invariants when tiny.
#![no_main]

// `table.rs` reaches the models as `super::reference`, so both sit in the crate root.
#[path = "../harness/reference/mod.rs"]
mod reference;

#[path = "../harness/table.rs"]
mod table;

libfuzzer_sys::fuzz_target!(|data: &[u8]| table::table_ops(data));
