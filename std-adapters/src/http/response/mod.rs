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

mod outcome;
mod problem;

pub use outcome::{
    BackendErrorHook, BackendErrorOutcome, BackendFailure, Denial, DenyHook, PolicyQuota,
    RateLimitInfo,
};
pub use problem::{problem, service_unavailable, too_many_requests};

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::HeaderMap;
use http_body_util::Full;
use traffik_core::Rate;

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
}
