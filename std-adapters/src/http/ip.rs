//! IP networks ([`Cidr`], [`CidrSet`]) and how client addresses are grouped into buckets
//! ([`IpGrouping`]).
//!
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack socket reports for an IPv4
//! client) are treated as the IPv4 address everywhere: by [`Cidr::contains`] and by
//! [`IpGrouping::key`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 or IPv6 network: an address and a prefix length, such as `10.0.0.0/8` or
/// `2001:db8::/32`.
///
/// Parsing is strict about host bits: `10.0.0.1/8` is an error ([`CidrError::HostBitsSet`],
/// which names the network `10.0.0.0/8`) rather than silently widened, because such a typo in a
/// trusted-proxy list changes who is trusted. A bare address is a host route (`/32` or `/128`).
/// [`Display`](fmt::Display) writes the form [`FromStr`] reads.
///
/// ```
/// use traffik::http::ip::Cidr;
///
/// let net: Cidr = "10.0.0.0/8".parse()?;
/// assert!(net.contains("10.1.2.3".parse()?));
/// // The IPv4-mapped form of an IPv4 address is the same client.
/// assert!(net.contains("::ffff:10.1.2.3".parse()?));
/// assert_eq!(net.to_string(), "10.0.0.0/8");
/// assert_eq!("2001:db8::1".parse::<Cidr>()?.to_string(), "2001:db8::1/128");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a network could not be parsed or built. Each variant carries the whole input, so the
/// message says which entry of a list is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidrError {
    /// The input was empty (or only whitespace).
    #[error("empty network: expected an address such as `10.0.0.0/8` or `2001:db8::/32`")]
    Empty,
    /// The part before `/` is not an IPv4 or IPv6 address.
    #[error("`{input}`: `{address}` is not an IPv4 or IPv6 address")]
    BadAddress {
        /// The whole input.
        input: String,
        /// The address part.
        address: String,
    },
    /// The part after `/` is not a decimal number.
    #[error("`{input}`: the prefix length `{prefix}` after `/` is not a decimal number")]
    BadPrefix {
        /// The whole input.
        input: String,
        /// The prefix part.
        prefix: String,
    },
    /// The prefix is longer than the address family allows (32 for IPv4, 128 for IPv6).
    #[error("`{input}`: prefix /{prefix} is too long for an {family} network (at most /{max})")]
    PrefixTooLong {
        /// The whole input.
        input: String,
        /// The prefix as written.
        prefix: String,
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// The longest prefix of that family.
        max: u8,
    },
    /// The address has bits set beyond the prefix (`10.0.0.1/8`); `network` is what was
    /// probably meant.
    #[error("`{input}`: the address has bits set after the /{prefix} prefix; the network is `{network}` (or write the host as a bare address)")]
    HostBitsSet {
        /// The whole input.
        input: String,
        /// The prefix length.
        prefix: u8,
        /// The network with the host bits cleared.
        network: Cidr,
    },
}

impl Cidr {
    /// The network `addr/prefix`; errors if the prefix is too long for the family or `addr`
    /// has bits set beyond the prefix.
    ///
    /// ```
    /// use std::net::Ipv4Addr;
    /// use traffik::http::ip::Cidr;
    ///
    /// let net = Cidr::new(Ipv4Addr::new(192, 168, 0, 0).into(), 16)?;
    /// assert_eq!(net.to_string(), "192.168.0.0/16");
    /// assert!(Cidr::new(Ipv4Addr::new(192, 168, 0, 1).into(), 16).is_err());
    /// # Ok::<(), traffik::http::ip::CidrError>(())
    /// ```
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, CidrError> {
        let input = || format!("{addr}/{prefix}");
        let max = max_prefix(addr);
        if prefix > max {
            return Err(CidrError::PrefixTooLong {
                input: input(),
                prefix: prefix.to_string(),
                family: family(addr),
                max,
            });
        }
        let network = Cidr {
            addr: mask(addr, prefix),
            prefix,
        };
        if network.addr != addr {
            return Err(CidrError::HostBitsSet {
                input: input(),
                prefix,
                network,
            });
        }
        Ok(network)
    }

