//! The priority budget and the adaptive limit against the bucket-level model.
#![no_main]

// `dynamic.rs` reaches the model as `super::level`, so both sit in the crate root.
#[path = "../harness/level.rs"]
mod level;

#[path = "../harness/dynamic.rs"]
mod dynamic;

libfuzzer_sys::fuzz_target!(|data: &[u8]| dynamic::dynamic_ops(data));
