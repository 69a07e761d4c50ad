//! Which bucket a request is charged to: [`KeyExtractor`]s turn a request's head into an
//! [`HttpKey`], say it is exempt, or say the key is missing (and why).
//!
//! Keys are bytes, so every backend stores them (the in-process table by fingerprint, Redis
//! and Memcached as they are). Each built-in extractor starts its key with its own tag byte,
//! and composites length-prefix their parts, so keys from different extractors never collide.
//!
//! The built-in extractors:
//!
//! | extractor | key | missing when |
//! |---|---|---|
//! | [`PeerIp`] | the connection's peer address, grouped ([`IpGrouping`](super::IpGrouping)) | no peer address in the extensions |
//! | [`ClientIp`] | the client behind trusted proxies ([`ClientIpResolver`](super::ClientIpResolver)), grouped | no peer address |
//! | [`Header::new`] | a header's value | header absent or empty |
//! | [`Header::bearer`] | the `Authorization: Bearer` token | no bearer token |
//! | [`FromExtension`] | an identity an earlier layer inserted | extension absent |
//! | `MatchedRoute` (feature `axum`) | the axum route template | no route matched |
//! | [`RequestPath`] | the raw path | never |
//! | [`Shared`] | one constant key | never |
//! | a tuple `(A, B)` … `(A, B, C, D)` | the parts' keys joined | any part missing (unless one is exempt) |
//! | [`from_async_fn`] | whatever the future returns | the future says so |
//!
//! Built-in keys start with a tag byte below `0x20`. Closures and [`from_async_fn`] keys are
//! used as they are: start them with a printable byte (any text does) to keep them apart from
//! the built-ins in a shared limiter.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use http::request::Parts;
use smallvec::SmallVec;

mod composite;
mod header;
mod ip;
mod misc;

pub use header::Header;
pub use ip::{peer_addr, ClientIp, PeerIp};
#[cfg(feature = "axum")]
pub use misc::MatchedRoute;
pub use misc::{from_async_fn, AsyncFn, FromExtension, RequestPath, Shared};

/// The first byte of each built-in extractor's keys.
mod tag {
    pub(super) const PEER_IP: u8 = 0x01;
    pub(super) const CLIENT_IP: u8 = 0x02;
    pub(super) const HEADER: u8 = 0x03;
    pub(super) const BEARER: u8 = 0x04;
    pub(super) const EXTENSION: u8 = 0x05;
    #[cfg(feature = "axum")]
    pub(super) const ROUTE: u8 = 0x06;
    pub(super) const PATH: u8 = 0x07;
    pub(super) const COMPOSITE: u8 = 0x08;
    pub(super) const SHARED: u8 = 0x09;
}

/// A request's rate-limit key: bytes, held inline up to 32 (an IPv6 prefix, a UUID, a short
/// API key) and on the heap beyond.
///
/// ```
/// use traffik::http::HttpKey;
///
/// let key = HttpKey::from_bytes(b"tenant-7");
/// assert_eq!(key.as_bytes(), b"tenant-7");
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HttpKey(SmallVec<[u8; 32]>);

impl HttpKey {
    /// An empty key (the shared bucket of [`MissingKey`] handling uses one).
    #[inline]
    pub fn new() -> Self {
        HttpKey(SmallVec::new())
    }

    /// A key of exactly these bytes.
    #[inline]
    pub fn from_bytes(bytes: &[u8]) -> Self {
        HttpKey(SmallVec::from_slice(bytes))
    }

    /// The first `len` bytes of `buf` (`len` is at most 32), moved in whole: a fixed-size
    /// key built on the stack becomes a key without a byte-wise copy.
    #[inline]
    pub(crate) fn from_inline(buf: [u8; 32], len: usize) -> Self {
        HttpKey(SmallVec::from_buf_and_len(buf, len.min(32)))
    }

    /// Appends raw bytes (extractors write their tag byte and fixed-size fields with this).
    #[inline]
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    /// Appends one part of a composite key, prefixed with its length so that `("ab", "c")`
    /// and `("a", "bc")` give different keys.
    #[inline]
    pub fn push_part(&mut self, part: &[u8]) {
        // A part longer than u32::MAX bytes cannot come from an HTTP head; saturating keeps
        // this total anyway (the bytes still follow, so keys stay distinct by content).
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(part);
    }