    /// The network of one address (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> Self {
        Cidr {
            addr,
            prefix: max_prefix(addr),
        }
    }

    /// The network `addr/prefix` with the host bits of `addr` cleared (`10.1.2.3`, 8 →
    /// `10.0.0.0/8`); the prefix is clamped to the family's length.
    pub fn truncating(addr: IpAddr, prefix: u8) -> Self {
        let prefix = prefix.min(max_prefix(addr));
        Cidr {
            addr: mask(addr, prefix),
            prefix,
        }
    }

    /// The network address (host bits all zero).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in this network. An IPv4 address and its IPv4-mapped IPv6 form
    /// (`::ffff:a.b.c.d`) are the same address: each is in an IPv4 network that holds the
    /// address, and in an IPv6 network that holds the mapped form (`::ffff:0:0/96`, `::/0`).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask(IpAddr::V4(ip), self.prefix) == IpAddr::V4(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask(IpAddr::V6(ip), self.prefix) == IpAddr::V6(net)
            }
            (IpAddr::V6(net), IpAddr::V4(ip)) => {
                mask(IpAddr::V6(ip.to_ipv6_mapped()), self.prefix) == IpAddr::V6(net)
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn family(addr: IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
}

/// `addr` with every bit after the first `prefix` cleared (`prefix` at most the family's
/// length; larger values keep every bit).
fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let keep = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & keep))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let keep = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & keep))
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Reads `address/prefix` or a bare address; surrounding whitespace is ignored.
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let input = s.trim();
        if input.is_empty() {
            return Err(CidrError::Empty);
        }
        let (address, prefix) = match input.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (input, None),
        };
        let addr: IpAddr = address.parse().map_err(|_| CidrError::BadAddress {
            input: input.to_owned(),
            address: address.to_owned(),
        })?;
        let Some(prefix) = prefix else {
            return Ok(Cidr::host(addr));
        };
        // Digits only: `u8::from_str` would also take a leading `+`.
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CidrError::BadPrefix {
                input: input.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
        let max = max_prefix(addr);
        let len = match prefix.parse::<u8>() {
            Ok(len) if len <= max => len,
            // Too many digits for a u8 is also too long for any family.
            _ => {
                return Err(CidrError::PrefixTooLong {
                    input: input.to_owned(),
                    prefix: prefix.to_owned(),
                    family: family(addr),
                    max,
                })
            }
        };
        Cidr::new(addr, len).map_err(|e| match e {
            CidrError::HostBitsSet {
                prefix, network, ..
            } => CidrError::HostBitsSet {
                input: input.to_owned(),
                prefix,
                network,
            },
            other => other,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cidr({self})")
    }
}

impl From<IpAddr> for Cidr {
    fn from(addr: IpAddr) -> Self {
        Cidr::host(addr)
    }
}

/// A set of networks, for trusted proxies and allowlists. Lists are short (a handful of
/// networks), so membership is a linear scan.
///
/// ```
/// use traffik::http::ip::CidrSet;
///
/// let set: CidrSet = "10.0.0.0/8, 192.168.0.0/16, ::1".parse()?;
/// assert!(set.contains("192.168.4.4".parse()?));
/// assert!(set.contains("::1".parse()?));
/// assert!(!set.contains("8.8.8.8".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CidrSet {
    nets: Vec<Cidr>,
}

/// A bad entry in a list of networks: which one (counted from 0) and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("network #{index} of the list: {source}")]
pub struct CidrListError {
    /// The entry's position in the list, from 0.
    pub index: usize,
    /// What is wrong with it.
    #[source]
    pub source: CidrError,
}

impl CidrSet {
    /// The empty set.
    pub fn new() -> Self {
        CidrSet::default()
    }

    /// Parses each string as a [`Cidr`]; the error names the first bad entry.
    pub fn parse<I, S>(list: I) -> Result<Self, CidrListError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut nets = Vec::new();
        for (index, s) in list.into_iter().enumerate() {
            nets.push(
                s.as_ref()
                    .parse()
                    .map_err(|source| CidrListError { index, source })?,
            );
        }
        Ok(CidrSet { nets })
    }

    /// Adds a network.
    pub fn insert(&mut self, net: Cidr) {
        if !self.nets.contains(&net) {
            self.nets.push(net);
        }
    }

    /// Whether any network of the set holds `ip` (see [`Cidr::contains`]).
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// Whether the set has no network.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// The networks, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = &Cidr> {
        self.nets.iter()
    }
}

