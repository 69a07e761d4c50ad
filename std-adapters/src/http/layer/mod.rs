//! The tower [`Layer`](tower_layer::Layer): [`RateLimitLayer`] wraps a service in
//! [`RateLimit`], which enforces a list of [`Policy`]s on every request.
//!
//! The data path of a request:
//!
//! 1. the layer-wide bypass rule, if it matches, passes the request straight on;
//! 2. the policies whose [`Rule`] matches apply, each with its key (a missing key is rejected,
//!    shared or skipped as the policy says; an exempt request skips the policy);
//! 3. one policy: a single `check`; several (or one charged by outcome): look at all, deny if
//!    any has too little left, then charge each, all or nothing (the exact guarantee under
//!    concurrency is below);
//! 4. a denial is 429 with `Retry-After`, the `RateLimit` headers and a problem+json body;
//!    an admission passes the request on with [`RateLimitInfo`] in its extensions and adds
//!    the headers to the response; policies charged by outcome are charged when the response
//!    head is ready.
//!
//! When every limiter answers on the spot (`check_now`/`peek_now`, as the in-process table
//! does) and every key is extracted at once, the request costs no boxed future and no
//! allocation besides the header values; otherwise the rest of the request runs in one boxed
//! future.
//!
//! **Concurrency.** No policy charged before the handler ever admits more than its limiter
//! allows: every request let through passed a charging `check` on each of them. A denied
//! request charges nothing when its keys do not change between its look and its checks; if
//! another request charges one of them meanwhile (or time refills a key whose look came up
//! short), the policies it had already charged keep that charge (at most its cost each), which
//! can only make the limits stricter. A policy charged by outcome bounds the outcomes it counts:
//! requests on one key in flight at the same time all pass its look, and only the outcomes
//! that still fit are charged (sequential requests are bounded exactly).
//!
//! **Stacking.** Policies are all-or-nothing within one layer only. Two layers stacked (say a
//! service-wide one and a stricter one on some routes) decide separately, the outer first: a
//! request the inner layer denies has been charged by the outer one. Their headers combine
//! (each layer adds its `RateLimit` members as another field line, which is the same list)
//! and so does [`RateLimitInfo`].
//!
//! ```
//! use axum::{routing::get, Router};
//! use traffik::http::{Extracted, HttpKey, MissingKey, Policy, RateLimitLayer, Rule};
//!
//! let by_client = |parts: &http::request::Parts| match parts.headers.get("x-client") {
//!     Some(v) => Extracted::Key(HttpKey::from_bytes(v.as_bytes())),
//!     None => Extracted::Missing(MissingKey::new("no x-client header")),
//! };
//! let layer = RateLimitLayer::builder()
//!     .policy(Policy::in_process("burst", "10/s")?.key(by_client))
//!     .policy(Policy::in_process("daily", "1000/day")?.key(by_client))
//!     .bypass(Rule::path("/health"))
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .route("/health", get(|| async { "ok" }))
//!     .layer(layer);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod future;
mod gate;
mod service;

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use http::Response;
use traffik_core::AsyncLimiter;

pub use future::ResponseFuture;
pub use service::RateLimit;

use super::policy::{MissingKeyOutcome, Policy};
use super::response::{
    join_policy_items, BackendErrorOutcome, Denial, DenyBody, DenyHook, HeaderOptions,
};
use super::rules::Rule;

#[allow(unused_imports)] // for rustdoc links
use super::response::RateLimitInfo;

/// Why a layer could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// No policy was given.
    #[error("a rate-limit layer needs at least one policy")]
    NoPolicies,
    /// Two policies have the same name (the headers could not tell them apart).
    #[error("two policies are called {0:?}")]
    DuplicateName(String),
    /// A policy has no key extractor.
    #[error("policy {0:?} has no key extractor: call .key(...) or .global()")]
    NoKeyExtractor(String),
    /// A policy rejects missing keys with a status that is not a client error.
    #[error("policy {policy:?} rejects missing keys with {status}, which is not a 4xx status")]
    RejectStatus {
        /// The policy.
        policy: String,
        /// The status given.
        status: http::StatusCode,
    },
}

/// What every clone of a layer and its services share.
pub(crate) struct Shared<L> {
    pub policies: Box<[Policy<L>]>,
    pub bypass: Option<Rule>,
    pub headers: HeaderOptions,
    pub on_denied: Option<DenyHook>,
    pub on_error: BackendErrorOutcome,
    pub quota_info: bool,
    /// The `RateLimit-Policy` value listing every policy, built once (`None` only if it could
    /// not be, which validated names rule out; the list is then joined per response).
    pub policy_list: Option<http::HeaderValue>,
}

