//! The client's address behind reverse proxies: [`ClientIpResolver`] believes a forwarding
//! header only as far as a chain of [`TrustedProxies`] vouches for it.
//!
//! A forwarding header is a list of addresses each proxy appended, the nearest on the right.
//! Anyone can write the left part: a client sends `X-Forwarded-For: 1.2.3.4` and an honest
//! proxy appends the real address after it. So the resolver starts from the connection's peer
//! and walks the header right to left while the address it has reached is a trusted proxy.
//! The first address not trusted is the client. Rules, in order:
//!
//! 1. The peer is not a trusted proxy: the peer is the client; headers are not read at all.
//! 2. Otherwise each hop of the one header you named ([`ForwardedHeader`]) is read from the
//!    right (several header lines count as one list, in order, though a quoted string never
//!    runs from one line into the next): a trusted address is skipped, the first untrusted
//!    address is the client.
//! 3. A hop that names no address (`unknown`, an obfuscated identifier, or text that is not
//!    a node) stops the walk: the client is the last trusted hop reached (the peer if it is
//!    the right-most hop), the nearest address we can still vouch for. A client never picks
//!    its own key by writing junk.
//! 4. Every hop is trusted: the left-most hop is the client.
//! 5. No header, or only empty ones: the peer.
//!
//! Returned addresses are canonical: an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) comes
//! back as the IPv4 address.
//!
//! ```
//! use std::net::IpAddr;
//! use traffik::http::forwarded::{ClientIpResolver, ForwardedHeader, TrustedProxies};
//!
//! let resolver = ClientIpResolver::new(
//!     TrustedProxies::parse(["10.0.0.0/8"])?,
//!     ForwardedHeader::XForwardedFor,
//! );
//! let mut headers = http::HeaderMap::new();
//! // The client claimed 6.6.6.6; our load balancer 10.0.0.2 saw 203.0.113.7.
//! headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2".parse()?);
//! let lb: IpAddr = "10.0.0.5".parse()?;
//! assert_eq!(resolver.client_ip(lb, &headers), "203.0.113.7".parse::<IpAddr>()?);
//! // The same header straight from the internet is ignored.
//! let direct: IpAddr = "198.51.100.9".parse()?;
//! assert_eq!(resolver.client_ip(direct, &headers), direct);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod parse;

use std::iter::Rev;
use std::net::IpAddr;
use std::str::FromStr;

use http::header::{HeaderName, HeaderValue, ValueIter};
use http::HeaderMap;

use super::ip::{Cidr, CidrListError, CidrSet};
use parse::{ForwardedLine, ListLine};

/// The proxies whose forwarding headers are believed: a set of networks.
///
/// Trust only the addresses your own proxies connect from. Trusting a network your clients
/// share (or `0.0.0.0/0`) lets them choose their own key.
///
/// ```
/// use traffik::http::forwarded::TrustedProxies;
///
/// let trusted: TrustedProxies = "10.0.0.0/8, fd00::/8".parse()?;
/// assert!(trusted.contains("10.1.1.1".parse()?));
/// assert!(TrustedProxies::loopback().contains("::1".parse()?));
/// assert!(!TrustedProxies::none().contains("127.0.0.1".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: CidrSet,
}

impl TrustedProxies {
    /// Trusts no one: every request's client is its peer.
    pub fn none() -> Self {
        TrustedProxies::default()
    }

    /// Trusts these networks.
    pub fn new(nets: impl IntoIterator<Item = Cidr>) -> Self {
        TrustedProxies {
            nets: nets.into_iter().collect(),
        }
    }

