// Parses fuzz bytes as a rate string and checks that whatever parses displays in a form that
// parses back to the same rate. Parsing must never panic, whatever the input.
//
// Included with `#[path]` by the cargo-fuzz target and by the stable corpus replay test.

use traffik_core::Rate;

pub fn rate_parse(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    match text.parse::<Rate>() {
        Ok(rate) => {
            let shown = rate.to_string();
            assert_eq!(
                shown.parse::<Rate>(),
                Ok(rate),
                "{text:?} parsed as {rate:?}, which displays as {shown:?}"
            );
        }
        Err(err) => {
            assert!(
                err.position() <= text.len(),
                "{text:?}: error position past the end: {err:?}"
            );
        }
    }
}
