//! HTTP and WebSocket throttling for tower, hyper and axum (feature `tower`; the axum
//! extractors and the WebSocket helper need feature `axum`).
//!
//! The layer asks any [`AsyncLimiter`](crate::AsyncLimiter) over byte keys: an in-process
//! `RateLimiter<[u8]>`, Redis, Memcached, or a `Failover` of them. The data path of a request:
//! pick the policies whose rules match → extract each policy's key ([`key`]) → check every
//! policy all-or-nothing → pass the request on with the quota in its extensions, or answer 429
//! with the IETF `RateLimit` headers and a problem+json body.

pub mod forwarded;
pub mod ip;
pub mod key;
pub mod layer;
pub mod policy;
pub mod response;
pub mod rules;
#[cfg(any(feature = "axum", feature = "tungstenite"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "axum", feature = "tungstenite"))))]
pub mod ws;

pub use forwarded::{ClientIpResolver, ForwardedHeader, Hop, Hops, TrustedProxies};
pub use ip::{Cidr, CidrError, CidrListError, CidrSet, IpGroupKey, IpGrouping, IpGroupingError};
#[cfg(feature = "axum")]
pub use key::MatchedRoute;
pub use key::{
    from_async_fn, peer_addr, AsyncFn, ClientIp, Extracted, Extraction, FromExtension, Header,
    HttpKey, KeyExtractor, MissingKey, Path, PeerIp, Shared,
};
pub use layer::{LayerError, RateLimit, RateLimitLayer, RateLimitLayerBuilder, ResponseFuture};
pub use policy::{MissingKeyOutcome, Policy, PolicyError};
pub use response::{BackendErrorOutcome, HeaderOptions, PolicyQuota, RateLimitInfo};
pub use rules::{Rule, RuleError};