    /// Parses each string as a [`Cidr`] (`"10.0.0.0/8"`, `"::1"`); the error names the first
    /// bad entry.
    pub fn parse<I, S>(list: I) -> Result<Self, CidrListError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Ok(TrustedProxies {
            nets: CidrSet::parse(list)?,
        })
    }

    /// The loopback networks `127.0.0.0/8` and `::1/128`: a proxy on the same host.
    pub fn loopback() -> Self {
        TrustedProxies::new([
            Cidr::truncating(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8),
            Cidr::host(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)),
        ])
    }

    /// The private networks of RFC 1918 (`10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`)
    /// and IPv6 unique local addresses (`fc00::/7`, RFC 4193): proxies inside your own
    /// network or cluster. Loopback is not included; add it with [`with`](Self::with) or
    /// combine with [`loopback`](Self::loopback) via [`extend`](Self::extend).
    pub fn private_networks() -> Self {
        TrustedProxies::new([
            Cidr::truncating(IpAddr::V4([10, 0, 0, 0].into()), 8),
            Cidr::truncating(IpAddr::V4([172, 16, 0, 0].into()), 12),
            Cidr::truncating(IpAddr::V4([192, 168, 0, 0].into()), 16),
            Cidr::truncating(IpAddr::V6([0xfc00, 0, 0, 0, 0, 0, 0, 0].into()), 7),
        ])
    }

    /// This set and one more network.
    pub fn with(mut self, net: Cidr) -> Self {
        self.nets.insert(net);
        self
    }

    /// Adds every network of `other`.
    pub fn extend(&mut self, other: TrustedProxies) {
        self.nets.extend(other.nets.iter().copied());
    }

    /// Whether `ip` is a trusted proxy (IPv4-mapped IPv6 as IPv4).
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.contains(ip)
    }

    /// Whether no one is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// The trusted networks.
    pub fn networks(&self) -> &CidrSet {
        &self.nets
    }
}

impl From<CidrSet> for TrustedProxies {
    fn from(nets: CidrSet) -> Self {
        TrustedProxies { nets }
    }
}

impl FromStr for TrustedProxies {
    type Err = CidrListError;

    /// A list separated by commas and/or whitespace, as in an environment variable.
    fn from_str(s: &str) -> Result<Self, CidrListError> {
        Ok(TrustedProxies { nets: s.parse()? })
    }
}

/// Which header your proxies set. Name exactly one: a resolver that believed several could be
/// steered by a client through whichever one the proxy does not overwrite.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// RFC 7239 `Forwarded`: the `for=` parameter of each element (quoted `"[2001:db8::1]:443"`,
    /// `"192.0.2.1:80"`, `unknown` and obfuscated `_name` identifiers included).
    Forwarded,
    /// `X-Forwarded-For`: comma-separated addresses (IPv4, IPv6, optionally `ip:port` or
    /// `[ipv6]:port`).
    XForwardedFor,
    /// `X-Real-IP`: normally one address, set (not appended) by the proxy. Several values are
    /// walked like `X-Forwarded-For`.
    XRealIp,
    /// Another header with `X-Forwarded-For` syntax, such as `CF-Connecting-IP` or
    /// `Fly-Client-IP`.
    Custom(HeaderName),
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

impl ForwardedHeader {
    /// The header's name.
    pub fn name(&self) -> HeaderName {
        match self {
            ForwardedHeader::Forwarded => http::header::FORWARDED,
            ForwardedHeader::XForwardedFor => X_FORWARDED_FOR,
            ForwardedHeader::XRealIp => X_REAL_IP,
            ForwardedHeader::Custom(name) => name.clone(),
        }
    }

    /// The hops this header lists in `headers`, right (nearest) to left, across all its lines
    /// (the last line first). The iterator ends after a [`Hop::Malformed`]: what lies to its
    /// left cannot be delimited reliably, and the resolver never looks past it.
    ///
    /// ```
    /// use traffik::http::forwarded::{ForwardedHeader, Hop};
    ///
    /// let mut headers = http::HeaderMap::new();
    /// headers.append("forwarded", r#"for=unknown, for="[2001:db8::7]:443""#.parse()?);
    /// headers.append("forwarded", "for=192.0.2.1;proto=https".parse()?);
    /// let hops: Vec<Hop> = ForwardedHeader::Forwarded.hops(&headers).collect();
    /// assert_eq!(
    ///     hops,
    ///     [
    ///         Hop::Addr("192.0.2.1".parse()?),
    ///         Hop::Addr("2001:db8::7".parse()?),
    ///         Hop::Unknown,
    ///     ]
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn hops<'a>(&self, headers: &'a HeaderMap) -> Hops<'a> {
        let lines = match self {
            ForwardedHeader::Forwarded => headers.get_all(http::header::FORWARDED),
            ForwardedHeader::XForwardedFor => headers.get_all(X_FORWARDED_FOR),
            ForwardedHeader::XRealIp => headers.get_all(X_REAL_IP),
            ForwardedHeader::Custom(name) => headers.get_all(name),
        };
        Hops {
            lines: lines.into_iter().rev(),
            rfc7239: matches!(self, ForwardedHeader::Forwarded),
            line: Line::None,
            ended: false,
        }
    }
}