impl<L> Shared<L> {
    /// The `RateLimit-Policy` value of a response naming `n` policies: prebuilt when they are
    /// all of the layer's (the items a request holds are distinct and in policy order).
    #[inline]
    pub(crate) fn policy_list_for(&self, n: usize) -> Option<&http::HeaderValue> {
        if n == self.policies.len() {
            self.policy_list.as_ref()
        } else {
            None
        }
    }

    #[inline]
    pub(crate) fn fail_open(&self) -> bool {
        matches!(self.on_error, BackendErrorOutcome::Allow)
    }
}

/// Tells the world a limiter call failed (a `tracing` warning with feature `tracing`), whatever
/// the outcome does about it: a fail-open layer must not fail silently.
#[allow(unused_variables)]
pub(crate) fn report_failure(policy: &str, error: &dyn traffik_core::LimiterError, when: &str) {
    #[cfg(feature = "tracing")]
    if !matches!(
        error.kind(),
        traffik_core::ErrorKind::InsufficientCapacity { .. }
    ) {
        tracing::warn!(
            target: "traffik::http",
            policy,
            kind = ?error.kind(),
            error = %error,
            "rate limiter failed {when}"
        );
    }
}

/// The tower layer that rate-limits HTTP requests by a list of [`Policy`]s. Cheap to clone
/// (the configuration is shared); made by [`RateLimitLayer::builder`].
pub struct RateLimitLayer<L> {
    shared: Arc<Shared<L>>,
}

impl<L> Clone for RateLimitLayer<L> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<L> fmt::Debug for RateLimitLayer<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("policies", &self.shared.policies)
            .field("bypass", &self.shared.bypass)
            .field("headers", &self.shared.headers)
            .field("on_error", &self.shared.on_error)
            .finish_non_exhaustive()
    }
}

impl<L: AsyncLimiter<[u8]>> RateLimitLayer<L> {
    /// A builder with no policies, the IETF headers on every response, no legacy headers,
    /// 503 when a limiter fails, and [`RateLimitInfo`] in request extensions.
    pub fn builder() -> RateLimitLayerBuilder<L> {
        RateLimitLayerBuilder {
            policies: Vec::new(),
            bypass: None,
            headers: HeaderOptions::default(),
            on_denied: None,
            on_error: BackendErrorOutcome::default(),
            quota_info: true,
        }
    }

    /// The policies, in the order they are checked.
    pub fn policies(&self) -> &[Policy<L>] {
        &self.shared.policies
    }
}

impl<S, L> tower_layer::Layer<S> for RateLimitLayer<L> {
    type Service = RateLimit<S, L>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, Arc::clone(&self.shared))
    }
}

/// Configures a [`RateLimitLayer`]; [`build`](Self::build) checks the configuration.
pub struct RateLimitLayerBuilder<L> {
    policies: Vec<Policy<L>>,
    bypass: Option<Rule>,
    headers: HeaderOptions,
    on_denied: Option<DenyHook>,
    on_error: BackendErrorOutcome,
    quota_info: bool,
}

impl<L> fmt::Debug for RateLimitLayerBuilder<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayerBuilder")
            .field("policies", &self.policies)
            .field("bypass", &self.bypass)
            .field("headers", &self.headers)
            .field("on_error", &self.on_error)
            .field("quota_info", &self.quota_info)
            .finish_non_exhaustive()
    }
}

impl<L: AsyncLimiter<[u8]>> RateLimitLayerBuilder<L> {
    /// Adds a policy. Policies are checked in the order they are added, and listed in that
    /// order in the headers.
    pub fn policy(mut self, policy: Policy<L>) -> Self {
        self.policies.push(policy);
        self
    }

    /// Requests matching `rule` skip the layer entirely (no check, no headers).
    pub fn bypass(mut self, rule: Rule) -> Self {
        self.bypass = Some(rule);
        self
    }

    /// Which headers to write.
    pub fn headers(mut self, options: HeaderOptions) -> Self {
        self.headers = options;
        self
    }

    /// Whether allowed responses carry the rate-limit headers (default true; denials always
    /// do).
    pub fn headers_on_allowed(mut self, on: bool) -> Self {
        self.headers.on_allowed = on;
        self
    }

    /// Whether to write the legacy `X-RateLimit-Limit/Remaining/Reset` headers (default
    /// false).
    pub fn legacy_headers(mut self, on: bool) -> Self {
        self.headers.legacy = on;
        self
    }

