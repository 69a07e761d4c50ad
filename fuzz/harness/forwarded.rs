// Decodes fuzz bytes into trusted proxies, a peer, one forwarding header with arbitrary lines,
// and an arbitrary "client prefix"; resolves the client address and checks the resolver's
// rules as invariants.
//
// Input layout: [header, trusted bits, peer, lines... 0x00 prefix...]. `header` picks which
// header is read (and the lines are set under that name); each bit of `trusted` adds one
// network of NETS; `peer` picks from PEERS. The lines are separated by '\n'; bytes a header
// value cannot hold become spaces. Everything after the first 0x00 is the prefix.
//
// Invariants, with `hops` = the header's hops right to left as `ForwardedHeader::hops` lists
// them and `c` = canonical(peer):
//  1. `client_ip` never panics, whatever the bytes.
//  2. Untrusted peer: the result is `c`, whatever the headers.
//  3. Trusted peer: the result is what walking `hops` gives: the first untrusted address; at
//     the first hop naming no address, the last trusted one reached (`c` if it is the first
//     hop); else, all trusted, the left-most hop (`c` if there is none).
//  4. Hence: the result is `c` or an address among `hops`, and it is a trusted address only if
//     every hop is a trusted address (then it is the left-most, or `c`), or the hop after it
//     in `hops` names no address.
//  5. Anti-spoofing: a client controls only the left end of the header, so bytes there must
//     not change how the hops to their right read. When the walk stopped at a hop that was
//     read in full (an address, `unknown`, an obfuscated identifier; or any hop of a
//     comma-separated header, whose items are delimited by commas alone), putting arbitrary
//     bytes before the first line (`prefix + "," + line`) or an arbitrary extra first line
//     changes nothing. Not asserted for a malformed `Forwarded` element: it is read from its
//     right end as far left as it takes (an unclosed quote looks for its opening one), so
//     bytes to its left may change what it reads as. The walk only reaches such an element
//     past trusted hops, i.e. where a trusted proxy should have appended a valid one.
//
//  6. The same, hop by hop: with the prefix (either way), the hops listed start with the
//     original ones, all of them for a comma-separated header, and those before the first
//     malformed one for `Forwarded`.
//
// Included with `#[path]` by the cargo-fuzz target and by the stable corpus replay test.

use http::{HeaderMap, HeaderName, HeaderValue};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use traffik::http::forwarded::{ClientIpResolver, ForwardedHeader, Hop, TrustedProxies};
use traffik::http::ip::Cidr;

const NETS: [&str; 8] = [
    "10.0.0.0/8",
    "127.0.0.0/8",
    "192.168.0.0/16",
    "::1",
    "2001:db8::/32",
    "::ffff:172.16.0.0/108",
    "fc00::/7",
    "0.0.0.0/0",
];

const PEERS: [IpAddr; 8] = [
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
    IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1)),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
    IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)),
    // ::ffff:172.16.0.9, a mapped address (trusted through the mapped network).
    IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0xac10, 0x0009)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb9, 0, 0, 0, 0, 0, 1)),
];

fn header_of(b: u8) -> ForwardedHeader {
    match b % 4 {
        0 => ForwardedHeader::Forwarded,
        1 => ForwardedHeader::XForwardedFor,
        2 => ForwardedHeader::XRealIp,
        _ => ForwardedHeader::Custom(HeaderName::from_static("x-client-ip")),
    }
}

/// `bytes` as a header value: control characters (which a value cannot hold) become spaces.
fn value(bytes: &[u8]) -> HeaderValue {
    let clean: Vec<u8> = bytes
        .iter()
        .map(|&b| {
            if (b < 0x20 && b != b'\t') || b == 0x7f {
                b' '
            } else {
                b
            }
        })
        .collect();
    HeaderValue::from_bytes(&clean).expect("control characters were replaced")
}

fn headers_with(name: &HeaderName, lines: &[HeaderValue]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in lines {
        headers.append(name.clone(), line.clone());
    }
    headers
}

/// Rule 3, on the listed hops: the result, and the hop the walk stopped at (`None` if it ran
/// past the left-most one).
fn walk(trusted: &TrustedProxies, peer: IpAddr, hops: &[Hop]) -> (IpAddr, Option<Hop>) {
    let mut reached = peer;
    for hop in hops {
        match *hop {
            Hop::Addr(ip) if trusted.contains(ip) => reached = ip,
            Hop::Addr(ip) => return (ip, Some(*hop)),
            Hop::Unknown | Hop::Obfuscated | Hop::Malformed => return (reached, Some(*hop)),
        }
    }
    (reached, None)
}