/// One hop of a forwarding header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hop {
    /// An address (canonical: IPv4-mapped IPv6 as IPv4; any port dropped).
    Addr(IpAddr),
    /// The `unknown` identifier, or a `Forwarded` element without `for=`.
    Unknown,
    /// An RFC 7239 obfuscated identifier (`_hidden`).
    Obfuscated,
    /// Anything else: not an address, or a broken `Forwarded` element.
    Malformed,
}

/// The hops of a forwarding header, right to left; see [`ForwardedHeader::hops`].
pub struct Hops<'a> {
    lines: Rev<ValueIter<'a, HeaderValue>>,
    rfc7239: bool,
    line: Line<'a>,
    ended: bool,
}

enum Line<'a> {
    None,
    List(ListLine<'a>),
    Forwarded(ForwardedLine<'a>),
}

impl Iterator for Hops<'_> {
    type Item = Hop;

    fn next(&mut self) -> Option<Hop> {
        if self.ended {
            return None;
        }
        loop {
            let hop = match &mut self.line {
                Line::None => None,
                Line::List(l) => l.next_hop(),
                Line::Forwarded(l) => l.next_hop(),
            };
            if let Some(hop) = hop {
                self.ended = hop == Hop::Malformed;
                return Some(hop);
            }
            let Some(value) = self.lines.next() else {
                self.ended = true;
                return None;
            };
            self.line = if self.rfc7239 {
                Line::Forwarded(ForwardedLine::new(value.as_bytes()))
            } else {
                Line::List(ListLine::new(value.as_bytes()))
            };
        }
    }
}

impl std::iter::FusedIterator for Hops<'_> {}

impl std::fmt::Debug for Hops<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hops(..)")
    }
}

/// Finds a request's client address from its peer and one forwarding header, trusting the
/// header only through [`TrustedProxies`]; see the [module docs](self) for the rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIpResolver {
    trusted: TrustedProxies,
    header: ForwardedHeader,
}

impl ClientIpResolver {
    /// Believes `header` as set by `trusted` proxies.
    pub fn new(trusted: TrustedProxies, header: ForwardedHeader) -> Self {
        ClientIpResolver { trusted, header }
    }

    /// The trusted proxies.
    pub fn trusted(&self) -> &TrustedProxies {
        &self.trusted
    }

    /// The header read.
    pub fn header(&self) -> &ForwardedHeader {
        &self.header
    }

