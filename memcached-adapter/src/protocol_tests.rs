//! Unit tests of the protocol module: exact encodings, every reply shape, every prefix of a
//! valid reply, and garbage fed to every parser.
#![allow(clippy::unwrap_used)]

use super::*;

const KEY: &[u8] = b"traffik:gcra:k:alice";

fn hit_reply(flags: u32, value: &[u8], cas: u64) -> Vec<u8> {
    let mut r = format!(
        "VALUE {} {flags} {} {cas}\r\n",
        "traffik:gcra:k:alice",
        value.len()
    )
    .into_bytes();
    r.extend_from_slice(value);
    r.extend_from_slice(b"\r\nEND\r\n");
    r
}

#[test]
fn commands_are_encoded_exactly() {
    let mut out = Vec::new();
    push_gets(&mut out, KEY);
    assert_eq!(out, b"gets traffik:gcra:k:alice\r\n");

    out.clear();
    push_add(&mut out, b"k", 61, 0x0102_0304_0506_0708);
    let mut want = b"add k 29810 61 8\r\n".to_vec();
    want.extend_from_slice(&[8, 7, 6, 5, 4, 3, 2, 1]);
    want.extend_from_slice(b"\r\n");
    assert_eq!(out, want);

    out.clear();
    push_cas(&mut out, b"k", 2, u64::MAX, 18_446_744_073_709_551_615);
    let mut want = b"cas k 29810 2 8 18446744073709551615\r\n".to_vec();
    want.extend_from_slice(&[0xFF; 8]);
    want.extend_from_slice(b"\r\n");
    assert_eq!(out, want);

    out.clear();
    push_delete(&mut out, b"k");
    assert_eq!(out, b"delete k\r\n");
}

#[test]
fn gets_replies() {
    assert_eq!(parse_get(b"END\r\n", KEY), Ok(Some((Item::Miss, 5))));
    let state = 1_700_000_000_123_456_789u64;
    let reply = hit_reply(FLAGS, &state.to_le_bytes(), 42);
    assert_eq!(
        parse_get(&reply, KEY),
        Ok(Some((
            Item::Hit {
                flags: FLAGS,
                cas: 42,
                value: Value::State(state)
            },
            reply.len()
        )))
    );
    // A value holding CR and LF bytes is still read by its declared length.
    let tricky = u64::from_le_bytes(*b"\r\nEND\r\n\n");
    let reply = hit_reply(FLAGS, &tricky.to_le_bytes(), 7);
    assert!(matches!(
        parse_get(&reply, KEY),
        Ok(Some((Item::Hit { value: Value::State(s), .. }, n))) if s == tricky && n == reply.len()
    ));
    // Wrong lengths are reported, not refused: the limiter turns them into CorruptState.
    let reply = hit_reply(3, b"hello", 9);
    assert_eq!(
        parse_get(&reply, KEY),
        Ok(Some((
            Item::Hit {
                flags: 3,
                cas: 9,
                value: Value::Other { len: 5 }
            },
            reply.len()
        )))
    );
    // Trailing bytes (the next pipelined reply) are left alone.
    let mut two = b"END\r\n".to_vec();
    two.extend_from_slice(b"END\r\n");
    assert_eq!(parse_get(&two, KEY), Ok(Some((Item::Miss, 5))));
}

#[test]
fn every_prefix_of_a_valid_reply_is_incomplete() {
    type Incomplete = fn(&[u8]) -> bool;
    let replies: Vec<(Vec<u8>, Incomplete)> = vec![
        (hit_reply(FLAGS, &5u64.to_le_bytes(), 1), |b| {
            matches!(parse_get(b, KEY), Ok(None))
        }),
        (b"END\r\n".to_vec(), |b| {
            matches!(parse_get(b, KEY), Ok(None))
        }),
        (b"STORED\r\n".to_vec(), |b| {
            matches!(parse_store(b), Ok(None))
        }),
        (b"NOT_FOUND\r\n".to_vec(), |b| {
            matches!(parse_delete(b), Ok(None))
        }),
        (b"VERSION 1.6.18\r\n".to_vec(), |b| {
            matches!(parse_version(b), Ok(None))
        }),
    ];
    for (reply, incomplete) in replies {
        for cut in 0..reply.len() {
            assert!(
                incomplete(&reply[..cut]),
                "prefix {cut} of {:?}",
                reply.escape_ascii().to_string()
            );
        }
    }
}