impl FromIterator<Cidr> for CidrSet {
    fn from_iter<I: IntoIterator<Item = Cidr>>(iter: I) -> Self {
        let mut set = CidrSet::new();
        set.extend(iter);
        set
    }
}

impl Extend<Cidr> for CidrSet {
    fn extend<I: IntoIterator<Item = Cidr>>(&mut self, iter: I) {
        for net in iter {
            self.insert(net);
        }
    }
}

impl IntoIterator for CidrSet {
    type Item = Cidr;
    type IntoIter = std::vec::IntoIter<Cidr>;

    fn into_iter(self) -> Self::IntoIter {
        self.nets.into_iter()
    }
}

impl<'a> IntoIterator for &'a CidrSet {
    type Item = Cidr;
    type IntoIter = std::iter::Copied<std::slice::Iter<'a, Cidr>>;

    fn into_iter(self) -> Self::IntoIter {
        self.nets.iter().copied()
    }
}

impl FromStr for CidrSet {
    type Err = CidrListError;

    /// Reads a list separated by commas and/or whitespace (an environment variable such as
    /// `"10.0.0.0/8, fd00::/8"`); an empty string is the empty set.
    fn from_str(s: &str) -> Result<Self, CidrListError> {
        CidrSet::parse(
            s.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|p| !p.is_empty()),
        )
    }
}

/// How client addresses are grouped into buckets: every IPv4 address in the same
/// `/v4_prefix` and every IPv6 address in the same `/v6_prefix` share one key.
///
/// The default is `/32` for IPv4 (one bucket per address) and `/64` for IPv6: an ISP hands a
/// customer a whole /64 (often a /56), so per-address IPv6 keys would let one client rotate
/// through 2^64 buckets. IPv4-mapped IPv6 addresses are grouped as IPv4.
///
/// ```
/// use traffik::http::ip::IpGrouping;
///
/// let g = IpGrouping::default();
/// let a = g.key("2001:db8:1:2::1".parse()?);
/// let b = g.key("2001:db8:1:2:ffff::9".parse()?);
/// assert_eq!(a, b); // the same /64
/// assert_ne!(g.key("10.0.0.1".parse()?), g.key("10.0.0.2".parse()?));
/// assert_eq!(g.key("::ffff:10.0.0.1".parse()?), g.key("10.0.0.1".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpGrouping {
    v4_prefix: u8,
    v6_prefix: u8,
}

/// A grouping prefix longer than its family allows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IpGroupingError {
    /// The IPv4 prefix is above 32.
    #[error("IPv4 grouping prefix /{0} is too long (at most /32)")]
    V4PrefixTooLong(u8),
    /// The IPv6 prefix is above 128.
    #[error("IPv6 grouping prefix /{0} is too long (at most /128)")]
    V6PrefixTooLong(u8),
}

impl Default for IpGrouping {
    fn default() -> Self {
        IpGrouping {
            v4_prefix: 32,
            v6_prefix: 64,
        }
    }
}

impl IpGrouping {
    /// Groups by `/v4_prefix` and `/v6_prefix` (0 puts the whole family in one bucket).
    pub fn new(v4_prefix: u8, v6_prefix: u8) -> Result<Self, IpGroupingError> {
        if v4_prefix > 32 {
            return Err(IpGroupingError::V4PrefixTooLong(v4_prefix));
        }
        if v6_prefix > 128 {
            return Err(IpGroupingError::V6PrefixTooLong(v6_prefix));
        }
        Ok(IpGrouping {
            v4_prefix,
            v6_prefix,
        })
    }

    /// One bucket per address in both families (`/32`, `/128`): only for IPv6 clients you
    /// control, see the type's docs.
    pub fn per_address() -> Self {
        IpGrouping {
            v4_prefix: 32,
            v6_prefix: 128,
        }
    }

    /// The IPv4 prefix length.
    pub fn v4_prefix(&self) -> u8 {
        self.v4_prefix
    }

    /// The IPv6 prefix length.
    pub fn v6_prefix(&self) -> u8 {
        self.v6_prefix
    }