fn opaque(hop: Option<&Hop>) -> bool {
    matches!(hop, Some(Hop::Unknown | Hop::Obfuscated | Hop::Malformed))
}

pub fn forwarded(data: &[u8]) {
    let [h, bits, p, rest @ ..] = data else {
        return;
    };
    let header = header_of(*h);
    let name = header.name();
    let trusted = TrustedProxies::new(
        NETS.iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, s)| s.parse::<Cidr>().expect("the palette parses")),
    );
    let peer = PEERS[usize::from(*p) % PEERS.len()];
    let canonical = peer.to_canonical();
    let (body, prefix) = match rest.iter().position(|&b| b == 0) {
        Some(zero) => (&rest[..zero], &rest[zero + 1..]),
        None => (rest, &rest[..0]),
    };
    let lines: Vec<HeaderValue> = if body.is_empty() {
        Vec::new()
    } else {
        body.split(|&b| b == b'\n').map(value).collect()
    };
    let headers = headers_with(&name, &lines);
    let resolver = ClientIpResolver::new(trusted.clone(), header.clone());
    let got = resolver.client_ip(peer, &headers);

    // 6.
    let hops: Vec<Hop> = header.hops(&headers).collect();
    if !lines.is_empty() {
        let kept = if header == ForwardedHeader::Forwarded {
            hops.iter()
                .position(|h| *h == Hop::Malformed)
                .unwrap_or(hops.len())
        } else {
            hops.len()
        };
        for variant in prefixed(&lines, prefix) {
            let more: Vec<Hop> = header.hops(&headers_with(&name, &variant)).collect();
            assert_eq!(
                more.get(..kept),
                Some(&hops[..kept]),
                "a prefix changed the hops to its right: {hops:?} became {more:?}"
            );
        }
    }
    // 2.
    if !trusted.contains(peer) {
        assert_eq!(got, canonical, "untrusted peer: headers must be ignored");
        return;
    }
    // 3.
    assert!(
        hops.iter()
            .position(|h| *h == Hop::Malformed)
            .is_none_or(|m| m + 1 == hops.len()),
        "hops end at the first malformed one: {hops:?}"
    );
    let (want, stopped_at) = walk(&trusted, canonical, &hops);
    assert_eq!(got, want, "walk over {hops:?}");
    // 4.
    assert!(
        got == canonical || hops.contains(&Hop::Addr(got)),
        "{got} is neither the peer nor a hop of {hops:?}"
    );
    if trusted.contains(got) {
        let all_trusted = hops
            .iter()
            .all(|h| matches!(h, Hop::Addr(ip) if trusted.contains(*ip)));
        let left_most = match hops.last() {
            Some(Hop::Addr(ip)) => *ip,
            _ => canonical,
        };
        let before_opaque = (got == canonical && opaque(hops.first()))
            || hops
                .iter()
                .enumerate()
                .any(|(i, h)| *h == Hop::Addr(got) && opaque(hops.get(i + 1)));
        assert!(
            (all_trusted && got == left_most) || before_opaque,
            "trusted result {got} for {hops:?}"
        );
    }
    // 5.
    let read_in_full = match stopped_at {
        None => false,
        Some(Hop::Malformed) => header != ForwardedHeader::Forwarded,
        Some(_) => true,
    };
    if read_in_full && !lines.is_empty() {
        for variant in prefixed(&lines, prefix) {
            assert_eq!(
                resolver.client_ip(peer, &headers_with(&name, &variant)),
                got,
                "a prefix changed the result"
            );
        }
    }
}

/// The lines with the client's `prefix` in front: on the first line (`prefix + "," + line`),
/// and as an extra first line.
fn prefixed(lines: &[HeaderValue], prefix: &[u8]) -> [Vec<HeaderValue>; 2] {
    let mut on_first = lines.to_vec();
    let mut first = prefix.to_vec();
    first.push(b',');
    first.extend_from_slice(lines[0].as_bytes());
    on_first[0] = value(&first);
    let mut extra = vec![value(prefix)];
    extra.extend(lines.iter().cloned());
    [on_first, extra]
}