#[test]
fn storage_delete_and_version_replies() {
    assert_eq!(parse_store(b"STORED\r\n"), Ok(Some((Store::Stored, 8))));
    assert_eq!(
        parse_store(b"NOT_STORED\r\n"),
        Ok(Some((Store::NotStored, 12)))
    );
    assert_eq!(parse_store(b"EXISTS\r\n"), Ok(Some((Store::Exists, 8))));
    assert_eq!(
        parse_store(b"NOT_FOUND\r\n"),
        Ok(Some((Store::NotFound, 11)))
    );
    assert_eq!(parse_delete(b"DELETED\r\n"), Ok(Some((Delete::Deleted, 9))));
    assert_eq!(
        parse_delete(b"NOT_FOUND\r\n"),
        Ok(Some((Delete::NotFound, 11)))
    );
    assert_eq!(
        parse_version(b"VERSION 1.6.18\r\n"),
        Ok(Some(("1.6.18".to_owned(), 16)))
    );
}

#[test]
fn server_error_replies_are_typed() {
    assert_eq!(
        parse_store(b"SERVER_ERROR out of memory storing object\r\n"),
        Err(ReplyError::Server {
            kind: ServerErrorKind::Server,
            message: "out of memory storing object".into()
        })
    );
    assert_eq!(
        parse_get(b"CLIENT_ERROR bad command line format\r\n", KEY),
        Err(ReplyError::Server {
            kind: ServerErrorKind::Client,
            message: "bad command line format".into()
        })
    );
    assert_eq!(
        parse_delete(b"ERROR\r\n"),
        Err(ReplyError::Server {
            kind: ServerErrorKind::Error,
            message: String::new()
        })
    );
    // Not an error word: a word that merely starts like one.
    assert!(matches!(
        parse_store(b"ERRORS\r\n"),
        Err(ReplyError::Malformed(_))
    ));
}

#[test]
fn malformed_replies_are_typed() {
    let bad_gets: &[&[u8]] = &[
        b"VALUE traffik:gcra:k:bob 29810 8 1\r\n12345678\r\nEND\r\n", // another key
        b"VALUE traffik:gcra:k:alice 29810 8\r\n12345678\r\nEND\r\n", // no cas
        b"VALUE traffik:gcra:k:alice 29810 8 1 2\r\n12345678\r\nEND\r\n", // extra field
        b"VALUE traffik:gcra:k:alice -1 8 1\r\n12345678\r\nEND\r\n",  // signed flags
        b"VALUE traffik:gcra:k:alice 4294967296 8 1\r\n12345678\r\nEND\r\n", // flags > u32
        b"VALUE traffik:gcra:k:alice 1 8 18446744073709551616\r\n12345678\r\nEND\r\n", // cas > u64
        b"VALUE traffik:gcra:k:alice 1 99999999 1\r\n",               // huge value claimed
        b"VALUE traffik:gcra:k:alice 1 8 1\r\n12345678XXEND\r\n",     // no CRLF after data
        b"VALUE traffik:gcra:k:alice 1 8 1\r\n12345678\r\nVALUE x\r\n", // second value
        b"VALUE traffik:gcra:k:alice 1  8 1\r\n12345678\r\nEND\r\n",  // double space
        b"STORED\r\n",
        b"END\n",
        b"\n",
        b"+PONG\r\n",
        b"HTTP/1.1 400 Bad Request\r\n",
    ];
    for reply in bad_gets {
        assert!(
            matches!(parse_get(reply, KEY), Err(ReplyError::Malformed(_))),
            "{:?}",
            reply.escape_ascii().to_string()
        );
    }
    for reply in [&b"DELETED\r\n"[..], b"stored\r\n", b"STORED \r\n", b"\r\n"] {
        assert!(matches!(parse_store(reply), Err(ReplyError::Malformed(_))));
    }
    assert!(matches!(
        parse_delete(b"STORED\r\n"),
        Err(ReplyError::Malformed(_))
    ));
    assert!(matches!(
        parse_version(b"VERSION \r\n"),
        Err(ReplyError::Malformed(_))
    ));
    // A line that never ends is refused once it is longer than any reply could be.
    let endless = vec![b'A'; MAX_LINE + 1];
    assert!(matches!(
        parse_store(&endless),
        Err(ReplyError::Malformed(_))
    ));
    assert!(matches!(
        parse_get(&endless, KEY),
        Err(ReplyError::Malformed(_))
    ));
}

