//! Memcached key names for user keys, and which server holds each.
//!
//! Memcached keys are at most 250 bytes with no spaces or control characters, while user keys
//! are arbitrary bytes. A user key `k` becomes `{prefix}:{algorithm}:{form}:{body}`:
//!
//! | form | when | body |
//! |---|---|---|
//! | `k` | every byte of `k` is printable ASCII other than space (`0x21..=0x7E`) and the whole name fits in 250 bytes | `k` itself |
//! | `x` | otherwise, if the name with `k` in lowercase hex fits in 250 bytes | `k` in lowercase hex |
//! | `h` | otherwise (a long key) | SHA-256 of `k`, lowercase hex (64 characters) |
//!
//! The form letter keeps the three encodings apart, and within a form the body determines `k`
//! (or, for `h`, a SHA-256 collision would be needed), so two different user keys never share a
//! memcached key. The algorithm tag keeps limiters of different algorithms from reading one
//! another's states; limiters with the same prefix and algorithm but different rates share
//! states, so give them different prefixes.
//!
//! Servers are chosen by rendezvous (highest random weight) hashing over the memcached key: each
//! server's score is `mix(fnv1a(key) ^ fnv1a(server))`, where `fnv1a` is 64-bit FNV-1a and
//! `mix` is the SplitMix64 finalizer, and the highest score wins (ties go to the earlier server
//! in the list). `server` is the address text as configured after normalising to `host:port`.
//! Every process that lists the same servers (in any order) maps every key to the same one, and
//! adding or removing one server moves only the keys that server gains or held.

use sha2::{Digest, Sha256};
use traffik_core::AlgorithmKind;

/// Memcached's longest key.
pub(crate) const MAX_KEY: usize = 250;

/// The longest prefix accepted, leaving room for the tag and a hashed body.
pub(crate) const MAX_PREFIX: usize = 64;

/// The tag naming an algorithm in keys.
pub(crate) fn algorithm_tag(kind: Option<AlgorithmKind>) -> &'static str {
    match kind {
        Some(AlgorithmKind::Gcra) => "gcra",
        Some(AlgorithmKind::TokenBucket) => "tb",
        Some(AlgorithmKind::LeakyBucket) => "lb",
        Some(AlgorithmKind::FixedWindow) => "fw",
        Some(AlgorithmKind::SlidingWindowCounter) => "swc",
        Some(AlgorithmKind::DebtBucket { .. }) => "tbd",
        Some(AlgorithmKind::QuotaRollover(_)) => "rq",
        // `AlgorithmKind` is non-exhaustive: a future kind gets its own tag when it is added
        // here; until then it shares this generic one with the unlimited rate (which never
        // stores anything).
        _ => "any",
    }
}

/// Whether `b` may appear in a memcached key as is.
fn is_key_byte(b: u8) -> bool {
    (0x21..=0x7E).contains(&b)
}

/// Whether `prefix` is usable: printable ASCII without spaces, at most [`MAX_PREFIX`] bytes.
pub(crate) fn valid_prefix(prefix: &str) -> bool {
    prefix.len() <= MAX_PREFIX && prefix.bytes().all(is_key_byte)
}

/// The memcached key for `key`, following the table in the module docs.
pub(crate) fn memcached_key(prefix: &str, tag: &str, key: &[u8]) -> Vec<u8> {
    // "{prefix}:{tag}:{form}:"
    let header = prefix.len() + tag.len() + 4;
    let mut out = Vec::with_capacity(MAX_KEY);
    out.extend_from_slice(prefix.as_bytes());
    out.push(b':');
    out.extend_from_slice(tag.as_bytes());
    if header + key.len() <= MAX_KEY && key.iter().copied().all(is_key_byte) {
        out.extend_from_slice(b":k:");
        out.extend_from_slice(key);
    } else if header + 2 * key.len() <= MAX_KEY {
        out.extend_from_slice(b":x:");
        push_hex(&mut out, key);
    } else {
        out.extend_from_slice(b":h:");
        push_hex(&mut out, &Sha256::digest(key));
    }
    out
}

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

