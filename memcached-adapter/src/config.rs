//! Building a [`MemcachedLimiter`]: servers, rate, algorithm, and the knobs of the client.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use traffik_core::{AlgorithmKind, AnyAlgorithm, Clock, Rate, RateParseError};

use crate::clock::SystemClock;
use crate::error::MemcachedLimiterError;
use crate::keys;
use crate::limiter::MemcachedLimiter;

/// Memcached's standard port, used when an address names none.
pub const DEFAULT_PORT: u16 = 11211;

/// Something the builder accepts as a rate: a [`Rate`], or text that parses as one
/// (`"100/minute"`, `"20 per 2 mins"`, ...; see [`Rate`]'s `FromStr`).
pub trait RateSpec {
    /// The rate, or why the text does not parse.
    fn into_rate(self) -> Result<Rate, RateParseError>;
}

impl RateSpec for Rate {
    fn into_rate(self) -> Result<Rate, RateParseError> {
        Ok(self)
    }
}

impl RateSpec for &str {
    fn into_rate(self) -> Result<Rate, RateParseError> {
        self.parse()
    }
}

impl RateSpec for String {
    fn into_rate(self) -> Result<Rate, RateParseError> {
        self.parse()
    }
}

impl RateSpec for &String {
    fn into_rate(self) -> Result<Rate, RateParseError> {
        self.parse()
    }
}

/// Configures a [`MemcachedLimiter`]; start from [`MemcachedLimiter::builder`].
#[must_use]
pub struct MemcachedLimiterBuilder {
    pub(crate) servers: Vec<String>,
    pub(crate) rate: Option<Result<Rate, RateParseError>>,
    pub(crate) algorithm: AlgorithmKind,
    pub(crate) burst: Option<u64>,
    pub(crate) prefix: String,
    pub(crate) timeout: Duration,
    pub(crate) pool_size: usize,
    pub(crate) cas_attempts: u32,
    pub(crate) clock: Arc<dyn Clock + Send + Sync>,
}

impl fmt::Debug for MemcachedLimiterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemcachedLimiterBuilder")
            .field("servers", &self.servers)
            .field("rate", &self.rate)
            .field("algorithm", &self.algorithm)
            .field("burst", &self.burst)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("pool_size", &self.pool_size)
            .field("cas_attempts", &self.cas_attempts)
            .finish_non_exhaustive()
    }
}

impl MemcachedLimiterBuilder {
    pub(crate) fn new(server: String) -> Self {
        MemcachedLimiterBuilder {
            servers: vec![server],
            rate: None,
            algorithm: AlgorithmKind::Gcra,
            burst: None,
            prefix: "traffik".into(),
            timeout: Duration::from_millis(500),
            pool_size: 8,
            cas_attempts: 64,
            clock: Arc::new(SystemClock),
        }
    }

    /// Adds a server: `host:port`, `host` (port 11211), `[v6addr]:port`, or any of these after
    /// `memcache://` or `memcached://`. Keys are spread over all servers by rendezvous hashing
    /// (see the crate docs); every process must list the same servers, in any order.
    pub fn server(mut self, address: impl Into<String>) -> Self {
        self.servers.push(address.into());
        self
    }

    /// Adds several servers (see [`server`](Self::server)).
    pub fn servers<I, S>(mut self, addresses: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.servers.extend(addresses.into_iter().map(Into::into));
        self
    }

    /// The rate: a [`Rate`] or a rate string such as `"100/minute"`. Required.
    pub fn rate(mut self, rate: impl RateSpec) -> Self {
        self.rate = Some(rate.into_rate());
        self
    }

    /// The algorithm (default GCRA).
    pub fn algorithm(mut self, algorithm: AlgorithmKind) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// The burst (GCRA) or capacity (buckets); defaults to the rate's limit. Window algorithms
    /// take none.
    pub fn burst(mut self, burst: u64) -> Self {
        self.burst = Some(burst);
        self
    }

    /// The first part of every memcached key (default `traffik`): printable ASCII without
    /// spaces, at most 64 bytes. Limiters with different rates need different prefixes.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The longest one call may take, connecting, reading, retrying and writing included
    /// (default 500 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connections kept per server (default 8). Each carries one call at a time; more calls
    /// than connections wait for one, within their timeout.
    pub fn pool_size(mut self, connections: usize) -> Self {
        self.pool_size = connections;
        self
    }

    /// How many read-decide-write rounds one check may take when other clients keep changing
    /// the key between its read and its write (default 64); then it fails with
    /// [`MemcachedLimiterError::Contention`], having written nothing.
    pub fn cas_attempts(mut self, attempts: u32) -> Self {
        self.cas_attempts = attempts;
        self
    }

