//! What a throttled connection tells its client: the JSON [`Notice`] sent for a rejected
//! message, and the [`CloseReason`] of a Close frame.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

/// A wait in whole seconds, rounded up: a client that waits this long is never early, and a
/// positive wait never reads as 0 (100 ms → 1, 1.5 s → 2, exactly 2 s → 2).
///
/// ```
/// use std::time::Duration;
/// use traffik::http::ws::retry_after_secs;
///
/// assert_eq!(retry_after_secs(Duration::from_millis(100)), 1);
/// assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
/// assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
/// assert_eq!(retry_after_secs(Duration::ZERO), 0);
/// ```
#[inline]
pub const fn retry_after_secs(wait: Duration) -> u64 {
    // `as_secs` is at most u64::MAX / 1 and the carry is 1: saturate for the one value where it
    // would overflow.
    let whole = wait.as_secs();
    if wait.subsec_nanos() > 0 {
        whole.saturating_add(1)
    } else {
        whole
    }
}

/// The text message sent to a client whose message was rejected.
///
/// The default is the rate-limit notice, exactly
/// `{"type":"rate_limit","error":"Too many messages","retry_after":N}` with `N` from
/// [`retry_after_secs`]. A custom handler may send any text instead. The default notice is held
/// as its number and written out only when it is sent, so a rejection allocates nothing.
///
/// ```
/// use std::time::Duration;
/// use traffik::http::ws::Notice;
///
/// let n = Notice::rate_limit(Duration::from_millis(1500));
/// assert_eq!(n.retry_after_secs(), Some(2));
/// assert_eq!(
///     n.to_string(),
///     r#"{"type":"rate_limit","error":"Too many messages","retry_after":2}"#
/// );
/// assert_eq!(Notice::text("slow down").to_string(), "slow down");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Notice(NoticeKind);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum NoticeKind {
    RateLimit { retry_after_secs: u64 },
    Text(Cow<'static, str>),
}

impl Notice {
    /// The rate-limit notice for a client that may try again after `retry_after`.
    #[inline]
    pub const fn rate_limit(retry_after: Duration) -> Self {
        Notice(NoticeKind::RateLimit {
            retry_after_secs: retry_after_secs(retry_after),
        })
    }

    /// A notice of this exact text.
    #[inline]
    pub fn text(text: impl Into<Cow<'static, str>>) -> Self {
        Notice(NoticeKind::Text(text.into()))
    }

    /// The `retry_after` seconds of a rate-limit notice; `None` for custom text.
    #[inline]
    pub const fn retry_after_secs(&self) -> Option<u64> {
        match self.0 {
            NoticeKind::RateLimit { retry_after_secs } => Some(retry_after_secs),
            NoticeKind::Text(_) => None,
        }
    }

    /// The text to send.
    pub fn into_text(self) -> Cow<'static, str> {
        match self.0 {
            NoticeKind::RateLimit { .. } => Cow::Owned(self.to_string()),
            NoticeKind::Text(t) => t,
        }
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            NoticeKind::RateLimit { retry_after_secs } => write!(
                f,
                r#"{{"type":"rate_limit","error":"Too many messages","retry_after":{retry_after_secs}}}"#
            ),
            NoticeKind::Text(t) => f.write_str(t),
        }
    }
}

/// The longest close reason a Close frame can carry: its payload is at most 125 bytes, two of
/// which are the code (RFC 6455 §5.5).
pub const MAX_CLOSE_REASON: usize = 123;

/// Why a [`CloseReason`] cannot be sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReasonError {
    /// The code is not one an endpoint may send: 1000–1003, 1007–1014 and 3000–4999 are;
    /// 1004–1006 and 1015 are reserved or only reported locally, the rest unassigned.
    #[error("close code {0} cannot be sent: use 1000-1003, 1007-1014 or 3000-4999")]
    Code(u16),
    /// The reason does not fit in a Close frame.
    #[error("close reason is {0} bytes; a Close frame holds at most 123")]
    ReasonTooLong(usize),
}

