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
    /// The policy's `RateLimit-Policy` member, built when the policy was made.
    pub policy_item: &'a HeaderValue,
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

/// The rate-limit header values of one response, made as soon as the decisions are known
/// (before the inner service runs, for a request admitted on the spot) and written when the
/// response is there.
#[derive(Clone, Debug)]
pub(crate) struct PreparedHeaders {
    /// `RateLimit-Policy` then `RateLimit`.
    ietf: Option<[HeaderValue; 2]>,
    /// `X-RateLimit-Limit`, `-Remaining`, `-Reset` (rarely asked for: kept out of line so
    /// that the future holding these stays small).
    legacy: Option<Box<[HeaderValue; 3]>>,
}

/// The header values for `items` (the first item with the smallest remaining fills the legacy
/// headers); `None` when there is nothing to write. `all` is the `RateLimit-Policy` value of
/// every policy of the layer, given when `items` holds them all (in policy order), so the
/// common case clones it instead of joining the members.
pub(crate) fn prepare_headers(
    items: &[HeaderItem<'_>],
    opts: HeaderOptions,
    all: Option<&HeaderValue>,
) -> Option<PreparedHeaders> {
    let first = items.first()?;
    let ietf = if opts.ietf {
        let policy = match (items, all) {
            ([one], _) => Some(one.policy_item.clone()),
            (_, Some(all)) => Some(all.clone()),
            _ => join_policy_items(items.iter().map(|i| i.policy_item)),
        };
        // Both values come from validated names and integers, so they are always valid; a
        // failure would drop the headers rather than the response.
        match (policy, limit_value(items)) {
            (Some(p), Some(l)) => Some([p, l]),
            _ => None,
        }
    } else {
        None
    };
    let legacy = opts.legacy.then(|| {
        let tightest = items.iter().min_by_key(|i| i.remaining).unwrap_or(first);
        Box::new([
            HeaderValue::from(tightest.limit),
            HeaderValue::from(tightest.remaining),
            HeaderValue::from(ceil_secs(tightest.t)),
        ])
    });
    if ietf.is_none() && legacy.is_none() {
        return None;
    }
    Some(PreparedHeaders { ietf, legacy })
}

impl PreparedHeaders {
    /// Writes the values into `headers`.
    pub(crate) fn write(self, headers: &mut HeaderMap, existing: Existing) {
        if let Some([policy, limit]) = self.ietf {
            match existing {
                Existing::Keep => {
                    insert_if_absent(headers, RATELIMIT_POLICY, policy);
                    insert_if_absent(headers, RATELIMIT, limit);
                }
                Existing::Append => {
                    headers.append(RATELIMIT_POLICY, policy);
                    headers.append(RATELIMIT, limit);
                }
            }
        }
        if let Some(legacy) = self.legacy {
            let [limit, remaining, reset] = *legacy;
            insert_if_absent(headers, X_RATELIMIT_LIMIT, limit);
            insert_if_absent(headers, X_RATELIMIT_REMAINING, remaining);
            insert_if_absent(headers, X_RATELIMIT_RESET, reset);
        }
    }
}

/// The `RateLimit-Policy` list of several members.
pub(crate) fn join_policy_items<'a>(
    items: impl Iterator<Item = &'a HeaderValue> + Clone,
) -> Option<HeaderValue> {
    let len: usize = items.clone().map(|v| v.len() + 2).sum();
    let mut out = Vec::with_capacity(len.saturating_sub(2));
    for v in items {
        if !out.is_empty() {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(v.as_bytes());
    }
    HeaderValue::from_maybe_shared(Bytes::from(out)).ok()
}

/// The `RateLimit` value for `items`, as [`push_limit_item`] writes it, formatted on the
/// stack (one allocation: the value's own bytes).
fn limit_value(items: &[HeaderItem<'_>]) -> Option<HeaderValue> {
    let mut out = StackBuf::new();
    let mut num = itoa::Buffer::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b", ");
        }
        out.push(b"\"");
        out.push(item.name.as_bytes());
        out.push(b"\";r=");
        out.push(num.format(item.remaining).as_bytes());
        out.push(b";t=");
        out.push(num.format(ceil_secs(item.t)).as_bytes());
    }
    HeaderValue::from_bytes(out.as_bytes()).ok()
}

/// Bytes on the stack, spilling to the heap past `INLINE` (long policy names, many policies).
struct StackBuf {
    inline: [u8; StackBuf::INLINE],
    len: usize,
    spill: Vec<u8>,
}

