//! Keys from the client's address: the connection's peer ([`PeerIp`]) or the client behind
//! trusted proxies ([`ClientIp`]), grouped by [`IpGrouping`], with an optional allowlist.

use std::net::{IpAddr, SocketAddr};

use http::request::Parts;

use super::{tag, Extracted, Extraction, HttpKey, KeyExtractor, MissingKey};
use crate::http::forwarded::ClientIpResolver;
use crate::http::ip::{Cidr, CidrSet, IpGrouping};

const NO_PEER: &str = "the peer address is not in the request extensions (axum: serve with \
    `into_make_service_with_connect_info::<SocketAddr>()`; hyper: insert the connection's \
    `SocketAddr` into each request's extensions)";

/// The connection's peer address, from the request extensions: axum's
/// `ConnectInfo<SocketAddr>` (feature `axum`), else a plain [`SocketAddr`].
///
/// axum puts `ConnectInfo` there when the app is served with
/// `into_make_service_with_connect_info::<SocketAddr>()`. With hyper (or any server that does
/// not), insert the accepted connection's remote `SocketAddr` into each request's extensions
/// before the rate-limit layer, for example with `tower::util::MapRequest` or a
/// `hyper::service::service_fn` wrapper.
pub fn peer_addr(parts: &Parts) -> Option<SocketAddr> {
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) = parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(*addr);
    }
    parts.extensions.get::<SocketAddr>().copied()
}

/// The peer's IP as [`peer_addr`] finds it, read in place (the address is not copied out
/// whole first: that copy, read back field by field, stalled on store forwarding).
#[inline]
fn peer_ip(parts: &Parts) -> Option<IpAddr> {
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) = parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(addr.ip());
    }
    parts.extensions.get::<SocketAddr>().map(SocketAddr::ip)
}

/// The key of an address: exempt if allowlisted, else `tag` then the group's bytes.
fn ip_key(tag: u8, ip: IpAddr, grouping: &IpGrouping, exempt: &CidrSet) -> Extracted {
    if exempt.contains(ip) {
        return Extracted::Exempt;
    }
    // Tag and group assembled on the stack with fixed-size copies and moved into the key
    // whole: byte-wise copies of a few bytes, read back wider, stall the CPU on store
    // forwarding (measured: a third of this function's time).
    let group = grouping.key(ip);
    let mut buf = [0u8; 32];
    buf[0] = tag;
    buf[1..19].copy_from_slice(group.raw());
    Extracted::Key(HttpKey::from_inline(buf, 1 + group.as_bytes().len()))
}

/// Keys a request by the address of the connection's peer (see [`peer_addr`] for where it is
/// found), grouped by [`IpGrouping`] (by default one key per IPv4 address and per IPv6 /64).
///
/// Behind a reverse proxy every request has the proxy as its peer: use [`ClientIp`] there.
/// A request without a peer address gives [`Extracted::Missing`].
///
/// ```
/// use std::net::SocketAddr;
/// use traffik::http::{Extracted, Extraction, KeyExtractor, PeerIp};
///
/// let by_peer = PeerIp::new().exempt(["127.0.0.0/8".parse()?]);
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert("203.0.113.9:50000".parse::<SocketAddr>()?);
/// let (parts, ()) = req.into_parts();
/// assert!(matches!(by_peer.extract(&parts), Extraction::Ready(Extracted::Key(_))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct PeerIp {
    grouping: IpGrouping,
    exempt: CidrSet,
}

impl PeerIp {
    /// Keys by peer address with the default [`IpGrouping`] and no exemptions.
    pub fn new() -> Self {
        PeerIp::default()
    }

    /// Groups addresses this way instead.
    pub fn grouping(mut self, grouping: IpGrouping) -> Self {
        self.grouping = grouping;
        self
    }

    /// Requests from these networks are [`Extracted::Exempt`] (health checkers, your own
    /// services). Adds to any earlier exemptions.
    pub fn exempt(mut self, nets: impl IntoIterator<Item = Cidr>) -> Self {
        self.exempt.extend(nets);
        self
    }
}

impl KeyExtractor for PeerIp {
    fn extract(&self, parts: &Parts) -> Extraction {
        Extraction::Ready(match peer_ip(parts) {
            Some(ip) => ip_key(tag::PEER_IP, ip, &self.grouping, &self.exempt),
            None => Extracted::Missing(MissingKey::new(NO_PEER)),
        })
    }
}

/// Keys a request by its client's address as a [`ClientIpResolver`] finds it: the peer,
/// or the address a forwarding header gives when trusted proxies vouch for it. Grouped by
/// [`IpGrouping`]; allowlisted clients are exempt.
///
/// ```
/// use std::net::SocketAddr;
/// use traffik::http::{ClientIp, ClientIpResolver, ForwardedHeader, KeyExtractor, TrustedProxies};
/// use traffik::http::{Extracted, Extraction};
///
/// let by_client = ClientIp::new(ClientIpResolver::new(
///     TrustedProxies::loopback(),
///     ForwardedHeader::XForwardedFor,
/// ))
/// .exempt(["192.0.2.0/24".parse()?]);
/// let mut req = http::Request::get("/").header("x-forwarded-for", "192.0.2.7").body(())?;
/// req.extensions_mut().insert("127.0.0.1:40000".parse::<SocketAddr>()?);
/// let (parts, ()) = req.into_parts();
/// assert!(matches!(by_client.extract(&parts), Extraction::Ready(Extracted::Exempt)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct ClientIp {
    resolver: ClientIpResolver,
    grouping: IpGrouping,
    exempt: CidrSet,
}

