//! HTTP and WebSocket throttling for tower, hyper and axum (feature `tower`; the axum
//! extractors and the WebSocket helper need feature `axum`).
//!
//! The layer asks any [`AsyncLimiter`](crate::AsyncLimiter) over byte keys: an in-process
//! `RateLimiter<[u8]>`, Redis, Memcached, or a `Failover` of them. The data path of a request:
//! pick the policies whose rules match → extract each policy's key ([`key`]) → check every
//! policy all-or-nothing → pass the request on with the quota in its extensions, or answer 429
//! with the IETF `RateLimit` headers and a problem+json body.
//!
//! An axum app with a per-address limit everywhere, a per-API-key limit on the API and a login
//! route charged only when the login fails (the README's example, compiled here):
//!
//! ```no_run
//! # #[cfg(feature = "axum")]
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! use std::net::SocketAddr;
//! use axum::{routing::get, Router};
//! use http::StatusCode;
//! use traffik::http::{Header, MissingKeyOutcome, PeerIp, Policy, RateLimitLayer, Rule};
//!
//! let layer = RateLimitLayer::builder()
//!     // Every route: 100 a minute per client address (IPv6 grouped by /64).
//!     .policy(Policy::in_process("per-ip", "100/minute")?.key(PeerIp::new()))
//!     // The API: 1000 an hour per API key; no key is a 401 before any handler runs.
//!     .policy(
//!         Policy::in_process("per-key", "1000/hour")?
//!             .key(Header::try_new("x-api-key")?)
//!             .rule(Rule::prefix("/api"))
//!             .on_missing_key(MissingKeyOutcome::Reject(StatusCode::UNAUTHORIZED)),
//!     )
//!     // Logins: only failures count.
//!     .policy(
//!         Policy::in_process("login", "5 per 15 minutes")?
//!             .key(PeerIp::new())
//!             .rule(Rule::path("/login"))
//!             .charge_if(|res| res.status == StatusCode::UNAUTHORIZED),
//!     )
//!     .bypass(Rule::path("/health"))
//!     .build()?;
//!
//! let app = Router::new().route("/api/items", get(|| async { "[]" })).layer(layer);
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
//! // `ConnectInfo` gives the layer each request's peer address.
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(())
//! # }
//! ```

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
    HttpKey, KeyExtractor, MissingKey, PeerIp, RequestPath, Shared,
};
pub use layer::{LayerError, RateLimit, RateLimitLayer, RateLimitLayerBuilder, ResponseFuture};
pub use policy::{MissingKeyOutcome, Policy, PolicyError};
pub use response::{BackendErrorOutcome, HeaderOptions, PolicyQuota, RateLimitInfo};
pub use rules::{Rule, RuleError};