    /// The clock checks read (default [`SystemClock`], Unix-epoch nanoseconds). Pass an
    /// `Arc<ManualClock>` to drive a limiter from a test.
    pub fn clock(mut self, clock: impl Clock + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the configuration and builds the limiter. Nothing connects yet: connections open
    /// on first use, so a server that is down now fails calls, not the build.
    pub fn build(self) -> Result<MemcachedLimiter, MemcachedLimiterError> {
        let cfg = |m: String| Err(MemcachedLimiterError::Config(m));
        let rate = match self.rate {
            None => return cfg("a rate is required".into()),
            Some(r) => r.map_err(MemcachedLimiterError::Rate)?,
        };
        let algorithm = AnyAlgorithm::new(self.algorithm, rate, self.burst)
            .map_err(MemcachedLimiterError::Algorithm)?;
        if !keys::valid_prefix(&self.prefix) {
            return cfg(format!(
                "prefix {:?} must be printable ASCII without spaces, at most {} bytes",
                self.prefix,
                keys::MAX_PREFIX
            ));
        }
        if self.timeout.is_zero() {
            return cfg("the timeout must be positive".into());
        }
        if self.pool_size == 0 {
            return cfg("the pool needs at least one connection per server".into());
        }
        if self.cas_attempts == 0 {
            return cfg("at least one compare-and-swap attempt is needed".into());
        }
        let mut servers = Vec::with_capacity(self.servers.len());
        for raw in &self.servers {
            let addr = parse_server(raw).map_err(MemcachedLimiterError::Config)?;
            if servers.contains(&addr) {
                return cfg(format!("server {addr} is listed twice"));
            }
            servers.push(addr);
        }
        Ok(MemcachedLimiter::from_parts(
            servers,
            algorithm,
            self.prefix,
            self.timeout,
            self.pool_size,
            self.cas_attempts,
            self.clock,
        ))
    }
}

/// Normalises a server address to `host:port` (IPv6 hosts in brackets).
pub(crate) fn parse_server(raw: &str) -> Result<String, String> {
    let text = raw.trim();
    let rest = match text.split_once("://") {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("memcache")
                || scheme.eq_ignore_ascii_case("memcached") =>
        {
            rest.strip_suffix('/').unwrap_or(rest)
        }
        Some((scheme, _)) => {
            return Err(format!(
                "server {raw:?}: unknown scheme {scheme:?} (use memcache:// or none)"
            ))
        }
        None => text,
    };
    let bad = |why: &str| Err(format!("server {raw:?}: {why}"));
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            return bad("missing ']' after an IPv6 address");
        };
        // An address, and optionally a numeric scope (`%2`), the form Rust's resolver reads.
        let (address, scope) = host.split_once('%').unwrap_or((host, "0"));
        if address.is_empty()
            || !address
                .chars()
                .all(|c| c.is_ascii_hexdigit() || ":.".contains(c))
            || scope.is_empty()
            || !scope.bytes().all(|b| b.is_ascii_digit())
        {
            return bad("not an IPv6 address in brackets");
        }
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return bad("expected ':port' after ']'"),
            },
        };
        (format!("[{host}]"), port)
    } else {
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        if host.contains(':') {
            return bad("write IPv6 addresses in brackets: [::1]:11211");
        }
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
        {
            return bad("the host must be a name or an address");
        }
        (host.to_owned(), port)
    };
    let port = match port {
        None => DEFAULT_PORT,
        // Digits only: `u16::from_str` would also take a sign.
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return bad("the port must be a number from 1 to 65535"),
        },
    };
    Ok(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_are_normalised() {
        for (raw, want) in [
            ("127.0.0.1:11211", "127.0.0.1:11211"),
            ("127.0.0.1", "127.0.0.1:11211"),
            (
                "memcache://cache-1.internal:11300",
                "cache-1.internal:11300",
            ),
            ("MEMCACHED://cache_2:1/", "cache_2:1"),
            ("  localhost:5000 ", "localhost:5000"),
            ("[::1]:11211", "[::1]:11211"),
            ("memcache://[fe80::1%2]", "[fe80::1%2]:11211"),
        ] {
            assert_eq!(parse_server(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn bad_server_addresses_are_refused() {
        for raw in [
            "",
            ":11211",
            "redis://h:1",
            "h:0",
            "h:65536",
            "h:port",
            "h:+1",
            "::1",
            "[::1",
            "[::1]x",
            "[]:1",
            "[fe80::1%eth0]:1",
            "[fe80::1%]:1",
            "h h:1",
            "h/x:1",
        ] {
            assert!(parse_server(raw).is_err(), "{raw:?} accepted");
        }
    }
}