    /// Whether to write the IETF `RateLimit` and `RateLimit-Policy` headers (default true).
    pub fn ietf_headers(mut self, on: bool) -> Self {
        self.headers.ietf = on;
        self
    }

    /// Builds denials with `f` instead of
    /// [`too_many_requests`](super::response::too_many_requests). The layer then adds
    /// `Retry-After` and the rate-limit headers the response does not already have.
    ///
    /// ```
    /// use traffik::http::response::{too_many_requests, Denial};
    /// use traffik::http::{Policy, RateLimitLayer};
    ///
    /// let layer = RateLimitLayer::builder()
    ///     .policy(Policy::in_process("burst", "10/s")?.global())
    ///     // The default problem+json, with a header of our own.
    ///     .on_denied(|d: &Denial<'_>| {
    ///         let mut res = too_many_requests(d);
    ///         res.headers_mut().insert("x-denied-by", http::HeaderValue::from_static("traffik"));
    ///         res
    ///     })
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_denied<F>(mut self, f: F) -> Self
    where
        F: Fn(&Denial<'_>) -> Response<DenyBody> + Send + Sync + 'static,
    {
        self.on_denied = Some(Arc::new(f));
        self
    }

    /// What to do when a limiter call fails (default: 503 with `Retry-After: 1`).
    pub fn on_backend_error(mut self, outcome: BackendErrorOutcome) -> Self {
        self.on_error = outcome;
        self
    }

    /// Whether to put [`RateLimitInfo`] in admitted requests' extensions (default true).
    pub fn quota_info(mut self, on: bool) -> Self {
        self.quota_info = on;
        self
    }

    /// The layer.
    ///
    /// # Errors
    ///
    /// [`LayerError::NoPolicies`], [`LayerError::DuplicateName`],
    /// [`LayerError::NoKeyExtractor`], or [`LayerError::RejectStatus`] for a missing-key
    /// status outside 400-499.
    pub fn build(self) -> Result<RateLimitLayer<L>, LayerError> {
        if self.policies.is_empty() {
            return Err(LayerError::NoPolicies);
        }
        let mut names = HashSet::new();
        for p in &self.policies {
            if !names.insert(&*p.name) {
                return Err(LayerError::DuplicateName(p.name.to_string()));
            }
            if p.key.is_none() {
                return Err(LayerError::NoKeyExtractor(p.name.to_string()));
            }
            if let MissingKeyOutcome::Reject(status) = p.missing {
                if !status.is_client_error() {
                    return Err(LayerError::RejectStatus {
                        policy: p.name.to_string(),
                        status,
                    });
                }
            }
        }
        let policy_list = join_policy_items(self.policies.iter().map(|p| &p.policy_item));
        Ok(RateLimitLayer {
            shared: Arc::new(Shared {
                policies: self.policies.into_boxed_slice(),
                bypass: self.bypass,
                headers: self.headers,
                on_denied: self.on_denied,
                on_error: self.on_error,
                quota_info: self.quota_info,
                policy_list,
            }),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::http::{Extracted, HttpKey};
    use crate::RateLimiter;

    fn p(name: &str) -> Policy<RateLimiter<[u8]>> {
        Policy::in_process(name, "10/s")
            .unwrap()
            .key(|_: &http::request::Parts| Extracted::Key(HttpKey::new()))
    }

    #[test]
    fn bad_configurations_are_typed_errors() {
        assert!(matches!(
            RateLimitLayer::<RateLimiter<[u8]>>::builder().build(),
            Err(LayerError::NoPolicies)
        ));
        let e = RateLimitLayer::builder()
            .policy(p("a"))
            .policy(p("a"))
            .build()
            .unwrap_err();
        assert!(matches!(e, LayerError::DuplicateName(ref n) if n == "a"));
        let e = RateLimitLayer::builder()
            .policy(Policy::in_process("a", "1/s").unwrap())
            .build()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "policy \"a\" has no key extractor: call .key(...) or .global()"
        );
        let e = RateLimitLayer::builder()
            .policy(p("a").on_missing_key(MissingKeyOutcome::Reject(http::StatusCode::OK)))
            .build()
            .unwrap_err();
        assert!(matches!(e, LayerError::RejectStatus { status, .. } if status == 200));
        let layer = RateLimitLayer::builder()
            .policy(p("a"))
            .policy(p("b").global())
            .build()
            .unwrap();
        let names: Vec<_> = layer.policies().iter().map(|p| p.name()).collect();
        assert_eq!(names, ["a", "b"]);
    }
}
