//! What the layer answers and adds: the IETF `RateLimit` / `RateLimit-Policy` headers, the
//! `Retry-After` header, problem+json denials (RFC 9457), the optional legacy `X-RateLimit-*`
//! headers, and the quota a handler can read ([`RateLimitInfo`]).
//!
//! The header syntax follows draft-ietf-httpapi-ratelimit-headers (structured-field lists):
//!
//! ```text
//! RateLimit-Policy: "burst";q=10;w=1, "daily";q=1000;w=86400
//! RateLimit: "burst";r=0;t=1, "daily";r=990;t=86400
//! ```
//!
//! * `q` is the policy rate's limit and `w` its period in seconds (rounded up).
//! * `r` is the quota units left: always an integer.
//! * `t` is in whole seconds, rounded up (never 0 for a positive wait). For the policy that
//!   denied a request it is the wait until the same request would be admitted (as
//!   `Retry-After`); for every other item it is the time until that key's quota is fully
//!   restored (nothing charged still counts), which is when `r` is back to the limit.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::request::Parts;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;
use smallvec::SmallVec;
use traffik_core::{Decision, LimiterError, Rate};

/// The `RateLimit` header (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// The `RateLimit-Policy` header (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// The legacy `X-RateLimit-Limit` header.
pub const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// The legacy `X-RateLimit-Remaining` header.
pub const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// The legacy `X-RateLimit-Reset` header (seconds from now, rounded up).
pub const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// The problem type of a rate-limit denial (IANA HTTP Problem Types registry).
pub const QUOTA_EXCEEDED_TYPE: &str =
    "https://iana.org/assignments/http-problem-types#quota-exceeded";

/// The body of every response the layer makes itself (denials and errors).
pub type DenyBody = Full<Bytes>;

/// The body of the layer's responses: the inner service's body, or the layer's own.
pub type RateLimitBody<B> = http_body_util::Either<B, DenyBody>;

/// Whole seconds in `d`, rounded up: 100 ms is 1, 1500 ms is 2, zero stays zero.
///
/// ```
/// use std::time::Duration;
/// use traffik::http::response::ceil_secs;
///
/// assert_eq!(ceil_secs(Duration::from_millis(100)), 1);
/// assert_eq!(ceil_secs(Duration::from_millis(1500)), 2);
/// assert_eq!(ceil_secs(Duration::from_secs(3)), 3);
/// assert_eq!(ceil_secs(Duration::ZERO), 0);
/// ```
#[inline]
pub fn ceil_secs(d: Duration) -> u64 {
    let whole = d.as_secs();
    if d.subsec_nanos() > 0 {
        whole.saturating_add(1)
    } else {
        whole
    }
}

/// Which rate-limit headers the layer writes.
///
/// The default writes the IETF headers on every response (allowed and denied) and no legacy
/// headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeaderOptions {
    /// `RateLimit` and `RateLimit-Policy` (default on).
    pub ietf: bool,
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` for the most
    /// constrained policy (default off).
    pub legacy: bool,
    /// Whether allowed responses carry the headers too; denials always do (default on).
    pub on_allowed: bool,
}

impl Default for HeaderOptions {
    fn default() -> Self {
        HeaderOptions {
            ietf: true,
            legacy: false,
            on_allowed: true,
        }
    }
}

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

/// One `RateLimit-Policy` list member: `"name";q=LIMIT;w=SECONDS` (the period rounded up to
/// whole seconds, as the field requires an integer).
///
/// The name must already be a valid structured-field string body (policy names are validated
/// when the policy is made).
///
/// ```
/// use traffik::http::response::policy_item;
/// use traffik::Rate;
///
/// assert_eq!(policy_item("burst", Rate::per_minute(100)), "\"burst\";q=100;w=60");
/// ```
pub fn policy_item(name: &str, rate: Rate) -> String {
    format!(
        "\"{name}\";q={};w={}",
        rate.limit(),
        ceil_secs(rate.period())
    )
}

/// Appends one `RateLimit` list member, `"name";r=REMAINING;t=SECONDS`, after a `, ` when
/// `out` is not empty.
///
/// ```
/// use std::time::Duration;
/// use traffik::http::response::push_limit_item;
///
/// let mut v = String::new();
/// push_limit_item(&mut v, "burst", 0, Duration::from_millis(4100));
/// push_limit_item(&mut v, "daily", 990, Duration::from_secs(86_400));
/// assert_eq!(v, "\"burst\";r=0;t=5, \"daily\";r=990;t=86400");
/// ```
pub fn push_limit_item(out: &mut String, name: &str, remaining: u64, t: Duration) {
    use std::fmt::Write;
    if !out.is_empty() {
        out.push_str(", ");
    }
    // Writing to a String cannot fail.
    let _ = write!(out, "\"{name}\";r={remaining};t={}", ceil_secs(t));
}

/// One policy's line in a response's headers.
pub(crate) struct HeaderItem<'a> {
    pub name: &'a str,
    pub policy_item: &'a str,
    pub limit: u64,
    pub remaining: u64,
    pub t: Duration,
}

