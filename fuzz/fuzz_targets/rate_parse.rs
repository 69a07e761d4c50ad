//! Rate parsing never panics, and what parses displays as text that parses back the same.
#![no_main]

#[path = "../harness/rate.rs"]
mod rate;

libfuzzer_sys::fuzz_target!(|data: &[u8]| rate::rate_parse(data));