/// The code and reason of a Close frame the throttle sends, checked to be sendable.
///
/// ```
/// use traffik::http::ws::{CloseReason, CloseReasonError};
///
/// assert_eq!(CloseReason::POLICY_VIOLATION.code(), 1008);
/// assert_eq!(CloseReason::POLICY_VIOLATION.reason(), "policy violation");
/// let bye = CloseReason::new(4000, "bye")?;
/// assert_eq!((bye.code(), bye.reason()), (4000, "bye"));
/// assert_eq!(CloseReason::new(1006, "x"), Err(CloseReasonError::Code(1006)));
/// # Ok::<(), CloseReasonError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CloseReason {
    code: u16,
    reason: Cow<'static, str>,
}

impl CloseReason {
    /// 1008: the client broke the rate limit too many times in a row.
    pub const POLICY_VIOLATION: CloseReason = CloseReason {
        code: 1008,
        reason: Cow::Borrowed("policy violation"),
    };

    /// 1009: a message whose cost is more than the limit can ever admit at once.
    pub const MESSAGE_TOO_BIG: CloseReason = CloseReason {
        code: 1009,
        reason: Cow::Borrowed("message too big"),
    };

    /// 1011: the limiter failed and the policy is to close.
    pub const INTERNAL_ERROR: CloseReason = CloseReason {
        code: 1011,
        reason: Cow::Borrowed("internal error"),
    };

    /// A close with this code and reason, if a Close frame may carry them.
    pub fn new(code: u16, reason: impl Into<Cow<'static, str>>) -> Result<Self, CloseReasonError> {
        let sendable = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
        if !sendable {
            return Err(CloseReasonError::Code(code));
        }
        let reason = reason.into();
        if reason.len() > MAX_CLOSE_REASON {
            return Err(CloseReasonError::ReasonTooLong(reason.len()));
        }
        Ok(CloseReason { code, reason })
    }

    /// The close code.
    #[inline]
    pub const fn code(&self) -> u16 {
        self.code
    }

    /// The reason text.
    #[inline]
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The code and the reason, to build a Close frame.
    #[inline]
    pub fn into_parts(self) -> (u16, Cow<'static, str>) {
        (self.code, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let cases = [
            (Duration::ZERO, 0),
            (Duration::from_nanos(1), 1),
            (Duration::from_millis(100), 1),
            (Duration::from_millis(999), 1),
            (Duration::from_secs(1), 1),
            (Duration::from_nanos(1_000_000_001), 2),
            (Duration::from_millis(1500), 2),
            (Duration::from_secs(20), 20),
            (Duration::MAX, u64::MAX),
        ];
        for (wait, secs) in cases {
            assert_eq!(retry_after_secs(wait), secs, "{wait:?}");
        }
    }

    #[test]
    fn the_default_notice_is_the_exact_json() {
        let n = Notice::rate_limit(Duration::from_millis(100));
        assert_eq!(
            n.clone().into_text(),
            r#"{"type":"rate_limit","error":"Too many messages","retry_after":1}"#
        );
        assert_eq!(n.retry_after_secs(), Some(1));
        let parsed: serde_json::Value =
            serde_json::from_str(&Notice::rate_limit(Duration::from_secs(20)).to_string())
                .expect("the notice is JSON");
        assert_eq!(
            parsed,
            serde_json::json!({"type": "rate_limit", "error": "Too many messages", "retry_after": 20})
        );
        let custom = Notice::text(String::from("wait"));
        assert_eq!(custom.retry_after_secs(), None);
        assert_eq!(custom.into_text(), "wait");
    }

    #[test]
    fn close_reasons_are_checked_to_be_sendable() {
        for code in [1000, 1003, 1007, 1008, 1011, 1014, 3000, 4999] {
            assert_eq!(CloseReason::new(code, "").map(|c| c.code()), Ok(code));
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000, u16::MAX] {
            assert_eq!(
                CloseReason::new(code, ""),
                Err(CloseReasonError::Code(code))
            );
        }
        let longest = "x".repeat(MAX_CLOSE_REASON);
        assert!(CloseReason::new(1000, longest.clone()).is_ok());
        assert_eq!(
            CloseReason::new(1000, longest + "x"),
            Err(CloseReasonError::ReasonTooLong(124))
        );
        assert_eq!(
            CloseReason::INTERNAL_ERROR.into_parts(),
            (1011, Cow::Borrowed("internal error"))
        );
        assert_eq!(CloseReason::MESSAGE_TOO_BIG.code(), 1009);
    }
}
