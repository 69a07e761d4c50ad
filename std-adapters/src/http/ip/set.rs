//! Sets of networks.

use std::net::IpAddr;
use std::str::FromStr;

use super::{Cidr, CidrError};

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
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
}
