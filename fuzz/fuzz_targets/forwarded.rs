//! The client-address resolver on arbitrary forwarding headers, trusted sets and peers: it
//! never panics, ignores headers from untrusted peers, and a client's prefix cannot move it.
#![no_main]

#[path = "../harness/forwarded.rs"]
mod forwarded;

libfuzzer_sys::fuzz_target!(|data: &[u8]| forwarded::forwarded(data));
