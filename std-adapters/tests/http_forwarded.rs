//! The client-address resolver: exact cases for each rule, a model of well-formed headers,
//! and the fuzz harness's invariants (fuzz/harness/forwarded.rs) on generated input.
#![allow(clippy::unwrap_used, missing_docs)]

// The same invariants the cargo-fuzz target checks (this file is therefore not packaged).
#[path = "../../fuzz/harness/forwarded.rs"]
mod harness;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use traffik::http::forwarded::{ClientIpResolver, ForwardedHeader, Hop, TrustedProxies};
use traffik::http::ip::Cidr;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn headers(name: &str, lines: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    let name: HeaderName = name.parse().unwrap();
    for l in lines {
        h.append(name.clone(), HeaderValue::from_str(l).unwrap());
    }
    h
}

fn resolver(trusted: &str, header: ForwardedHeader) -> ClientIpResolver {
    ClientIpResolver::new(trusted.parse().unwrap(), header)
}

/// (trusted, header, peer, header lines, expected client).
type Case = (
    &'static str,
    ForwardedHeader,
    &'static str,
    &'static [&'static str],
    &'static str,
);

#[test]
fn table() {
    use ForwardedHeader::{Forwarded, XForwardedFor, XRealIp};
    let cases: &[Case] = &[
        // A spoofed X-Forwarded-For from an untrusted peer is ignored.
        (
            "10.0.0.0/8",
            XForwardedFor,
            "203.0.113.5",
            &["1.2.3.4"],
            "203.0.113.5",
        ),
        ("", XForwardedFor, "127.0.0.1", &["1.2.3.4"], "127.0.0.1"),
        // From a trusted proxy, the right-most untrusted address is the client.
        (
            "10.0.0.0/8",
            XForwardedFor,
            "10.0.0.1",
            &["6.6.6.6, 203.0.113.7"],
            "203.0.113.7",
        ),
        (
            "10.0.0.0/8",
            XForwardedFor,
            "10.0.0.1",
            &["6.6.6.6, 203.0.113.7, 10.9.9.9"],
            "203.0.113.7",
        ),
        // Header lines are one list in order, the last line nearest.
        (
            "10.0.0.0/8",
            XForwardedFor,
            "10.0.0.1",
            &["203.0.113.7", "10.2.2.2"],
            "203.0.113.7",
        ),
        (
            "10.0.0.0/8",
            XForwardedFor,
            "10.0.0.1",
            &["6.6.6.6", "203.0.113.7, 10.2.2.2"],
            "203.0.113.7",
        ),
        // Every hop trusted: the left-most; no header or an empty one: the peer.
        (
            "10.0.0.0/8",
            XForwardedFor,
            "10.0.0.1",
            &["10.0.0.7, 10.0.0.8"],
            "10.0.0.7",
        ),
        ("10.0.0.0/8", XForwardedFor, "10.0.0.1", &[], "10.0.0.1"),
        (
            "10.0.0.0/8",
            XForwardedFor,
            "10.0.0.1",
            &["", " ,, "],
            "10.0.0.1",
        ),
        // A hop naming no address stops at the last trusted hop reached.
        (
            "10.0.0.0/8",
            XForwardedFor,
            "10.0.0.1",
            &["6.6.6.6, unknown"],
            "10.0.0.1",
        ),
        (
            "10.0.0.0/8",
            XForwardedFor,
            "10.0.0.1",
            &["6.6.6.6, nonsense, 10.3.3.3"],
            "10.3.3.3",
        ),
        (
            "10.0.0.0/8",
            XForwardedFor,
            "10.0.0.1",
            &["6.6.6.6, \"1.2.3.4\""],
            "10.0.0.1",
        ),
        // Ports and brackets in X-Forwarded-For.
        (
            "10.0.0.0/8",
            XForwardedFor,
            "10.0.0.1",
            &["[2001:db8::7]:443"],
            "2001:db8::7",
        ),
        (
            "10.0.0.0/8",
            XForwardedFor,
            "10.0.0.1",
            &["198.51.100.2:5060"],
            "198.51.100.2",
        ),
        (
            "10.0.0.0/8",
            XForwardedFor,
            "10.0.0.1",
            &["2001:db8::8"],
            "2001:db8::8",
        ),
        // Mapped IPv4: trusted through the IPv4 network, and returned as IPv4.
        (
            "10.0.0.0/8",
            XForwardedFor,
            "::ffff:10.0.0.1",
            &["::ffff:10.4.4.4, ::ffff:198.51.100.3"],
            "198.51.100.3",
        ),
        (
            "10.0.0.0/8",
            XForwardedFor,
            "::ffff:10.0.0.1",
            &["::ffff:198.51.100.3, ::ffff:10.4.4.4"],
            "198.51.100.3",
        ),
        (
            "::ffff:10.0.0.0/104",
            XForwardedFor,
            "10.0.0.1",
            &["198.51.100.3"],
            "198.51.100.3",
        ),
        (
            "10.0.0.0/8",
            XForwardedFor,
            "::ffff:8.8.8.8",
            &["1.2.3.4"],
            "8.8.8.8",
        ),
        // RFC 7239: quoting, IPv6 brackets and ports, obfuscated and unknown identifiers.
        (
            "10.0.0.0/8",
            Forwarded,
            "10.0.0.1",
            &["for=192.0.2.60;proto=http;by=203.0.113.43"],
            "192.0.2.60",
        ),
        (
            "10.0.0.0/8",
            Forwarded,
            "10.0.0.1",
            &["for=\"[2001:db8:cafe::17]:4711\""],
            "2001:db8:cafe::17",
        ),
        (
            "10.0.0.0/8",
            Forwarded,
            "10.0.0.1",
            &["for=\"192.0.2.1:80\", for=10.1.1.1"],
            "192.0.2.1",
        ),
        (
            "10.0.0.0/8",
            Forwarded,
            "10.0.0.1",
            &["For=192.0.2.1 ; Proto=https"],
            "192.0.2.1",
        ),
        (
            "10.0.0.0/8",
            Forwarded,
            "10.0.0.1",
            &["for=192.0.2.1, for=\"_gazonk\""],
            "10.0.0.1",
        ),
        (
            "10.0.0.0/8",
            Forwarded,
            "10.0.0.1",
            &["for=192.0.2.1, for=unknown, for=10.1.1.1"],
            "10.1.1.1",
        ),
        (
            "10.0.0.0/8",
            Forwarded,
            "10.0.0.1",
            &["for=192.0.2.1", "proto=https"],
            "10.0.0.1",
        ),
        (
            "10.0.0.0/8",
            Forwarded,
            "10.0.0.1",
            &["for=\"[::ffff:192.0.2.9]\""],
            "192.0.2.9",
        ),
        // A client's unbalanced quote or broken element cannot swallow the proxy's element.
        (
            "10.0.0.0/8",
            Forwarded,
            "10.0.0.1",
            &["for=\"6.6.6.6, for=192.0.2.1"],
            "192.0.2.1",
        ),
        (
            "10.0.0.0/8",
            Forwarded,
            "10.0.0.1",
            &["a=\"x, for=\"[2001:db8::1]:80\""],
            "2001:db8::1",
        ),
        (
            "10.0.0.0/8",
            Forwarded,
            "10.0.0.1",
            &["for=6.6.6.6;;;", "for=192.0.2.1"],
            "192.0.2.1",
        ),
        // A quoted comma stays inside its string.
        (
            "10.0.0.0/8",
            Forwarded,
            "10.0.0.1",
            &["for=192.0.2.1;x=\"a, for=6.6.6.6\""],
            "192.0.2.1",
        ),
        // X-Real-IP: one address, set by the proxy.
        (
            "127.0.0.1",
            XRealIp,
            "127.0.0.1",
            &["198.51.100.4"],
            "198.51.100.4",
        ),
        (
            "127.0.0.1",
            XRealIp,
            "198.51.100.9",
            &["198.51.100.4"],
            "198.51.100.9",
        ),
    ];
    for (trusted, header, peer, lines, want) in cases {
        let r = resolver(trusted, header.clone());
        let got = r.client_ip(ip(peer), &headers(header.name().as_str(), lines));
        assert_eq!(got, ip(want), "{trusted} {header:?} peer {peer} {lines:?}");
    }
}