    /// The key's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The number of bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the key has no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl AsRef<[u8]> for HttpKey {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for HttpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HttpKey(\"{}\")", self.0.escape_ascii())
    }
}

/// Why a request has no key, for the layer's missing-key outcome and for logs.
///
/// ```
/// use traffik::http::MissingKey;
///
/// let why = MissingKey::new("header `x-api-key` is absent");
/// assert_eq!(why.to_string(), "no rate-limit key: header `x-api-key` is absent");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingKey {
    why: Cow<'static, str>,
}

impl MissingKey {
    /// A reason, written as the end of "no rate-limit key: ...".
    pub fn new(why: impl Into<Cow<'static, str>>) -> Self {
        MissingKey { why: why.into() }
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        &self.why
    }
}

impl fmt::Display for MissingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no rate-limit key: {}", self.why)
    }
}

impl std::error::Error for MissingKey {}

/// What an extractor found for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Extracted {
    /// Charge this key.
    Key(HttpKey),
    /// The request is exempt from this policy: nothing is checked or charged.
    Exempt,
    /// No key could be found; the layer applies its missing-key outcome (reject, shared
    /// bucket or skip), never a silent 500.
    Missing(MissingKey),
}

/// An extractor's answer: at once (every built-in extractor and sync closures), or later
/// (async closures, which may look a key up elsewhere).
pub enum Extraction {
    /// The answer, with no allocation.
    Ready(Extracted),
    /// An answer still being computed.
    Pending(Pin<Box<dyn Future<Output = Extracted> + Send + 'static>>),
}

impl fmt::Debug for Extraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Extraction::Ready(e) => f.debug_tuple("Ready").field(e).finish(),
            Extraction::Pending(_) => f.write_str("Pending(..)"),
        }
    }
}

impl From<Extracted> for Extraction {
    #[inline]
    fn from(e: Extracted) -> Self {
        Extraction::Ready(e)
    }
}

/// Finds the key a request is charged to, from its head (method, URI, headers, extensions).
///
/// Implemented by the built-in extractors and by any `Fn(&Parts) -> Extracted` closure.
///
/// ```
/// use traffik::http::{Extracted, Extraction, HttpKey, KeyExtractor, MissingKey};
///
/// // A sync closure: the tenant header, or missing.
/// let tenant = |parts: &http::request::Parts| match parts.headers.get("x-tenant") {
///     Some(v) => Extracted::Key(HttpKey::from_bytes(v.as_bytes())),
///     None => Extracted::Missing(MissingKey::new("no x-tenant header")),
/// };
/// let (parts, ()) = http::Request::get("/").header("x-tenant", "t7").body(()).unwrap().into_parts();
/// assert!(matches!(
///     tenant.extract(&parts),
///     Extraction::Ready(Extracted::Key(k)) if k.as_bytes() == b"t7"
/// ));
/// ```
pub trait KeyExtractor: Send + Sync + 'static {
    /// The key for this request head.
    fn extract(&self, parts: &Parts) -> Extraction;
}

impl<F> KeyExtractor for F
where
    F: Fn(&Parts) -> Extracted + Send + Sync + 'static,
{
    #[inline]
    fn extract(&self, parts: &Parts) -> Extraction {
        Extraction::Ready(self(parts))
    }
}

impl<E: KeyExtractor + ?Sized> KeyExtractor for std::sync::Arc<E> {
    #[inline]
    fn extract(&self, parts: &Parts) -> Extraction {
        (**self).extract(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_parts_are_length_prefixed_so_boundaries_cannot_collide() {
        let mut a = HttpKey::new();
        a.push_part(b"ab");
        a.push_part(b"c");
        let mut b = HttpKey::new();
        b.push_part(b"a");
        b.push_part(b"bc");
        assert_ne!(a, b);
        assert_eq!(a.as_bytes(), b"\0\0\0\x02ab\0\0\0\x01c");
    }

    #[test]
    fn long_keys_spill_to_the_heap_unchanged() {
        let long = [7u8; 100];
        let k = HttpKey::from_bytes(&long);
        assert_eq!(k.as_bytes(), &long[..]);
        assert_eq!(k.len(), 100);
        assert!(HttpKey::new().is_empty());
        assert_eq!(
            format!("{:?}", HttpKey::from_bytes(b"a\x01")),
            "HttpKey(\"a\\x01\")"
        );
    }
}