/// A small deterministic generator for the fuzz loop (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Checks the invariants every parser keeps on any input: no panic, and a completed parse
/// never claims more bytes than it was given.
fn check_all_parsers(input: &[u8]) {
    fn bounded<T>(r: Parsed<T>, len: usize) {
        if let Ok(Some((_, used))) = r {
            assert!(used > 0 && used <= len, "used {used} of {len}");
        }
    }
    bounded(parse_get(input, KEY), input.len());
    bounded(parse_get_raw(input, KEY), input.len());
    bounded(parse_store(input), input.len());
    bounded(parse_delete(input), input.len());
    bounded(parse_version(input), input.len());
}

#[test]
fn garbage_never_panics() {
    let mut rng = Rng(0x5EED_1234_ABCD);
    let seeds: Vec<Vec<u8>> = vec![
        hit_reply(FLAGS, &77u64.to_le_bytes(), 3),
        hit_reply(1, b"xyz", u64::MAX),
        b"END\r\n".to_vec(),
        b"STORED\r\nEXISTS\r\nNOT_FOUND\r\n".to_vec(),
        b"SERVER_ERROR x\r\n".to_vec(),
        b"VERSION 1.6.18\r\n".to_vec(),
    ];
    let alphabet = b"VALUE END\r\n0123456789 -traffik:gcra:k:alice\x00\xFF";
    let mut hits = [0usize; 3]; // complete, incomplete, error (for parse_get)
    for round in 0..200_000u64 {
        let mut input = if round % 3 == 0 {
            // Pure noise over an alphabet that looks like replies.
            let len = rng.below(80) as usize;
            (0..len)
                .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                .collect()
        } else {
            // A valid reply with a few bytes flipped, inserted, removed or cut.
            let mut v = seeds[rng.below(seeds.len() as u64) as usize].clone();
            for _ in 0..=rng.below(4) {
                let at = rng.below(v.len() as u64 + 1) as usize;
                match rng.below(4) {
                    0 if at < v.len() => v[at] = rng.next() as u8,
                    1 => v.insert(at, alphabet[rng.below(alphabet.len() as u64) as usize]),
                    2 if at < v.len() => {
                        v.remove(at);
                    }
                    _ => v.truncate(at),
                }
            }
            v
        };
        check_all_parsers(&input);
        match parse_get(&input, KEY) {
            Ok(Some(_)) => hits[0] += 1,
            Ok(None) => hits[1] += 1,
            Err(_) => hits[2] += 1,
        }
        input.extend_from_slice(b"\r\n");
        check_all_parsers(&input);
    }
    // The loop reached all three outcomes, so it explored more than one path.
    assert!(hits.iter().all(|&h| h > 1_000), "{hits:?}");
}

#[test]
fn values_of_any_length_round_trip() {
    let mut out = Vec::new();
    push_value(&mut out, b"cas ", KEY, 0x7473, 3, b"a\r\nb", Some(9));
    assert_eq!(out, b"cas traffik:gcra:k:alice 29811 3 4 9\r\na\r\nb\r\n");
    out.clear();
    push_value(&mut out, b"add ", KEY, 1, 0, b"", None);
    assert_eq!(out, b"add traffik:gcra:k:alice 1 0 0\r\n\r\n");
    // The value's bytes come back whatever they hold (a CRLF included), and a miss is None.
    let reply = hit_reply(0x7473, b"a\r\nb", 7);
    assert_eq!(
        parse_get_raw(&reply, KEY).unwrap(),
        Some((Some((0x7473, 7, b"a\r\nb".to_vec())), reply.len()))
    );
    assert_eq!(parse_get_raw(b"END\r\n", KEY).unwrap(), Some((None, 5)));
    for cut in 0..reply.len() {
        assert_eq!(
            parse_get_raw(&reply[..cut], KEY).unwrap(),
            None,
            "cut {cut}"
        );
    }
}
