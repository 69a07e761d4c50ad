//! Key encodings: which keys are stored exactly, and that fingerprints keep structured keys
//! apart (no collision among the key sets a proxy or an API sees in practice).
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use traffik_core::{Hashed, Key, KeyHasher};

const SEEDS: [u64; 4] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
];

/// Every encoding in `keys` distinct (a collision would make two keys share one state).
fn all_distinct<K: Key>(keys: impl Iterator<Item = K>, hasher: &KeyHasher) -> usize {
    let mut seen = HashSet::new();
    let mut n = 0;
    for k in keys {
        assert!(seen.insert(k.encode(hasher)), "collision at key #{n}");
        n += 1;
    }
    n
}

#[test]
fn ipv4_is_exact_and_ipv6_is_tagged() {
    let h = KeyHasher::with_seeds(SEEDS);
    let v4 = Ipv4Addr::new(192, 0, 2, 7);
    assert_eq!(IpAddr::V4(v4).encode(&h), 0xc000_0207);
    let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    // The top bit keeps fingerprints away from the exact IPv4 (and integer) encodings.
    assert_eq!(v6.encode(&h) >> 63, 1);
    assert_eq!(v6.encode(&h), v6.encode(&h));
}

#[test]
fn ipv6_hosts_in_one_prefix_and_prefixes_do_not_collide() {
    let h = KeyHasher::with_seeds(SEEDS);
    // 2^18 hosts of one /64 (only the low bits differ), then the ::1 host of 2^18 /64s of one
    // /32 (only bits 64..82 differ).
    let prefix = 0x2001_0db8_0000_0000u128 << 64;
    let hosts = (0..1u128 << 18).map(|i| Ipv6Addr::from(prefix | i));
    assert_eq!(all_distinct(hosts, &h), 1 << 18);
    let nets = (0..1u128 << 18).map(|i| Ipv6Addr::from(prefix | (i << 64) | 1));
    assert_eq!(all_distinct(nets, &h), 1 << 18);
}

#[test]
fn numbered_and_short_strings_do_not_collide() {
    let h = KeyHasher::with_seeds(SEEDS);
    let users = (0..200_000).map(|i| format!("user-{i:08}"));
    assert_eq!(all_distinct(users, &h), 200_000);
    // Every string of up to two bytes, the empty one included: lengths are kept apart.
    let mut short = vec![Vec::new()];
    short.extend((0..=255u8).map(|a| vec![a]));
    short.extend((0..=u16::MAX).map(|x| x.to_le_bytes().to_vec()));
    assert_eq!(all_distinct(short.into_iter(), &h), 1 + 256 + 65_536);
}

#[test]
fn str_string_and_bytes_agree_and_seeds_matter() {
    let (a, b) = (
        KeyHasher::with_seeds(SEEDS),
        KeyHasher::with_seeds([1, 2, 3, 4]),
    );
    let s = "tenant-42";
    assert_eq!(s.encode(&a), String::from(s).encode(&a));
    assert_eq!(s.as_bytes().encode(&a), s.encode(&a));
    assert_eq!(s.as_bytes().to_vec().encode(&a), s.encode(&a));
    assert_ne!(s.encode(&a), s.encode(&b));
    // Each seed word changes the fingerprints.
    for i in 0..4 {
        let mut seeds = SEEDS;
        seeds[i] ^= 1 << 17;
        let other = KeyHasher::with_seeds(seeds);
        assert_ne!(s.encode(&a), s.encode(&other), "seed word {i} ignored");
        let v6 = Ipv6Addr::LOCALHOST;
        assert_ne!(v6.encode(&a), v6.encode(&other), "seed word {i} ignored");
    }
}

#[test]
fn wide_integers_and_hashed_values() {
    let h = KeyHasher::with_seeds(SEEDS);
    let wide = (1..1u128 << 16).flat_map(|i| [i, i << 64, !i]);
    assert_eq!(all_distinct(wide, &h), 3 * ((1 << 16) - 1));
    assert_eq!((-1i128).encode(&h), u128::MAX.encode(&h));
    #[derive(Hash)]
    struct Tenant {
        org: u32,
        user: u64,
    }
    let tenants =
        (0..256u32).flat_map(|org| (0..256u64).map(move |user| Hashed(Tenant { org, user })));
    assert_eq!(all_distinct(tenants, &h), 65_536);
}
