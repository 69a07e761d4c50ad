//! Redis key names and their Redis Cluster slots: which keys a check touches, and how checks
//! are grouped by slot for batching on a cluster.

use std::collections::HashMap;

/// Redis Cluster's slot count.
const CLUSTER_SLOTS: u16 = 16_384;

/// The cluster slot of `key`: CRC16 (XMODEM) of its hash tag (the bytes between the first `{`
/// and the next `}`, when not empty) or of the whole key, modulo 16384.
fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .map(|close| &rest[..close])
        })
        .filter(|tag| !tag.is_empty())
        .unwrap_or(key);
    crc16_xmodem(hashed) % CLUSTER_SLOTS
}

/// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection.
fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Splits `items` by the cluster slot of `key(item)`: groups in the order their slots first
/// appear, items within a group in input order.
pub(crate) fn slot_groups<T>(items: Vec<T>, key: impl Fn(&T) -> &[u8]) -> Vec<Vec<T>> {
    let mut index: HashMap<u16, usize> = HashMap::new();
    let mut groups: Vec<Vec<T>> = Vec::new();
    for item in items {
        let slot = key_slot(key(&item));
        let g = *index.entry(slot).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(item);
    }
    groups
}

/// The Redis key holding `key`'s state: `<prefix>:{<tag>}:<suffix>`, where the tag is `key`
/// with `%` written `%25` and `}` written `%7D`, or `%` alone for the empty key.
///
/// The tag is therefore never empty and never closed early, whatever bytes `key` holds, so a
/// check's keys (this one and [`meta_key`]'s) always share one cluster slot; and distinct keys
/// get distinct names (the escapes are undone unambiguously, and a lone `%` is never the
/// escape of a non-empty key). Ordinary keys read as they are: `api:{user:42}:gcra`.
pub(crate) fn redis_key(prefix: &str, key: &[u8], suffix: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + key.len() + suffix.len() + 8);
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(b":{");
    if key.is_empty() {
        out.push(b'%');
    }
    for &b in key {
        match b {
            b'%' => out.extend_from_slice(b"%25"),
            b'}' => out.extend_from_slice(b"%7D"),
            _ => out.push(b),
        }
    }
    out.extend_from_slice(b"}:");
    out.extend_from_slice(suffix.as_bytes());
    out
}

/// The sliding window log's second key (its base and sequence), in the same slot as `key`.
pub(crate) fn meta_key(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.extend_from_slice(b":m");
    k
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{crc16_xmodem, key_slot, meta_key, redis_key, slot_groups};

    #[test]
    fn crc16_and_slots_match_redis() {
        // The CRC16-XMODEM check value, and slots Redis documents or reports
        // (`CLUSTER KEYSLOT foo` is 12182).
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"123456789"), 12739);
        // The hash tag rules of the cluster specification.
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        // An empty tag hashes the whole key; so does an unclosed brace.
        assert_eq!(
            key_slot(b"foo{}{bar}"),
            crc16_xmodem(b"foo{}{bar}") % 16_384
        );
        assert_eq!(key_slot(b"foo{bar"), crc16_xmodem(b"foo{bar") % 16_384);
    }

    #[test]
    fn keys_sharing_a_hash_tag_form_one_group_in_input_order() {
        // Raw Redis key names: `p:{team}1}:gcra` and `p:{team}2}:gcra` share the tag `team`.
        let keys: Vec<(usize, Vec<u8>)> = [
            "p:{a}:gcra",
            "p:{team}1}:gcra",
            "p:{b}:gcra",
            "p:{team}2}:gcra",
            "p:{a}:gcra:m",
            "p:{team}3}:gcra",
            "other:{a}:tb",
        ]
        .iter()
        .enumerate()
        .map(|(i, k)| (i, k.as_bytes().to_vec()))
        .collect();
        let groups = slot_groups(keys, |(_, k)| k);
        let order: Vec<Vec<usize>> = groups
            .iter()
            .map(|g| g.iter().map(|(i, _)| *i).collect())
            .collect();
        assert_eq!(order, vec![vec![0, 4, 6], vec![1, 3, 5], vec![2]]);
        for g in &groups {
            let slot = key_slot(&g[0].1);
            assert!(g.iter().all(|(_, k)| key_slot(k) == slot));
        }
        assert_ne!(key_slot(b"a"), key_slot(b"team"));
        assert_ne!(key_slot(b"a"), key_slot(b"b"));
        assert_ne!(key_slot(b"b"), key_slot(b"team"));
    }

    #[test]
    fn distinct_slots_form_distinct_groups() {
        let keys: Vec<Vec<u8>> = (0..500)
            .map(|i| format!("p:{{k{i}}}:gcra").into_bytes())
            .collect();
        let groups = slot_groups(keys.clone(), |k| k);
        let mut slots: Vec<u16> = groups.iter().map(|g| key_slot(&g[0])).collect();
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), keys.len());
        let n = slots.len();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots.len(), n, "one group per slot");
    }

    /// Awkward caller keys: empty, braces in every order, the escape byte, what its escapes
    /// look like, and bytes that are not UTF-8.
    const AWKWARD: [&[u8]; 14] = [
        b"",
        b"}",
        b"}{",
        b"{}",
        b"{",
        b"}}",
        b"a}b{c}",
        b"%",
        b"%25",
        b"%7D",
        b"%7d",
        b"\xff\x00}\x80{",
        b"user:1",
        b"{user:1}",
    ];

    #[test]
    fn any_key_gets_a_non_empty_tag_shared_by_its_meta_key() {
        for key in AWKWARD {
            let name = redis_key("p", key, "swl");
            let tag_start = name.iter().position(|&b| b == b'{').unwrap() + 1;
            let tag_len = name[tag_start..].iter().position(|&b| b == b'}').unwrap();
            let tag = &name[tag_start..tag_start + tag_len];
            assert!(!tag.is_empty(), "{key:?}");
            // The tag is the whole escaped key: it closes right before `:swl`.
            assert_eq!(&name[tag_start + tag_len..], b"}:swl", "{key:?}");
            assert_eq!(key_slot(&name), crc16_xmodem(tag) % 16_384, "{key:?}");
            assert_eq!(key_slot(&meta_key(&name)), key_slot(&name), "{key:?}");
        }
        assert_eq!(redis_key("api", b"user:42", "gcra"), b"api:{user:42}:gcra");
        assert_eq!(redis_key("p", b"", "tb"), b"p:{%}:tb");
        assert_eq!(redis_key("p", b"a}b%", "tb"), b"p:{a%7Db%25}:tb");
    }

    #[test]
    fn distinct_keys_get_distinct_names() {
        let mut names: Vec<Vec<u8>> = AWKWARD.iter().map(|k| redis_key("p", k, "fw")).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), AWKWARD.len());
    }
}