    /// The network `ip` falls in (IPv4-mapped addresses as IPv4).
    pub fn group(&self, ip: IpAddr) -> Cidr {
        let ip = ip.to_canonical();
        let prefix = match ip {
            IpAddr::V4(_) => self.v4_prefix,
            IpAddr::V6(_) => self.v6_prefix,
        };
        Cidr::truncating(ip, prefix)
    }

    /// The key bytes of `ip`'s group: family (`4` or `6`), prefix length, then the network
    /// address (4 or 16 bytes). The prefix is part of the key so that groupings of different
    /// widths never share a bucket.
    pub fn key(&self, ip: IpAddr) -> IpGroupKey {
        IpGroupKey::of(self.group(ip))
    }
}

/// The key bytes of an address group (at most 18 bytes, held inline); see
/// [`IpGrouping::key`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpGroupKey {
    buf: [u8; 18],
    len: u8,
}

impl IpGroupKey {
    fn of(net: Cidr) -> Self {
        let mut buf = [0u8; 18];
        buf[1] = net.prefix;
        let len = match net.addr {
            IpAddr::V4(a) => {
                buf[0] = b'4';
                buf[2..6].copy_from_slice(&a.octets());
                6
            }
            IpAddr::V6(a) => {
                buf[0] = b'6';
                buf[2..18].copy_from_slice(&a.octets());
                18
            }
        };
        IpGroupKey { buf, len }
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

impl AsRef<[u8]> for IpGroupKey {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for IpGroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IpGroupKey(\"{}\")", self.as_bytes().escape_ascii())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_networks_and_hosts_and_displays_them_back() {
        for s in [
            "10.0.0.0/8",
            "0.0.0.0/0",
            "192.168.1.7/32",
            "2001:db8::/32",
            "::/0",
            "::1/128",
            "::ffff:10.0.0.0/104",
        ] {
            let c: Cidr = s.parse().unwrap();
            assert_eq!(c.to_string(), s);
            assert_eq!(c.to_string().parse::<Cidr>().unwrap(), c);
        }
        assert_eq!(
            "  10.1.2.3 ".parse::<Cidr>().unwrap(),
            Cidr::host(ip("10.1.2.3"))
        );
        assert_eq!("fe80::1".parse::<Cidr>().unwrap().prefix(), 128);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!("".parse::<Cidr>(), Err(CidrError::Empty));
        assert_eq!(
            "10.0.0/8".parse::<Cidr>(),
            Err(CidrError::BadAddress {
                input: "10.0.0/8".into(),
                address: "10.0.0".into()
            })
        );
        assert_eq!(
            "10.0.0.0/+8".parse::<Cidr>(),
            Err(CidrError::BadPrefix {
                input: "10.0.0.0/+8".into(),
                prefix: "+8".into()
            })
        );
        assert!(matches!(
            "10.0.0.0/".parse::<Cidr>(),
            Err(CidrError::BadPrefix { .. })
        ));
        let e = "10.0.0.0/33".parse::<Cidr>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "`10.0.0.0/33`: prefix /33 is too long for an IPv4 network (at most /32)"
        );
        assert!(matches!(
            "::/129".parse::<Cidr>(),
            Err(CidrError::PrefixTooLong { max: 128, .. })
        ));
        assert!(matches!(
            "::/99999999999999999999".parse::<Cidr>(),
            Err(CidrError::PrefixTooLong { max: 128, .. })
        ));
        let e = "10.0.0.1/8".parse::<Cidr>().unwrap_err();
        assert_eq!(
            e,
            CidrError::HostBitsSet {
                input: "10.0.0.1/8".into(),
                prefix: 8,
                network: "10.0.0.0/8".parse().unwrap()
            }
        );
        assert_eq!(
            e.to_string(),
            "`10.0.0.1/8`: the address has bits set after the /8 prefix; the network is `10.0.0.0/8` (or write the host as a bare address)"
        );
        assert!(matches!(
            "2001:db8::1/32".parse::<Cidr>(),
            Err(CidrError::HostBitsSet { prefix: 32, .. })
        ));
        assert!(matches!(
            "fe80::1%eth0".parse::<Cidr>(),
            Err(CidrError::BadAddress { .. })
        ));
    }

    #[test]
    fn contains_treats_mapped_ipv6_as_ipv4() {
        let v4: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(v4.contains(ip("10.255.255.255")));
        assert!(!v4.contains(ip("11.0.0.0")));
        assert!(v4.contains(ip("::ffff:10.0.0.1")));
        assert!(!v4.contains(ip("::ffff:11.0.0.1")));
        assert!(!v4.contains(ip("::a00:1"))); // IPv4-compatible, not mapped: IPv6
        let mapped: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert!(mapped.contains(ip("10.9.9.9")));
        assert!(!mapped.contains(ip("11.9.9.9")));
        let all6: Cidr = "::/0".parse().unwrap();
        assert!(all6.contains(ip("2001:db8::1")));
        assert!(all6.contains(ip("1.2.3.4")));
        let all4: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all4.contains(ip("1.2.3.4")));
        assert!(!all4.contains(ip("2001:db8::1")));
        let doc: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(doc.contains(ip("2001:db8:ffff::1")));
        assert!(!doc.contains(ip("2001:db9::1")));
        let host = Cidr::host(ip("192.0.2.1"));
        assert!(host.contains(ip("192.0.2.1")));
        assert!(!host.contains(ip("192.0.2.2")));
    }