/// How the layer's headers meet the same headers already on a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Keep the response's own (a custom denial that wrote them).
    Keep,
    /// Add the IETF list members as another field line, which is the same list with more
    /// members (another rate-limit layer further in already wrote its policies); legacy
    /// single values are kept.
    Append,
}

/// Writes the rate-limit headers for `items` (the first item with the smallest remaining
/// fills the legacy headers).
pub(crate) fn write_headers(
    headers: &mut HeaderMap,
    items: &[HeaderItem<'_>],
    opts: HeaderOptions,
    existing: Existing,
) {
    let Some(first) = items.first() else {
        return;
    };
    if opts.ietf {
        let mut policy = String::with_capacity(items.iter().map(|i| i.policy_item.len() + 2).sum());
        let mut limit = String::with_capacity(items.len() * 32);
        for item in items {
            if !policy.is_empty() {
                policy.push_str(", ");
            }
            policy.push_str(item.policy_item);
            push_limit_item(&mut limit, item.name, item.remaining, item.t);
        }
        match existing {
            Existing::Keep => {
                insert_if_absent(headers, RATELIMIT_POLICY, policy);
                insert_if_absent(headers, RATELIMIT, limit);
            }
            Existing::Append => {
                append(headers, RATELIMIT_POLICY, policy);
                append(headers, RATELIMIT, limit);
            }
        }
    }
    if opts.legacy {
        let tightest = items.iter().min_by_key(|i| i.remaining).unwrap_or(first);
        insert_if_absent(headers, X_RATELIMIT_LIMIT, tightest.limit.to_string());
        insert_if_absent(
            headers,
            X_RATELIMIT_REMAINING,
            tightest.remaining.to_string(),
        );
        insert_if_absent(
            headers,
            X_RATELIMIT_RESET,
            ceil_secs(tightest.t).to_string(),
        );
    }
}

fn append(headers: &mut HeaderMap, name: HeaderName, value: String) {
    // Always valid, as for `insert_if_absent`.
    if let Ok(v) = HeaderValue::try_from(value) {
        headers.append(name, v);
    }
}

fn insert_if_absent(headers: &mut HeaderMap, name: HeaderName, value: String) {
    if headers.contains_key(&name) {
        return;
    }
    // The values are built from validated names and integers, so they are always valid; a
    // failure would drop the header rather than the response.
    if let Ok(v) = HeaderValue::try_from(value) {
        headers.insert(name, v);
    }
}

/// Sets `Retry-After` to `wait` in whole seconds rounded up, unless the response has one or
/// the wait is zero.
pub(crate) fn set_retry_after(headers: &mut HeaderMap, wait: Duration) {
    let secs = ceil_secs(wait);
    if secs > 0 && !headers.contains_key(RETRY_AFTER) {
        headers.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
}

/// Appends `s` to `out` as a JSON string (quotes included).
fn push_json_str(out: &mut String, s: &str) {
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A problem+json (RFC 9457) response: `type`, `title`, `status`, `detail`, and
/// `violated-policies` when given.
///
/// ```
/// use traffik::http::response::problem;
/// use http::StatusCode;
///
/// let res = problem(StatusCode::BAD_REQUEST, "about:blank", "no key", &[]);
/// assert_eq!(res.status(), 400);
/// assert_eq!(res.headers()["content-type"], "application/problem+json");
/// ```
pub fn problem(
    status: StatusCode,
    problem_type: &str,
    detail: &str,
    violated: &[&str],
) -> Response<DenyBody> {
    use std::fmt::Write;
    let title = status.canonical_reason().unwrap_or("Error");
    let mut body = String::with_capacity(160 + detail.len());
    body.push_str("{\"type\":");
    push_json_str(&mut body, problem_type);
    body.push_str(",\"title\":");
    push_json_str(&mut body, title);
    let _ = write!(body, ",\"status\":{}", status.as_u16());
    body.push_str(",\"detail\":");
    push_json_str(&mut body, detail);
    if !violated.is_empty() {
        body.push_str(",\"violated-policies\":[");
        for (i, name) in violated.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            push_json_str(&mut body, name);
        }
        body.push(']');
    }
    body.push('}');
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    res
}

/// The layer's default denial: 429, problem+json of type [`QUOTA_EXCEEDED_TYPE`] naming the
/// violated policy, and `Retry-After` (whole seconds, rounded up). The layer adds the
/// `RateLimit` headers to it (and to a custom denial) afterwards.
///
/// A custom builder can start from this one and change what it needs.
pub fn too_many_requests(denial: &Denial<'_>) -> Response<DenyBody> {
    let d = &denial.decision;
    let detail = if denial.never_admissible {
        format!(
            "the request costs {} but policy \"{}\" admits at most {} at once; retrying cannot help",
            denial.cost,
            denial.policy,
            d.limit()
        )
    } else {
        format!(
            "the request costs {} and policy \"{}\" has {} of {} left; retry in {} s",
            denial.cost,
            denial.policy,
            d.remaining(),
            d.limit(),
            ceil_secs(d.retry_after())
        )
    };
    let mut res = problem(
        StatusCode::TOO_MANY_REQUESTS,
        QUOTA_EXCEEDED_TYPE,
        &detail,
        &[denial.policy],
    );
    set_retry_after(res.headers_mut(), d.retry_after());
    res
}

/// The default answer to a failed limiter with [`BackendErrorOutcome::Unavailable`]: 503,
/// problem+json naming the policy, and `Retry-After` (whole seconds, rounded up).
pub fn service_unavailable(policy: &str, retry_after: Duration) -> Response<DenyBody> {
    let detail = format!("the rate limiter of policy \"{policy}\" is unavailable; retry later");
    let mut res = problem(StatusCode::SERVICE_UNAVAILABLE, "about:blank", &detail, &[]);
    set_retry_after(res.headers_mut(), retry_after);
    res
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_never_says_zero_for_a_positive_wait() {
        assert_eq!(ceil_secs(Duration::from_nanos(1)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(100)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(999)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1000)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1001)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(1500)), 2);
        assert_eq!(ceil_secs(Duration::MAX), u64::MAX);
        let mut h = HeaderMap::new();
        set_retry_after(&mut h, Duration::ZERO);
        assert!(h.get(RETRY_AFTER).is_none());
        set_retry_after(&mut h, Duration::from_millis(100));
        assert_eq!(h[RETRY_AFTER], "1");
    }

    #[test]
    fn policy_items_use_whole_seconds_rounded_up() {
        assert_eq!(
            policy_item("b", "20 per 2 mins".parse().unwrap()),
            "\"b\";q=20;w=120"
        );
        assert_eq!(
            policy_item("b", "5/500ms".parse().unwrap()),
            "\"b\";q=5;w=1"
        );
    }

    #[test]
    fn headers_list_every_policy_and_legacy_takes_the_tightest() {
        let items = [
            HeaderItem {
                name: "burst",
                policy_item: "\"burst\";q=10;w=1",
                limit: 10,
                remaining: 7,
                t: Duration::from_millis(300),
            },
            HeaderItem {
                name: "daily",
                policy_item: "\"daily\";q=1000;w=86400",
                limit: 1000,
                remaining: 3,
                t: Duration::from_millis(86_399_001),
            },
        ];
        let mut h = HeaderMap::new();
        let opts = HeaderOptions {
            legacy: true,
            ..HeaderOptions::default()
        };
        write_headers(&mut h, &items, opts, Existing::Keep);
        assert_eq!(
            h[RATELIMIT_POLICY],
            "\"burst\";q=10;w=1, \"daily\";q=1000;w=86400"
        );
        assert_eq!(h[RATELIMIT], "\"burst\";r=7;t=1, \"daily\";r=3;t=86400");
        assert_eq!(h[X_RATELIMIT_LIMIT], "1000");
        assert_eq!(h[X_RATELIMIT_REMAINING], "3");
        assert_eq!(h[X_RATELIMIT_RESET], "86400");

        // Headers a custom response set are kept.
        let mut h = HeaderMap::new();
        h.insert(RATELIMIT, HeaderValue::from_static("custom"));
        write_headers(
            &mut h,
            &items[..1],
            HeaderOptions::default(),
            Existing::Keep,
        );
        assert_eq!(h[RATELIMIT], "custom");
        assert!(h.get(X_RATELIMIT_LIMIT).is_none());

        // Another layer's members are kept and these follow as a second field line.
        write_headers(
            &mut h,
            &items[1..],
            HeaderOptions::default(),
            Existing::Append,
        );
        let lines: Vec<_> = h.get_all(RATELIMIT).iter().collect();
        assert_eq!(lines, ["custom", "\"daily\";r=3;t=86400"]);
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        push_json_str(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\u0001é\"");
    }

    #[test]
    fn the_default_denial_is_problem_json_with_retry_after() {
        let (parts, ()) = http::Request::new(()).into_parts();
        let denial = Denial {
            policy: "burst",
            decision: Decision::deny(10, 0, 1_500_000_000, 10_000_000_000),
            cost: 1,
            never_admissible: false,
            decisions: &[],
            parts: &parts,
        };
        let res = too_many_requests(&denial);
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers()[RETRY_AFTER], "2");
        assert_eq!(res.headers()[CONTENT_TYPE], "application/problem+json");
        let body = res.body().clone();
        let bytes = futures_body(body);
        assert_eq!(
            bytes,
            "{\"type\":\"https://iana.org/assignments/http-problem-types#quota-exceeded\",\
             \"title\":\"Too Many Requests\",\"status\":429,\"detail\":\"the request costs 1 and \
             policy \\\"burst\\\" has 0 of 10 left; retry in 2 s\",\"violated-policies\":[\"burst\"]}"
        );
    }

    /// The bytes of a `Full` body (ready at once, so no runtime is needed).
    fn futures_body(body: DenyBody) -> String {
        use http_body::Body;
        use std::pin::pin;
        use std::task::{Context, Poll, Waker};
        let mut body = pin!(body);
        let mut cx = Context::from_waker(Waker::noop());
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap()
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
