//! Grouping addresses into buckets.

use std::fmt;
use std::net::IpAddr;

use super::Cidr;

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
    /// address's bytes that the prefix covers (`ceil(prefix / 8)` of them: the rest are zero,
    /// so leaving them out loses nothing and makes keys shorter to hash: 6 bytes for an IPv4
    /// address, 10 for an IPv6 /64). The prefix is part of the key so that groupings of
    /// different widths never share a bucket.
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
        match net.addr {
            IpAddr::V4(a) => {
                buf[0] = b'4';
                buf[2..6].copy_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                buf[0] = b'6';
                buf[2..18].copy_from_slice(&a.octets());
            }
        }
        // The prefix is at most 128 (`Cidr` clamps it), so this is at most 18.
        let len = 2 + net.prefix.div_ceil(8);
        IpGroupKey { buf, len }
    }

    /// The whole buffer (the bytes past [`as_bytes`](Self::as_bytes) are zero), for copying
    /// at a fixed size.
    pub(crate) fn raw(&self) -> &[u8; 18] {
        &self.buf
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

    use std::net::Ipv6Addr;

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
        want.extend_from_slice(&ip6_octets("2001:db8:0:1::")[..8]);
        assert_eq!(k.as_bytes(), &want[..]);
        assert_eq!(
            IpGrouping::new(20, 128)
                .unwrap()
                .key(ip("10.1.255.3"))
                .as_bytes(),
            &[b'4', 20, 10, 1, 0xf0][..]
        );
        assert_eq!(
            IpGrouping::per_address().key(ip("::1")).as_bytes().len(),
            18
        );
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