    #[test]
    fn sets_parse_lists_and_name_the_bad_entry() {
        let set: CidrSet = "10.0.0.0/8,  ::1\t192.168.0.0/16".parse().unwrap();
        assert_eq!(set.iter().count(), 3);
        assert!(set.contains(ip("::ffff:192.168.3.3")));
        assert!("".parse::<CidrSet>().unwrap().is_empty());
        let e = CidrSet::parse(["10.0.0.0/8", "bogus"]).unwrap_err();
        assert_eq!(e.index, 1);
        assert_eq!(
            e.to_string(),
            "network #1 of the list: `bogus`: `bogus` is not an IPv4 or IPv6 address"
        );
        let dup: CidrSet = [Cidr::host(ip("::1")), Cidr::host(ip("::1"))]
            .into_iter()
            .collect();
        assert_eq!(dup.iter().count(), 1);
    }

    #[test]
    fn grouping_keys() {
        let g = IpGrouping::default();
        assert_eq!((g.v4_prefix(), g.v6_prefix()), (32, 64));
        assert_eq!(
            g.key(ip("10.1.2.3")).as_bytes(),
            &[b'4', 32, 10, 1, 2, 3][..]
        );
        assert_eq!(g.key(ip("::ffff:10.1.2.3")), g.key(ip("10.1.2.3")));
        let k = g.key(ip("2001:db8:0:1:aaaa:bbbb:cccc:dddd"));
        let mut want = vec![b'6', 64];
        want.extend_from_slice(&ip6_octets("2001:db8:0:1::"));
        assert_eq!(k.as_bytes(), &want[..]);
        assert_eq!(k, g.key(ip("2001:db8:0:1::9")));
        assert_ne!(k, g.key(ip("2001:db8:0:2::9")));
        assert_eq!(
            g.group(ip("2001:db8:0:1:aaaa::1")).to_string(),
            "2001:db8:0:1::/64"
        );

        let g24 = IpGrouping::new(24, 48).unwrap();
        assert_eq!(g24.key(ip("10.1.2.3")), g24.key(ip("10.1.2.200")));
        assert_ne!(g24.key(ip("10.1.2.3")), g24.key(ip("10.1.3.3")));
        // Different widths never share a bucket, even for the same network address.
        assert_ne!(g24.key(ip("10.1.2.0")), g.key(ip("10.1.2.0")));
        let zero = IpGrouping::new(0, 0).unwrap();
        assert_eq!(zero.key(ip("1.2.3.4")), zero.key(ip("200.1.1.1")));
        assert_ne!(zero.key(ip("1.2.3.4")), zero.key(ip("2001:db8::1")));
        let each = IpGrouping::per_address();
        assert_ne!(each.key(ip("2001:db8::1")), each.key(ip("2001:db8::2")));

        assert_eq!(
            IpGrouping::new(33, 64),
            Err(IpGroupingError::V4PrefixTooLong(33))
        );
        assert_eq!(
            IpGrouping::new(32, 129).unwrap_err().to_string(),
            "IPv6 grouping prefix /129 is too long (at most /128)"
        );
    }

    fn ip6_octets(s: &str) -> [u8; 16] {
        s.parse::<Ipv6Addr>().unwrap().octets()
    }
}
