//! What a handler, a custom denial and a failed limiter are given: the quota
//! ([`RateLimitInfo`]), the denial ([`Denial`]), the failure ([`BackendFailure`]), and what to do
//! about a failure ([`BackendErrorOutcome`]).

use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::Response;
use smallvec::SmallVec;
use traffik_core::{Decision, LimiterError};

use super::DenyBody;

/// The quota of one policy for one request, as the layer saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyQuota {
    /// The policy's name.
    pub name: Arc<str>,
    /// The most cost the key can take at once when fresh.
    pub limit: u64,
    /// What is left after this request's charge (for a policy charged by outcome, what is left
    /// before the response decides whether it is charged).
    pub remaining: u64,
    /// How long until the key's quota is fully restored.
    pub reset: Duration,
}

/// The quota of every policy that applied to a request, put in the request's extensions for
/// handlers (`Extension<RateLimitInfo>` in axum, `req.extensions().get()` elsewhere).
///
/// A policy whose limiter failed (with [`BackendErrorOutcome::Allow`]) has no entry.
///
/// ```
/// use axum::Extension;
/// use traffik::http::RateLimitInfo;
///
/// // An axum handler telling the client what it has left.
/// async fn handler(Extension(info): Extension<RateLimitInfo>) -> String {
///     match info.get("burst") {
///         Some(q) => format!("{} of {} left", q.remaining, q.limit),
///         None => "unlimited".to_owned(),
///     }
/// }
/// # let _: axum::Router = axum::Router::new().route("/", axum::routing::get(handler));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RateLimitInfo {
    pub(crate) policies: SmallVec<[PolicyQuota; 2]>,
}

impl RateLimitInfo {
    /// Every applied policy, in the layer's policy order.
    pub fn policies(&self) -> &[PolicyQuota] {
        &self.policies
    }

    /// The quota of the policy called `name`.
    pub fn get(&self, name: &str) -> Option<&PolicyQuota> {
        self.policies.iter().find(|q| &*q.name == name)
    }
}

/// A request the layer refuses with 429, handed to a custom response builder
/// ([`RateLimitLayerBuilder::on_denied`](crate::http::RateLimitLayerBuilder::on_denied)).
#[derive(Debug)]
#[non_exhaustive]
pub struct Denial<'a> {
    /// The name of the policy that refused the request.
    pub policy: &'a str,
    /// Its decision (`retry_after` is the wait; zero when the cost can never be admitted).
    pub decision: Decision,
    /// What the request would have cost under that policy.
    pub cost: u64,
    /// Whether the cost is larger than the policy can ever admit at once (retrying cannot help).
    pub never_admissible: bool,
    /// Every decision the layer has for this request, by policy name, in policy order (the
    /// refusing policy's included; policies not asked before the refusal are absent).
    pub decisions: &'a [(&'a str, Decision)],
    /// The request's head.
    pub parts: &'a Parts,
}

/// A limiter call that failed, handed to [`BackendErrorOutcome::Respond`].
#[derive(Debug)]
#[non_exhaustive]
pub struct BackendFailure<'a> {
    /// The policy whose limiter failed.
    pub policy: &'a str,
    /// The limiter's error (its [`kind`](LimiterError::kind) says whether it may have charged).
    pub error: &'a dyn LimiterError,
    /// The request's head.
    pub parts: &'a Parts,
}

/// A custom response for a failed limiter call.
pub type BackendErrorHook =
    Arc<dyn Fn(&BackendFailure<'_>) -> Response<DenyBody> + Send + Sync + 'static>;

/// A custom response for a denial.
pub type DenyHook = Arc<dyn Fn(&Denial<'_>) -> Response<DenyBody> + Send + Sync + 'static>;

/// What the layer does when a limiter call fails (Redis down, table full, ...). Never a panic
/// and never a bare 500.
///
/// ```
/// use http::StatusCode;
/// use traffik::http::response::{problem, BackendFailure};
/// use traffik::http::BackendErrorOutcome;
///
/// // Fail closed with a 502 naming the error.
/// let outcome = BackendErrorOutcome::respond(|f: &BackendFailure<'_>| {
///     problem(StatusCode::BAD_GATEWAY, "about:blank", &f.error.to_string(), &[f.policy])
/// });
/// # let _ = outcome;
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum BackendErrorOutcome {
    /// Fail open: the failed policy is skipped for this request (the other policies still
    /// apply).
    Allow,
    /// Fail closed: 503 with this `Retry-After` (whole seconds, rounded up) and a problem+json
    /// body. The default, with 1 second.
    Unavailable {
        /// The `Retry-After` to send.
        retry_after: Duration,
    },
    /// Answer with this response (it receives the error itself).
    Respond(BackendErrorHook),
}

impl BackendErrorOutcome {
    /// [`BackendErrorOutcome::Respond`] from a closure.
    pub fn respond<F>(f: F) -> Self
    where
        F: Fn(&BackendFailure<'_>) -> Response<DenyBody> + Send + Sync + 'static,
    {
        BackendErrorOutcome::Respond(Arc::new(f))
    }
}

impl Default for BackendErrorOutcome {
    fn default() -> Self {
        BackendErrorOutcome::Unavailable {
            retry_after: Duration::from_secs(1),
        }
    }
}

impl std::fmt::Debug for BackendErrorOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendErrorOutcome::Allow => f.write_str("Allow"),
            BackendErrorOutcome::Unavailable { retry_after } => f
                .debug_struct("Unavailable")
                .field("retry_after", retry_after)
                .finish(),
            BackendErrorOutcome::Respond(_) => f.write_str("Respond(..)"),
        }
    }
}