impl ClientIp {
    /// Keys by the address `resolver` finds, with the default [`IpGrouping`].
    pub fn new(resolver: ClientIpResolver) -> Self {
        ClientIp {
            resolver,
            grouping: IpGrouping::default(),
            exempt: CidrSet::new(),
        }
    }

    /// Groups addresses this way instead.
    pub fn grouping(mut self, grouping: IpGrouping) -> Self {
        self.grouping = grouping;
        self
    }

    /// Clients (as resolved, not the peer) in these networks are [`Extracted::Exempt`].
    /// Adds to any earlier exemptions.
    pub fn exempt(mut self, nets: impl IntoIterator<Item = Cidr>) -> Self {
        self.exempt.extend(nets);
        self
    }

    /// The resolver.
    pub fn resolver(&self) -> &ClientIpResolver {
        &self.resolver
    }
}

impl KeyExtractor for ClientIp {
    fn extract(&self, parts: &Parts) -> Extraction {
        Extraction::Ready(match peer_addr(parts) {
            Some(peer) => {
                let ip = self.resolver.client_ip(peer.ip(), &parts.headers);
                ip_key(tag::CLIENT_IP, ip, &self.grouping, &self.exempt)
            }
            None => Extracted::Missing(MissingKey::new(NO_PEER)),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::http::forwarded::{ForwardedHeader, TrustedProxies};

    fn parts(peer: Option<&str>, xff: Option<&str>) -> Parts {
        let mut b = http::Request::get("/");
        if let Some(x) = xff {
            b = b.header("x-forwarded-for", x);
        }
        let mut req = b.body(()).unwrap();
        if let Some(p) = peer {
            req.extensions_mut()
                .insert(p.parse::<SocketAddr>().unwrap());
        }
        req.into_parts().0
    }

    fn key(e: Extraction) -> Extracted {
        match e {
            Extraction::Ready(x) => x,
            Extraction::Pending(_) => panic!("built-in IP extractors answer at once"),
        }
    }

    #[test]
    fn peer_ip_keys_are_tagged_grouped_and_exemptable() {
        let p = PeerIp::new();
        assert_eq!(
            key(p.extract(&parts(Some("10.1.2.3:9"), Some("6.6.6.6")))),
            Extracted::Key(HttpKey::from_bytes(&[tag::PEER_IP, b'4', 32, 10, 1, 2, 3]))
        );
        // The same /64 is one key; the port never matters.
        assert_eq!(
            key(p.extract(&parts(Some("[2001:db8::1]:1"), None))),
            key(p.extract(&parts(Some("[2001:db8::ffff]:2"), None)))
        );
        let Extracted::Missing(why) = key(p.extract(&parts(None, None))) else {
            panic!("no peer must be missing");
        };
        assert!(why.reason().contains("into_make_service_with_connect_info"));
        let ex = PeerIp::new().exempt(["10.0.0.0/8".parse().unwrap()]);
        assert_eq!(
            key(ex.extract(&parts(Some("[::ffff:10.9.9.9]:9"), None))),
            Extracted::Exempt
        );
        let per = PeerIp::new().grouping(IpGrouping::per_address());
        assert_ne!(
            key(per.extract(&parts(Some("[2001:db8::1]:1"), None))),
            key(per.extract(&parts(Some("[2001:db8::2]:1"), None)))
        );
    }

    #[test]
    #[cfg(feature = "axum")]
    fn connect_info_comes_before_a_plain_socket_addr() {
        let mut req = http::Request::new(());
        req.extensions_mut().insert(axum::extract::ConnectInfo(
            "1.1.1.1:1".parse::<SocketAddr>().unwrap(),
        ));
        req.extensions_mut()
            .insert("2.2.2.2:2".parse::<SocketAddr>().unwrap());
        let (parts, ()) = req.into_parts();
        assert_eq!(peer_addr(&parts), Some("1.1.1.1:1".parse().unwrap()));
    }

    #[test]
    fn client_ip_trusts_headers_only_from_trusted_peers() {
        let c = ClientIp::new(ClientIpResolver::new(
            TrustedProxies::loopback(),
            ForwardedHeader::XForwardedFor,
        ));
        let via_proxy = key(c.extract(&parts(Some("127.0.0.1:5"), Some("6.6.6.6, 9.9.9.9"))));
        assert_eq!(
            via_proxy,
            Extracted::Key(HttpKey::from_bytes(&[tag::CLIENT_IP, b'4', 32, 9, 9, 9, 9]))
        );
        let direct = key(c.extract(&parts(Some("9.9.9.9:5"), Some("6.6.6.6"))));
        assert_eq!(direct, via_proxy);
        // PeerIp and ClientIp keys never collide.
        assert_ne!(
            key(PeerIp::new().extract(&parts(Some("9.9.9.9:5"), None))),
            direct
        );
        let ex = c.clone().exempt(["6.0.0.0/8".parse().unwrap()]);
        assert_eq!(
            key(ex.extract(&parts(Some("127.0.0.1:5"), Some("6.6.6.6")))),
            Extracted::Exempt
        );
        // Exemption is for the resolved client, not a proxy it came through.
        let ex_proxy = c.exempt(["127.0.0.0/8".parse().unwrap()]);
        assert!(matches!(
            key(ex_proxy.extract(&parts(Some("127.0.0.1:5"), Some("6.6.6.6")))),
            Extracted::Key(_)
        ));
        assert!(matches!(
            key(ex_proxy.extract(&parts(None, Some("6.6.6.6")))),
            Extracted::Missing(_)
        ));
    }
}