#[test]
fn only_the_chosen_header_is_read() {
    let mut h = headers("x-forwarded-for", &["198.51.100.1"]);
    h.append("x-real-ip", HeaderValue::from_static("198.51.100.2"));
    h.append("forwarded", HeaderValue::from_static("for=198.51.100.3"));
    for (header, want) in [
        (ForwardedHeader::XForwardedFor, "198.51.100.1"),
        (ForwardedHeader::XRealIp, "198.51.100.2"),
        (ForwardedHeader::Forwarded, "198.51.100.3"),
        (
            ForwardedHeader::Custom(HeaderName::from_static("cf-connecting-ip")),
            "10.0.0.1",
        ),
    ] {
        assert_eq!(
            resolver("10.0.0.0/8", header).client_ip(ip("10.0.0.1"), &h),
            ip(want)
        );
    }
}

#[test]
fn non_utf8_and_huge_headers() {
    let r = resolver("10.0.0.0/8", ForwardedHeader::XForwardedFor);
    let mut h = HeaderMap::new();
    h.append(
        "x-forwarded-for",
        HeaderValue::from_bytes(b"\xff\xfe, 1.2.3.4").unwrap(),
    );
    assert_eq!(r.client_ip(ip("10.0.0.1"), &h), ip("1.2.3.4"));
    h.append("x-forwarded-for", HeaderValue::from_bytes(b"\x80").unwrap());
    assert_eq!(r.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.1"));
    // A megabyte of trusted hops: the walk is linear, and ends at the left-most.
    let mut big = "10.0.0.2, ".repeat(100_000);
    big.push_str("10.0.0.3");
    let h = headers("x-forwarded-for", &[&big]);
    assert_eq!(r.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.2"));
    let quotes = "\"\\".repeat(200_000);
    let f = resolver("10.0.0.0/8", ForwardedHeader::Forwarded);
    let h = headers("forwarded", &[&quotes, "for=1.2.3.4"]);
    assert_eq!(f.client_ip(ip("10.0.0.1"), &h), ip("1.2.3.4"));
    let h = headers("forwarded", &[&format!("for=1.2.3.4, {quotes}\"")]);
    assert_eq!(f.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.1"));
}

/// One hop of a well-formed header, as the model sees it.
#[derive(Clone, Debug)]
enum ModelHop {
    Addr(IpAddr),
    Unknown,
    Obfuscated,
    Garbage,
}

const NETS: [&str; 6] = [
    "10.0.0.0/8",
    "127.0.0.0/8",
    "192.168.0.0/16",
    "::1",
    "2001:db8::/32",
    "fc00::/7",
];

/// Addresses inside and around the palette networks, and anywhere.
fn address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|x| IpAddr::V4(Ipv4Addr::from(x))),
        any::<u128>().prop_map(|x| IpAddr::V6(Ipv6Addr::from(x))),
        any::<u32>().prop_map(|x| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (x & 0x00ff_ffff)))),
        any::<u16>().prop_map(|x| IpAddr::V4(Ipv4Addr::new(192, 168, (x >> 8) as u8, x as u8))),
        any::<u8>().prop_map(|x| IpAddr::V4(Ipv4Addr::new(127, 0, 0, x))),
        Just(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        any::<u64>()
            .prop_map(|x| IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) | u128::from(x)))),
        any::<u32>().prop_map(|x| IpAddr::V6(Ipv4Addr::from(x).to_ipv6_mapped())),
        any::<u32>().prop_map(|x| IpAddr::V6(
            Ipv4Addr::from(0x0a00_0000 | (x & 0x00ff_ffff)).to_ipv6_mapped()
        )),
    ]
}