/// 64-bit FNV-1a: simple, fixed forever, and the same in every process.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The SplitMix64 finalizer: spreads FNV's weak low bits over the whole word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The index of the server holding `key`, given each server's `fnv1a` of its name.
pub(crate) fn pick_server(server_hashes: &[u64], key: &[u8]) -> usize {
    if server_hashes.len() <= 1 {
        return 0;
    }
    let k = fnv1a(key);
    let mut best = (0, mix(k ^ server_hashes[0]));
    for (i, &s) in server_hashes.iter().enumerate().skip(1) {
        let score = mix(k ^ s);
        if score > best.1 {
            best = (i, score);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_keys_are_kept() {
        assert_eq!(memcached_key("api", "gcra", b"alice"), b"api:gcra:k:alice");
        assert_eq!(memcached_key("", "tb", b""), b":tb:k:");
    }

    #[test]
    fn other_bytes_are_hex_encoded() {
        assert_eq!(memcached_key("p", "fw", b"a b"), b"p:fw:x:612062");
        assert_eq!(memcached_key("p", "fw", b"\x00\xff\n"), b"p:fw:x:00ff0a");
        // The raw form of a key that looks like a hex body cannot meet the hex form.
        assert_ne!(
            memcached_key("p", "fw", b"x:612062"),
            memcached_key("p", "fw", b"a b")
        );
    }

    #[test]
    fn long_keys_are_hashed_and_every_name_fits() {
        let header = "traffik:gcra:k:".len();
        let longest_raw = vec![b'a'; MAX_KEY - header];
        let k = memcached_key("traffik", "gcra", &longest_raw);
        assert_eq!(k.len(), MAX_KEY);
        assert!(k.starts_with(b"traffik:gcra:k:"));

        let one_more = vec![b'a'; MAX_KEY - header + 1];
        let h = memcached_key("traffik", "gcra", &one_more);
        assert!(h.starts_with(b"traffik:gcra:h:"), "{}", h.escape_ascii());
        assert_eq!(h.len(), header + 64);
        // The longest prefix with a long key still fits.
        let longest = memcached_key(&"p".repeat(MAX_PREFIX), "swc", &[b' '; 200]);
        assert!(longest.len() <= MAX_KEY);
        // SHA-256("abc"), the FIPS 180-2 test vector: the digest is the standard one.
        let mut abc = Vec::new();
        push_hex(&mut abc, &Sha256::digest(b"abc"));
        assert_eq!(
            abc,
            b"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );

        // Two long keys differing in their last byte get different names.
        let mut other = one_more.clone();
        let last = other.len() - 1;
        other[last] = b'b';
        assert_ne!(memcached_key("traffik", "gcra", &other), h);

        // Binary keys switch from hex to hashed at exactly the 250-byte boundary.
        let hex_room = (MAX_KEY - header) / 2;
        let k = memcached_key("traffik", "gcra", &vec![0u8; hex_room]);
        assert!(k.starts_with(b"traffik:gcra:x:") && k.len() <= MAX_KEY);
        let k = memcached_key("traffik", "gcra", &vec![0u8; hex_room + 1]);
        assert!(k.starts_with(b"traffik:gcra:h:"));
    }

    #[test]
    fn every_generated_key_is_valid_for_memcached() {
        let mut state = 1u64;
        for len in 0..600 {
            let key: Vec<u8> = (0..len)
                .map(|_| {
                    state = mix(state.wrapping_add(0x9e37_79b9_7f4a_7c15));
                    state as u8
                })
                .collect();
            let name = memcached_key(&"z".repeat(MAX_PREFIX), "swc", &key);
            assert!(name.len() <= MAX_KEY, "len {len}");
            assert!(name.iter().copied().all(is_key_byte), "len {len}");
        }
    }

    #[test]
    fn prefixes_are_validated() {
        assert!(valid_prefix("traffik"));
        assert!(valid_prefix(""));
        assert!(!valid_prefix("has space"));
        assert!(!valid_prefix("tab\t"));
        assert!(!valid_prefix("é"));
        assert!(!valid_prefix(&"p".repeat(MAX_PREFIX + 1)));
    }

    #[test]
    fn fnv1a_matches_its_published_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn server_choice_is_stable_and_spread() {
        let names = ["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"];
        let hashes: Vec<u64> = names.iter().map(|n| fnv1a(n.as_bytes())).collect();
        let mut counts = [0u32; 3];
        let mut moved = 0;
        let two = &hashes[..2];
        for i in 0..30_000u32 {
            let key = format!("traffik:gcra:k:user-{i}");
            let s = pick_server(&hashes, key.as_bytes());
            counts[s] += 1;
            // Order of the list does not matter.
            let rev: Vec<u64> = hashes.iter().rev().copied().collect();
            assert_eq!(2 - pick_server(&rev, key.as_bytes()), s);
            // Removing server 2 moves only the keys it held.
            let without = pick_server(two, key.as_bytes());
            if s != 2 {
                assert_eq!(without, s);
            } else {
                moved += 1;
            }
        }
        assert_eq!(moved, counts[2]);
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        assert_eq!(pick_server(&hashes[..1], b"anything"), 0);
        assert_eq!(pick_server(&[], b"anything"), 0);
    }
}