impl StackBuf {
    const INLINE: usize = 128;

    fn new() -> Self {
        StackBuf {
            inline: [0; Self::INLINE],
            len: 0,
            spill: Vec::new(),
        }
    }

    #[inline]
    fn push(&mut self, bytes: &[u8]) {
        if self.spill.is_empty() {
            if let Some(dst) = self.inline.get_mut(self.len..self.len + bytes.len()) {
                dst.copy_from_slice(bytes);
                self.len += bytes.len();
                return;
            }
            self.spill.extend_from_slice(&self.inline[..self.len]);
        }
        self.spill.extend_from_slice(bytes);
    }

    fn as_bytes(&self) -> &[u8] {
        if self.spill.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spill
        }
    }
}

/// Writes the rate-limit headers for `items` (see [`prepare_headers`]).
pub(crate) fn write_headers(
    headers: &mut HeaderMap,
    items: &[HeaderItem<'_>],
    opts: HeaderOptions,
    existing: Existing,
    all: Option<&HeaderValue>,
) {
    if let Some(prepared) = prepare_headers(items, opts, all) {
        prepared.write(headers, existing);
    }
}

fn insert_if_absent(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) {
    if !headers.contains_key(&name) {
        headers.insert(name, value);
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
        let burst = HeaderValue::from_static("\"burst\";q=10;w=1");
        let daily = HeaderValue::from_static("\"daily\";q=1000;w=86400");
        let items = [
            HeaderItem {
                name: "burst",
                policy_item: &burst,
                limit: 10,
                remaining: 7,
                t: Duration::from_millis(300),
            },
            HeaderItem {
                name: "daily",
                policy_item: &daily,
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
        write_headers(&mut h, &items, opts, Existing::Keep, None);
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
            None,
        );
        assert_eq!(h[RATELIMIT], "custom");
        assert!(h.get(X_RATELIMIT_LIMIT).is_none());

        // Another layer's members are kept and these follow as a second field line.
        write_headers(
            &mut h,
            &items[1..],
            HeaderOptions::default(),
            Existing::Append,
            None,
        );
        let lines: Vec<_> = h.get_all(RATELIMIT).iter().collect();
        assert_eq!(lines, ["custom", "\"daily\";r=3;t=86400"]);
    }

    #[test]
    fn prepared_values_match_the_string_builders_even_past_the_stack_buffer() {
        let long = "p".repeat(200);
        let names = ["burst", long.as_str(), "daily"];
        let members: Vec<HeaderValue> = names
            .iter()
            .map(|n| HeaderValue::try_from(policy_item(n, Rate::per_minute(100))).unwrap())
            .collect();
        let items: Vec<HeaderItem<'_>> = names
            .iter()
            .zip(&members)
            .enumerate()
            .map(|(i, (name, member))| HeaderItem {
                name,
                policy_item: member,
                limit: 100,
                remaining: 99 - i as u64,
                t: Duration::from_millis(1_500 * i as u64 + 1),
            })
            .collect();
        let mut want = String::new();
        for item in &items {
            push_limit_item(&mut want, item.name, item.remaining, item.t);
        }
        let joined = members
            .iter()
            .map(|m| m.to_str().unwrap())
            .collect::<Vec<_>>()
            .join(", ");
        for n in 1..=items.len() {
            let mut h = HeaderMap::new();
            write_headers(
                &mut h,
                &items[..n],
                HeaderOptions::default(),
                Existing::Keep,
                None,
            );
            let mut want_limit = String::new();
            for item in &items[..n] {
                push_limit_item(&mut want_limit, item.name, item.remaining, item.t);
            }
            assert_eq!(h[RATELIMIT], want_limit.as_str());
            let want_policy = joined.split(", ").take(n).collect::<Vec<_>>().join(", ");
            assert_eq!(h[RATELIMIT_POLICY], want_policy.as_str());
        }
        assert!(want.len() > StackBuf::INLINE);
        // A prebuilt list is used as is.
        let all = HeaderValue::from_static("prebuilt");
        let mut h = HeaderMap::new();
        write_headers(
            &mut h,
            &items,
            HeaderOptions::default(),
            Existing::Append,
            Some(&all),
        );
        assert_eq!(h[RATELIMIT_POLICY], "prebuilt");
        assert_eq!(h[RATELIMIT], want.as_str());
    }
}
