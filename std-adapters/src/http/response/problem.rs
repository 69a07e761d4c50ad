//! problem+json bodies (RFC 9457) and the layer's default denial and failure responses.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::Full;
use std::time::Duration;

use super::{ceil_secs, set_retry_after, Denial, DenyBody, QUOTA_EXCEEDED_TYPE};

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
    use http::header::RETRY_AFTER;
    use traffik_core::Decision;

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
