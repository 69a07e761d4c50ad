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
///
/// # What each failure means for the key
///
/// Its [`ErrorKind`](traffik_core::ErrorKind) (through
/// [`LimiterError::kind`](traffik_core::LimiterError::kind)) says whether the check may have
/// been charged. `NotCharged` is given only where redis-rs guarantees the command was never
/// written; anything that may have reached the server is `Indeterminate`.
///
/// | failure (redis-rs 0.32) | variant | kind |
/// |---|---|---|
/// | connection refused (`is_connection_refusal`: only `connect` reports it) | `Connection` | `NotCharged` |
/// | no connection for this call: connecting failed (refused, timed out, name resolution, reset during the handshake), or the call's deadline passed while connecting | `Connection` | `NotCharged` |
/// | no connection to the cluster node routed to | `Connection` | `NotCharged` |
/// | no connection when the limiter was built | `Connection` | `NotCharged` |
/// | `NOSCRIPT` (resent once by body, by the limiter itself), `OOM`, `BUSY`, `LOADING`, `READONLY`, `CLUSTERDOWN`, script errors | `Server` | `NotCharged` |
/// | no reply within the limiter's timeout | `Timeout` | `Indeterminate` |
/// | broken pipe, reset, end of stream, client-side read timeout, any other I/O error on an established connection | `ReplyLost` | `Indeterminate` |
/// | `WRONGTYPE` | `WrongType` | `Config` |
/// | a state the scripts cannot read | `CorruptState` | `Config` |
/// | a reply the client cannot parse, or not of the scripts' shape | `BadReply` | `Config` |
/// | authentication or client settings refused while connecting; invalid configuration | `Config` | `Config` |
/// | a cost above the limit's capacity | `InsufficientCapacity` | `InsufficientCapacity` |
///
/// The single-node connection is awaited (under the call's deadline) before the command is
/// handed to it, so everything that fails before that point is known not to have been sent.
/// One case redis-rs cannot tell apart, reported on the cautious side: a broken pipe is
/// `Indeterminate` even when nothing was written, because the multiplexed connection reports
/// the same error whether its task had died before taking the command (the first call after
/// the server went away) or died with the command in flight.
///
/// A `BadReply` means the server did answer: the command ran, and may have charged. It is
/// `Config` (never retried, never masked by a failover policy) because a store that answers
/// this way is not a traffik store as configured (another server on that port, a proxy that
/// rewrites replies), and every call will fail the same way until that is fixed.
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
    ///
    /// See the [classification table](RedisLimiterError#what-each-failure-means-for-the-key).
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
        if let Some(detail) = never_sent(&err) {
            return RedisLimiterError::Connection {
                detail: detail.into(),
                source: Some(err),
            };
        }
        match err.kind() {
            // Raised only while setting a connection up (AUTH, client options): the command
            // was never sent, and retrying with the same settings fails the same way.
            redis::ErrorKind::AuthenticationFailed | redis::ErrorKind::InvalidClientConfig => {
                return RedisLimiterError::Config {
                    reason: "Redis refused the connection's settings".into(),
                    source: Some(Box::new(err)),
                }
            }
            redis::ErrorKind::ParseError | redis::ErrorKind::TypeError => {
                return RedisLimiterError::BadReply {
                    detail: "the client could not read it".into(),
                    source: Some(err),
                }
            }
            _ => {}
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
        // Server error replies (NOSCRIPT, OOM, BUSY, LOADING, READONLY, CLUSTERDOWN, ...).
        RedisLimiterError::Server {
            context: key.to_owned(),
            source: err,
        }
    }
}

