//! The errors a Redis-backed check can end in.

use std::time::Duration;

/// Why a check against Redis produced no [`Decision`](traffik_core::Decision).
///
/// Every failure is one of these; no failure is ever turned into an admission. Variants that say
/// *indeterminate* mean the check may or may not have been charged in Redis: the limiter never
/// resends such a check by itself, because a resend could count it twice.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisLimiterError {
    /// The limiter's configuration cannot be served exactly by the scripts.
    #[error("invalid traffik-redis configuration: {0}")]
    Config(String),
    /// The cost is larger than the most the limit can admit at once; nothing was sent.
    #[error("cost can never be admitted: the limit allows at most {max} at once")]
    InsufficientCapacity {
        /// The largest cost a single check can be granted.
        max: u64,
    },
    /// Redis could not be reached (refused, unresolvable, or reconnecting failed). The check was
    /// not applied.
    #[error("cannot reach Redis: {detail}")]
    Connection {
        /// What the client reported.
        detail: String,
    },
    /// No reply within the configured per-call timeout. Indeterminate: the check may have been
    /// applied.
    #[error("Redis did not answer within {after:?}; the check may or may not have been counted")]
    Timeout {
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The connection failed after the request may have been sent (server died mid-call, reset
    /// connection). Indeterminate: the check may have been applied, and it is not resent.
    #[error("connection lost before Redis replied; the check may or may not have been counted: {detail}")]
    ReplyLost {
        /// What the client reported.
        detail: String,
    },
    /// A limiter key holds a value of another Redis type (someone else wrote to it).
    #[error("key {key} holds a value of the wrong Redis type for traffik: {detail}")]
    WrongType {
        /// The Redis key.
        key: String,
        /// The server's message.
        detail: String,
    },
    /// A limiter key holds a string that is not a traffik state.
    #[error("key {key} does not hold a traffik state (written by something else?)")]
    CorruptState {
        /// The Redis key.
        key: String,
    },
    /// The reply did not have the shape the scripts produce (not a traffik script, or a proxy
    /// mangled it).
    #[error("unexpected reply from Redis: {detail}")]
    BadReply {
        /// What was wrong with it.
        detail: String,
    },
    /// Any other error reported by the server (out of memory, script killed, cluster down, ...).
    #[error("Redis error: {detail}")]
    Server {
        /// The server's message.
        detail: String,
    },
}

impl RedisLimiterError {
    /// Whether the check may have been applied in Redis although no decision came back.
    pub fn is_indeterminate(&self) -> bool {
        matches!(
            self,
            RedisLimiterError::Timeout { .. } | RedisLimiterError::ReplyLost { .. }
        )
    }

    /// Maps a client error for a request on `key`.
    pub(crate) fn from_redis(err: &redis::RedisError, key: &str) -> Self {
        let text = err.to_string();
        if err.code() == Some("WRONGTYPE") || text.contains("WRONGTYPE") {
            return RedisLimiterError::WrongType {
                key: key.to_owned(),
                detail: text,
            };
        }
        if text.contains("TRAFFIK_CORRUPT") {
            return RedisLimiterError::CorruptState {
                key: key.to_owned(),
            };
        }
        if err.is_connection_refusal() {
            return RedisLimiterError::Connection { detail: text };
        }
        if err.is_timeout() {
            return RedisLimiterError::ReplyLost { detail: text };
        }
        if err.is_connection_dropped() || err.is_io_error() {
            return RedisLimiterError::ReplyLost { detail: text };
        }
        if err.kind() == redis::ErrorKind::ParseError || err.kind() == redis::ErrorKind::TypeError {
            return RedisLimiterError::BadReply { detail: text };
        }
        RedisLimiterError::Server { detail: text }
    }
}
