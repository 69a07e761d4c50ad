//! The in-process sliding window log's ring against its reference model.
#![no_main]

#[path = "../harness/sliding_log.rs"]
mod sliding_log;

libfuzzer_sys::fuzz_target!(|data: &[u8]| sliding_log::sliding_log_ops(data));