fn model_hop() -> impl Strategy<Value = ModelHop> {
    prop_oneof![
        8 => address().prop_map(ModelHop::Addr),
        1 => Just(ModelHop::Unknown),
        1 => Just(ModelHop::Obfuscated),
        1 => Just(ModelHop::Garbage),
    ]
}

/// How a hop is written, chosen by `style`: with or without port, brackets, quotes.
fn render(hop: &ModelHop, rfc7239: bool, style: u8) -> String {
    let node = match hop {
        ModelHop::Addr(IpAddr::V4(a)) => match style % 2 {
            0 => a.to_string(),
            _ => format!("{a}:{}", 1 + u16::from(style)),
        },
        ModelHop::Addr(IpAddr::V6(a)) => match style % 3 {
            0 if !rfc7239 => a.to_string(),
            1 => format!("[{a}]"),
            _ => format!("[{a}]:{}", 1 + u16::from(style)),
        },
        ModelHop::Unknown => "unknown".to_owned(),
        ModelHop::Obfuscated => "_hidden".to_owned(),
        ModelHop::Garbage => "not-an-ip".to_owned(),
    };
    if !rfc7239 {
        return node;
    }
    let quoted = node.contains(':') || node.contains('[') || style % 4 == 3;
    let value = if quoted { format!("\"{node}\"") } else { node };
    match style % 5 {
        0 => format!("for={value}"),
        1 => format!("for={value};proto=https"),
        2 => format!("by=\"_p\";For={value}"),
        3 => format!("proto=http ; for={value} ; host=\"a,b\""),
        _ => format!("for={value}"),
    }
}

/// The rules, on the model: from the right, skip trusted addresses; stop at the first
/// untrusted one, or at the last trusted one before a hop naming no address.
fn model(trusted: &TrustedProxies, peer: IpAddr, hops: &[ModelHop]) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    let mut reached = peer;
    for hop in hops.iter().rev() {
        match hop {
            ModelHop::Addr(a) if trusted.contains(*a) => reached = a.to_canonical(),
            ModelHop::Addr(a) => return a.to_canonical(),
            _ => return reached,
        }
    }
    reached
}

