//! The errors a Redis-backed check can end in.

use std::sync::Arc;
use std::time::Duration;

/// Why a check against Redis produced no [`Decision`](traffik_core::Decision).
///
/// Every failure is one of these; no failure is ever turned into an admission. Variants that say
/// *indeterminate* mean the check may or may not have been charged in Redis: the limiter never
/// resends such a check by itself, because a resend could count it twice.
///
/// Where a client error lies underneath, it is the [`source`](std::error::Error::source) (an
/// `Arc`, as one failed round trip can fail every check of a batch).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisLimiterError {
    /// The configuration is invalid, or cannot be served exactly by the scripts.
    #[error("invalid traffik-redis configuration: {reason}")]
    Config {
        /// What is wrong with it.
        reason: String,
        /// The underlying error, if any (a rate the core refuses, a bad URL, ...).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
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
        /// What failed.
        detail: String,
        /// The client's error, if there was one.
        #[source]
        source: Option<Arc<redis::RedisError>>,
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
    #[error("the reply was lost ({detail}); the check may or may not have been counted")]
    ReplyLost {
        /// How it was lost.
        detail: String,
        /// The client's error, if there was one.
        #[source]
        source: Option<Arc<redis::RedisError>>,
    },
    /// A limiter key holds a value of another Redis type (someone else wrote to it).
    #[error("key {key} holds a value of the wrong Redis type for traffik")]
    WrongType {
        /// The Redis key.
        key: String,
        /// The server's error.
        #[source]
        source: Arc<redis::RedisError>,
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
        /// The client's error, if the client could not read the reply.
        #[source]
        source: Option<Arc<redis::RedisError>>,
    },
    /// Any other error reported by the server (out of memory, script killed, cluster down or
    /// reconfiguring, ...). The script did not complete.
    #[error("Redis returned an error for {context}")]
    Server {
        /// The key (or command) it concerned.
        context: String,
        /// The server's error.
        #[source]
        source: Arc<redis::RedisError>,
    },
}

/// Lets [`RedisLimiterBuilder::algorithm`](crate::RedisLimiterBuilder::algorithm) take a
/// [`RedisAlgorithm`](crate::RedisAlgorithm) itself, whose conversion cannot fail.
impl From<std::convert::Infallible> for RedisLimiterError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

impl RedisLimiterError {
    /// Whether the check may have been applied in Redis although no decision came back.
    pub fn is_indeterminate(&self) -> bool {
        matches!(
            self,
            RedisLimiterError::Timeout { .. } | RedisLimiterError::ReplyLost { .. }
        )
    }

    /// A configuration error of our own finding.
    pub(crate) fn config(reason: impl Into<String>) -> Self {
        RedisLimiterError::Config {
            reason: reason.into(),
            source: None,
        }
    }

    /// A configuration error with the error that revealed it.
    pub(crate) fn config_from(
        reason: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        RedisLimiterError::Config {
            reason: reason.into(),
            source: Some(Box::new(source)),
        }
    }

    /// A reply of the wrong shape.
    pub(crate) fn bad_reply(detail: impl Into<String>) -> Self {
        RedisLimiterError::BadReply {
            detail: detail.into(),
            source: None,
        }
    }

    /// Maps a client error for a request on `key` (or a command, for errors outside checks).
    pub(crate) fn from_redis(err: impl Into<Arc<redis::RedisError>>, key: &str) -> Self {
        let err: Arc<redis::RedisError> = err.into();
        if err.code() == Some("WRONGTYPE") || err.to_string().contains("WRONGTYPE") {
            return RedisLimiterError::WrongType {
                key: key.to_owned(),
                source: err,
            };
        }
        if err.to_string().contains("TRAFFIK_CORRUPT") {
            return RedisLimiterError::CorruptState {
                key: key.to_owned(),
            };
        }
        if err.is_connection_refusal() {
            return RedisLimiterError::Connection {
                detail: "the connection was refused".into(),
                source: Some(err),
            };
        }
        if err.is_timeout() {
            return RedisLimiterError::ReplyLost {
                detail: "the client timed out waiting for it".into(),
                source: Some(err),
            };
        }
        if err.is_connection_dropped() || err.is_io_error() {
            return RedisLimiterError::ReplyLost {
                detail: "the connection failed".into(),
                source: Some(err),
            };
        }
        if err.kind() == redis::ErrorKind::ParseError || err.kind() == redis::ErrorKind::TypeError {
            return RedisLimiterError::BadReply {
                detail: "the client could not read it".into(),
                source: Some(err),
            };
        }
        RedisLimiterError::Server {
            context: key.to_owned(),
            source: err,
        }
    }
}
