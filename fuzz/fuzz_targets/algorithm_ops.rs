//! Every packed algorithm against its reference model, over decoded operation sequences.
#![no_main]

// `algorithms.rs` reaches the models as `super::reference`, so both sit in the crate root.
#[path = "../harness/reference/mod.rs"]
mod reference;

#[path = "../harness/algorithms.rs"]
mod algorithms;

libfuzzer_sys::fuzz_target!(|data: &[u8]| algorithms::algorithm_ops(data));