/// Pieces that make near-valid headers (the interesting inputs for a parser).
fn fragments() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(&b"for="[..]),
        Just(&b"For="[..]),
        Just(&b"10.0.0.1"[..]),
        Just(&b"127.0.0.1"[..]),
        Just(&b"8.8.8.8"[..]),
        Just(&b"[2001:db8::1]"[..]),
        Just(&b"2001:db9::2"[..]),
        Just(&b"::ffff:10.1.1.1"[..]),
        Just(&b":80"[..]),
        Just(&b", "[..]),
        Just(&b","[..]),
        Just(&b";"[..]),
        Just(&b"\""[..]),
        Just(&b"\\"[..]),
        Just(&b"unknown"[..]),
        Just(&b"_x"[..]),
        Just(&b" "[..]),
        Just(&b"\n"[..]),
        Just(&b"\0"[..]),
        Just(&b"proto=https"[..]),
        Just(&b"\xff"[..]),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|ps| ps.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Well-formed headers from the model, in both syntaxes, split over several lines: the
    /// resolver finds exactly the model's client.
    #[test]
    fn well_formed_headers_resolve_as_the_model_says(
        nets in proptest::sample::subsequence(NETS.to_vec(), 0..=NETS.len()),
        peer in address(),
        hops in proptest::collection::vec((model_hop(), any::<u8>()), 0..8),
        rfc7239 in any::<bool>(),
        breaks in proptest::collection::vec(any::<bool>(), 8),
        spaces in proptest::collection::vec(0usize..3, 8),
    ) {
        let trusted = TrustedProxies::new(nets.iter().map(|s| s.parse::<Cidr>().unwrap()));
        let header = if rfc7239 { ForwardedHeader::Forwarded } else { ForwardedHeader::XForwardedFor };
        let mut lines = vec![String::new()];
        for (i, (hop, style)) in hops.iter().enumerate() {
            let line = lines.last_mut().unwrap();
            if !line.is_empty() {
                line.push(',');
                line.push_str(&" ".repeat(spaces[i]));
            }
            line.push_str(&render(hop, rfc7239, *style));
            if breaks[i] {
                lines.push(String::new());
            }
        }
        let name = header.name();
        let mut map = HeaderMap::new();
        for l in &lines {
            map.append(name.clone(), HeaderValue::from_str(l).unwrap());
        }
        let bare: Vec<ModelHop> = hops.iter().map(|(h, _)| h.clone()).collect();
        let want = model(&trusted, peer, &bare);
        let got = ClientIpResolver::new(trusted.clone(), header.clone()).client_ip(peer, &map);
        prop_assert_eq!(got, want, "lines {:?}", lines);
        // The hops listed are the model's, right to left, up to the first it cannot read.
        let listed: Vec<Hop> = header.hops(&map).collect();
        let expected: Vec<Hop> = bare.iter().rev().map(|h| match h {
            ModelHop::Addr(a) => Hop::Addr(a.to_canonical()),
            ModelHop::Unknown => Hop::Unknown,
            ModelHop::Obfuscated => Hop::Obfuscated,
            ModelHop::Garbage => Hop::Malformed,
        }).collect();
        let cut = expected.iter().position(|h| *h == Hop::Malformed).map_or(expected.len(), |m| m + 1);
        prop_assert_eq!(listed, &expected[..cut]);
    }

    /// Whatever the headers, an untrusted peer is the client.
    #[test]
    fn untrusted_peers_are_the_client_whatever_the_headers(
        lines in proptest::collection::vec(
            prop_oneof![fragments(), proptest::collection::vec(any::<u8>(), 0..64)],
            0..4,
        ),
        which in 0u8..4,
        peer in address(),
    ) {
        let trusted: TrustedProxies = "10.0.0.0/8, ::1".parse().unwrap();
        // Most generated addresses are outside; a trusted one is swapped for one that is not.
        let peer = if trusted.contains(peer) { IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)) } else { peer };
        let header = match which {
            0 => ForwardedHeader::Forwarded,
            1 => ForwardedHeader::XForwardedFor,
            2 => ForwardedHeader::XRealIp,
            _ => ForwardedHeader::Custom(HeaderName::from_static("x-client-ip")),
        };
        let mut map = HeaderMap::new();
        for l in &lines {
            if let Ok(v) = HeaderValue::from_bytes(l) {
                map.append(header.name(), v);
            }
        }
        let r = ClientIpResolver::new(trusted, header);
        prop_assert_eq!(r.client_ip(peer, &map), peer.to_canonical());
    }

    /// The fuzz harness's invariants (see fuzz/harness/forwarded.rs) on near-valid and on
    /// arbitrary bytes, with random trusted sets, peers and client prefixes.
    #[test]
    fn harness_invariants_on_near_valid_input(
        h in any::<u8>(), bits in any::<u8>(), p in any::<u8>(), body in fragments(),
    ) {
        let mut data = vec![h, bits, p];
        data.extend_from_slice(&body);
        harness::forwarded(&data);
    }

    #[test]
    fn harness_invariants_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        harness::forwarded(&data);
    }
}