    /// The client's address for a request from `peer` with these headers (canonical:
    /// IPv4-mapped IPv6 as IPv4).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusted.contains(peer) {
            return peer;
        }
        // The nearest address vouched for so far: the peer, then each trusted hop.
        let mut reached = peer;
        for hop in self.header.hops(headers) {
            match hop {
                Hop::Addr(ip) if self.trusted.contains(ip) => reached = ip,
                Hop::Addr(ip) => return ip,
                Hop::Unknown | Hop::Obfuscated | Hop::Malformed => return reached,
            }
        }
        reached
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(name: &str, lines: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        let name: HeaderName = name.parse().unwrap();
        for l in lines {
            h.append(name.clone(), HeaderValue::from_bytes(l).unwrap());
        }
        h
    }

    fn xff(trusted: &str) -> ClientIpResolver {
        ClientIpResolver::new(trusted.parse().unwrap(), ForwardedHeader::XForwardedFor)
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_the_headers() {
        let r = xff("10.0.0.0/8");
        let h = headers("x-forwarded-for", &[b"1.1.1.1, 10.0.0.1"]);
        assert_eq!(r.client_ip(ip("8.8.8.8"), &h), ip("8.8.8.8"));
        assert_eq!(r.client_ip(ip("::ffff:8.8.8.8"), &h), ip("8.8.8.8"));
        let none = ClientIpResolver::new(TrustedProxies::none(), ForwardedHeader::XForwardedFor);
        assert_eq!(none.client_ip(ip("127.0.0.1"), &h), ip("127.0.0.1"));
    }

    #[test]
    fn trusted_hops_are_skipped_and_the_first_untrusted_one_is_the_client() {
        let r = xff("10.0.0.0/8, 192.168.0.0/16");
        let h = headers("x-forwarded-for", &[b"6.6.6.6, 203.0.113.7, 192.168.1.1"]);
        assert_eq!(r.client_ip(ip("10.0.0.1"), &h), ip("203.0.113.7"));
        // Several lines are one list, in order: the last line is nearest.
        let h = headers(
            "x-forwarded-for",
            &[b"6.6.6.6", b"203.0.113.7", b"10.1.1.1, 192.168.1.1"],
        );
        assert_eq!(r.client_ip(ip("::ffff:10.0.0.1"), &h), ip("203.0.113.7"));
    }

    #[test]
    fn a_hop_naming_no_address_stops_at_the_last_trusted_hop() {
        let r = xff("10.0.0.0/8");
        let h = headers("x-forwarded-for", &[b"1.1.1.1, unknown, 10.0.0.9"]);
        assert_eq!(r.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.9"));
        let h = headers("x-forwarded-for", &[b"1.1.1.1, garbage"]);
        assert_eq!(r.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.1"));
        let h = headers("x-forwarded-for", &[b"1.1.1.1", b"\xff\xfe"]);
        assert_eq!(r.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.1"));
    }

    #[test]
    fn all_trusted_gives_the_left_most_hop_and_no_header_the_peer() {
        let r = xff("10.0.0.0/8");
        let h = headers("x-forwarded-for", &[b"10.0.0.7, 10.0.0.8"]);
        assert_eq!(r.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.7"));
        assert_eq!(
            r.client_ip(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        let h = headers("x-forwarded-for", &[b"", b" , "]);
        assert_eq!(r.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.1"));
    }

    #[test]
    fn only_the_named_header_counts() {
        let r = xff("10.0.0.0/8");
        let mut h = headers("x-real-ip", &[b"9.9.9.9"]);
        h.append("forwarded", HeaderValue::from_static("for=8.8.8.8"));
        assert_eq!(r.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.1"));
        let real = ClientIpResolver::new(TrustedProxies::loopback(), ForwardedHeader::XRealIp);
        assert_eq!(real.client_ip(ip("127.0.0.1"), &h), ip("9.9.9.9"));
        let fwd = ClientIpResolver::new(TrustedProxies::loopback(), ForwardedHeader::Forwarded);
        assert_eq!(fwd.client_ip(ip("::1"), &h), ip("8.8.8.8"));
        let cf = ClientIpResolver::new(
            TrustedProxies::loopback(),
            ForwardedHeader::Custom(HeaderName::from_static("cf-connecting-ip")),
        );
        let h = headers("cf-connecting-ip", &[b"2001:db8::5"]);
        assert_eq!(cf.client_ip(ip("127.0.0.1"), &h), ip("2001:db8::5"));
        assert_eq!(cf.header().name(), "cf-connecting-ip");
    }

    #[test]
    fn rfc7239_quoting_ports_and_obfuscation() {
        let r = ClientIpResolver::new("10.0.0.0/8".parse().unwrap(), ForwardedHeader::Forwarded);
        let h = headers(
            "forwarded",
            &[br#"for="[2001:db8:cafe::17]:4711";proto=https, for="10.0.0.3:80""#],
        );
        assert_eq!(r.client_ip(ip("10.0.0.1"), &h), ip("2001:db8:cafe::17"));
        let h = headers(
            "forwarded",
            &[br#"for=1.1.1.1, for="_hidden", for=10.0.0.3"#],
        );
        assert_eq!(r.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.3"));
        let h = headers("forwarded", &[br#"for="[::ffff:203.0.113.9]""#]);
        assert_eq!(r.client_ip(ip("10.0.0.1"), &h), ip("203.0.113.9"));
    }

    #[test]
    fn presets_and_lists() {
        let p = TrustedProxies::private_networks();
        for inside in [
            "10.1.1.1",
            "172.31.255.255",
            "192.168.0.1",
            "fd12::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(p.contains(ip(inside)), "{inside}");
        }
        for outside in ["172.32.0.1", "127.0.0.1", "8.8.8.8", "fe80::1"] {
            assert!(!p.contains(ip(outside)), "{outside}");
        }
        let mut both = TrustedProxies::loopback().with("203.0.113.0/24".parse().unwrap());
        both.extend(TrustedProxies::private_networks());
        assert!(both.contains(ip("127.0.0.1")) && both.contains(ip("10.0.0.1")));
        assert!(both.contains(ip("203.0.113.200")));
        assert_eq!(both.networks().iter().count(), 7);
        let e = TrustedProxies::parse(["10.0.0.0/8", "10.0.0.1/8"]).unwrap_err();
        assert_eq!(e.index, 1);
        assert!(TrustedProxies::none().is_empty());
    }
}
