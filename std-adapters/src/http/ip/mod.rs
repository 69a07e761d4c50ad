//! IP networks ([`Cidr`], [`CidrSet`]) and how client addresses are grouped into buckets
//! ([`IpGrouping`]).
//!
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack socket reports for an IPv4
//! client) are treated as the IPv4 address everywhere: by [`Cidr::contains`] and by
//! [`IpGrouping::key`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

mod grouping;
mod set;

pub use grouping::{IpGroupKey, IpGrouping, IpGroupingError};
pub use set::{CidrListError, CidrSet};

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
}