/// Why `err` certainly left the command unsent, if it did.
fn never_sent(err: &redis::RedisError) -> Option<&'static str> {
    // The single-node connection failed to connect for this call: it was never sent.
    if crate::single::not_sent(err).is_some() {
        return Some(if err.is_connection_refusal() {
            "the connection was refused"
        } else {
            "connecting failed"
        });
    }
    // Only `connect` fails with "refused" (a connected TCP socket reports a reset instead).
    if err.is_connection_refusal() {
        return Some("the connection was refused");
    }
    // A cluster client with no connection to the node it routed the command to.
    if err.kind() == redis::ErrorKind::ClusterConnectionNotFound
        || crate::connection::is_unknown_node(err)
    {
        return Some("no connection to the cluster node");
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io;
    use traffik_core::{ErrorKind, LimiterError};

    fn kind_of(err: redis::RedisError) -> ErrorKind {
        RedisLimiterError::from_redis(err, "k").kind()
    }

    fn io(kind: io::ErrorKind, msg: &str) -> redis::RedisError {
        redis::RedisError::from(io::Error::new(kind, msg.to_owned()))
    }

    #[test]
    fn failures_before_the_command_was_written_are_not_charged() {
        let unsent = |kind: io::ErrorKind, msg: &str| {
            let cause = Arc::new(io(kind, msg));
            redis::RedisError::from(io::Error::new(kind, crate::single::NotSent(cause)))
        };
        for e in [
            io(io::ErrorKind::ConnectionRefused, "connect"),
            // The single-node connection could not connect for this call, whatever the I/O
            // error (refused, timed out, name resolution, reset during the handshake).
            unsent(io::ErrorKind::ConnectionRefused, "refused"),
            unsent(io::ErrorKind::TimedOut, "timed out"),
            unsent(io::ErrorKind::Other, "failed to lookup address"),
            unsent(io::ErrorKind::ConnectionReset, "reset"),
            redis::RedisError::from((redis::ErrorKind::ClusterConnectionNotFound, "none")),
            redis::RedisError::from((redis::ErrorKind::ClientError, "connection not found")),
        ] {
            let shown = e.to_string();
            let mapped = RedisLimiterError::from_redis(e, "k");
            assert!(
                matches!(mapped, RedisLimiterError::Connection { .. }),
                "{shown}: {mapped:?}"
            );
            assert_eq!(mapped.kind(), ErrorKind::NotCharged, "{shown}");
        }
        // The script was not cached: it did not run.
        let noscript = redis::RedisError::from((
            redis::ErrorKind::NoScriptError,
            "NOSCRIPT",
            "No matching script".to_owned(),
        ));
        assert_eq!(kind_of(noscript), ErrorKind::NotCharged);
    }

    #[test]
    fn failures_after_the_command_may_have_been_written_are_indeterminate() {
        for e in [
            // The multiplexed connection reports the same broken pipe whether its task died
            // before taking the command or with the command in flight.
            redis::RedisError::from(io::Error::from(io::ErrorKind::BrokenPipe)),
            io(io::ErrorKind::ConnectionReset, "reset by peer"),
            io(io::ErrorKind::UnexpectedEof, "eof"),
            io(io::ErrorKind::TimedOut, "response timed out"),
            io(io::ErrorKind::Other, "anything else"),
        ] {
            let shown = e.to_string();
            let mapped = RedisLimiterError::from_redis(e, "k");
            assert!(
                matches!(mapped, RedisLimiterError::ReplyLost { .. }),
                "{shown}: {mapped:?}"
            );
            assert_eq!(mapped.kind(), ErrorKind::Indeterminate, "{shown}");
        }
    }

    #[test]
    fn settings_and_unreadable_replies_are_configuration_errors() {
        for e in [
            redis::RedisError::from((redis::ErrorKind::AuthenticationFailed, "bad password")),
            redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "bad option")),
            redis::RedisError::from((redis::ErrorKind::ParseError, "not RESP")),
            redis::RedisError::from((redis::ErrorKind::TypeError, "unexpected type")),
        ] {
            let shown = e.to_string();
            assert_eq!(kind_of(e), ErrorKind::Config, "{shown}");
        }
        assert_eq!(
            RedisLimiterError::bad_reply("3 replies to a pipeline of 2").kind(),
            ErrorKind::Config
        );
    }
}
