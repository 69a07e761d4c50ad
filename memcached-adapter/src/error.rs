//! The errors a memcached-backed call can end in.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use traffik_core::{CheckError, ConfigError, ErrorKind, LimiterError, RateParseError};

/// Why a call against memcached produced no [`Decision`](traffik_core::Decision).
///
/// Every failure is one of these; none is ever turned into an admission. What a failure means
/// for the key is [`LimiterError::kind`]: [`ErrorKind::NotCharged`] failures happened before
/// anything could have been written (safe to retry or fall back), [`ErrorKind::Indeterminate`]
/// ones after a write was sent and before its reply came back (the limiter never resends those;
/// a resend could count the request twice).
///
/// I/O causes are shared (`Arc`) so that one failure can be reported for every check of a
/// [`check_many`](crate::MemcachedLimiter::check_many) batch it affected.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemcachedLimiterError {
    /// The builder was given something unusable (no server, a bad address or prefix, ...).
    #[error("invalid traffik-memcached configuration: {0}")]
    Config(String),
    /// The rate string does not parse.
    #[error("invalid rate: {0}")]
    Rate(#[source] RateParseError),
    /// The rate, algorithm and burst do not make a limiter.
    #[error("invalid limiter: {0}")]
    Algorithm(#[source] ConfigError),
    /// The cost is larger than the most the limit can admit at once; nothing was sent.
    #[error("cost can never be admitted: the limit allows at most {max} at once")]
    InsufficientCapacity {
        /// The largest cost a single check can be granted.
        max: u64,
    },
    /// No connection to the server could be opened (refused, unreachable, unresolvable).
    /// Nothing was sent.
    #[error("cannot connect to memcached at {server}: {source}")]
    Connect {
        /// The server's `host:port`.
        server: String,
        /// What the connection attempt reported.
        #[source]
        source: Arc<io::Error>,
    },
    /// The connection failed while nothing this call would write had been sent (while reading a
    /// key's state, or after the server had refused the write). Nothing was charged.
    #[error("connection to memcached at {server} failed before anything was written: {source}")]
    Io {
        /// The server's `host:port`.
        server: String,
        /// What the connection reported (a close is `UnexpectedEof`).
        #[source]
        source: Arc<io::Error>,
    },
    /// The connection failed after a write (`cas`, `add` or `delete`) was sent and before its
    /// reply arrived. Indeterminate: the write may have been applied. It is not resent.
    #[error("connection to memcached at {server} lost before the write's reply; it may or may not have been applied: {source}")]
    ReplyLost {
        /// The server's `host:port`.
        server: String,
        /// What the connection reported (a close is `UnexpectedEof`).
        #[source]
        source: Arc<io::Error>,
    },
    /// The call's timeout passed before anything it would write had been sent. Nothing was
    /// charged.
    #[error("memcached did not answer within {after:?}; nothing was written")]
    Timeout {
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The call's timeout passed after a write was sent and before its reply. Indeterminate:
    /// the write may have been applied. It is not resent.
    #[error(
        "memcached did not answer a write within {after:?}; it may or may not have been applied"
    )]
    ReplyTimeout {
        /// The timeout that elapsed.
        after: Duration,
    },
    /// Other clients changed the key between every read and write, `attempts` times in a row.
    /// Nothing was written by this call.
    #[error("the key changed under {attempts} consecutive compare-and-swap attempts; nothing was written")]
    Contention {
        /// How many read-decide-write rounds were tried.
        attempts: u32,
    },
    /// The key holds a value this crate did not write (another length or other flags).
    #[error("memcached key {key} does not hold a traffik state: {detail}")]
    CorruptState {
        /// The memcached key.
        key: String,
        /// What is wrong with the value.
        detail: String,
    },
    /// The server's reply is not a memcached reply to the request (not a memcached server, a
    /// proxy that mangles replies, a connection out of step). `after_write` says whether it was
    /// the reply to a write, which makes the failure indeterminate.
    #[error("unexpected reply from memcached at {server}: {detail}")]
    BadReply {
        /// The server's `host:port`.
        server: String,
        /// What was wrong with it.
        detail: String,
        /// Whether a write had been sent whose outcome this reply should have told.
        after_write: bool,
    },
    /// The server refused the command (`ERROR` or `CLIENT_ERROR`): it does not speak the
    /// commands this crate needs (a proxy without `gets`/`cas`, say). Nothing was written.
    #[error("memcached at {server} refused the command: {detail}")]
    Refused {
        /// The server's `host:port`.
        server: String,
        /// The server's reply.
        detail: String,
    },
    /// The server could not carry out the command (`SERVER_ERROR`, e.g. out of memory).
    /// Nothing was written.
    #[error("memcached at {server} failed: {detail}")]
    Server {
        /// The server's `host:port`.
        server: String,
        /// The server's reply.
        detail: String,
    },
    /// A [`MemcachedMultiLimiter`](crate::MemcachedMultiLimiter) check charged limit `limit`
    /// (its position in the multi-limiter), then was denied or failed on a later limit, and
    /// could not undo that charge (`cause`: the network, the timeout, or a key that kept
    /// changing). Indeterminate: the charge may remain on that limit, though the check was not
    /// admitted.
    #[error("a multi-limit check could not refund its charge on limit {limit} (memcached key {key}); the charge may remain: {cause}")]
    RefundFailed {
        /// The position, in the multi-limiter, of the limit whose charge may remain.
        limit: usize,
        /// Its memcached key.
        key: String,
        /// Why the refund was not made.
        #[source]
        cause: Box<MemcachedLimiterError>,
    },
}

impl MemcachedLimiterError {
    /// Whether the call may have been applied in memcached although no answer came back.
    pub fn is_indeterminate(&self) -> bool {
        self.kind().is_indeterminate()
    }
}

impl LimiterError for MemcachedLimiterError {
    fn kind(&self) -> ErrorKind {
        use MemcachedLimiterError as E;
        match self {
            E::InsufficientCapacity { max } => ErrorKind::InsufficientCapacity { max: *max },
            E::Config(_)
            | E::Rate(_)
            | E::Algorithm(_)
            | E::CorruptState { .. }
            | E::Refused { .. } => ErrorKind::Config,
            E::Connect { .. }
            | E::Io { .. }
            | E::Timeout { .. }
            | E::Contention { .. }
            | E::Server { .. } => ErrorKind::NotCharged,
            E::ReplyLost { .. } | E::ReplyTimeout { .. } | E::RefundFailed { .. } => {
                ErrorKind::Indeterminate
            }
            E::BadReply { after_write, .. } => {
                if *after_write {
                    ErrorKind::Indeterminate
                } else {
                    ErrorKind::NotCharged
                }
            }
        }
    }
}

impl From<CheckError> for MemcachedLimiterError {
    fn from(e: CheckError) -> Self {
        match e {
            CheckError::InsufficientCapacity { max } => {
                MemcachedLimiterError::InsufficientCapacity { max }
            }
            // The algorithms never report anything else; a table error cannot come from them.
            other => MemcachedLimiterError::Config(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io() -> Arc<io::Error> {
        Arc::new(io::Error::from(io::ErrorKind::ConnectionReset))
    }

    #[test]
    fn every_variant_is_classified() {
        let s = || "127.0.0.1:1".to_owned();
        let d = Duration::from_millis(5);
        let cases = [
            (E::Config("x".into()), ErrorKind::Config),
            (
                E::InsufficientCapacity { max: 7 },
                ErrorKind::InsufficientCapacity { max: 7 },
            ),
            (
                E::Connect {
                    server: s(),
                    source: io(),
                },
                ErrorKind::NotCharged,
            ),
            (
                E::Io {
                    server: s(),
                    source: io(),
                },
                ErrorKind::NotCharged,
            ),
            (
                E::ReplyLost {
                    server: s(),
                    source: io(),
                },
                ErrorKind::Indeterminate,
            ),
            (E::Timeout { after: d }, ErrorKind::NotCharged),
            (E::ReplyTimeout { after: d }, ErrorKind::Indeterminate),
            (E::Contention { attempts: 3 }, ErrorKind::NotCharged),
            (
                E::CorruptState {
                    key: "k".into(),
                    detail: "d".into(),
                },
                ErrorKind::Config,
            ),
            (
                E::BadReply {
                    server: s(),
                    detail: "d".into(),
                    after_write: false,
                },
                ErrorKind::NotCharged,
            ),
            (
                E::BadReply {
                    server: s(),
                    detail: "d".into(),
                    after_write: true,
                },
                ErrorKind::Indeterminate,
            ),
            (
                E::Refused {
                    server: s(),
                    detail: "ERROR".into(),
                },
                ErrorKind::Config,
            ),
            (
                E::Server {
                    server: s(),
                    detail: "oom".into(),
                },
                ErrorKind::NotCharged,
            ),
            // A refund that failed before writing still leaves the charge: indeterminate.
            (
                E::RefundFailed {
                    limit: 1,
                    key: "k".into(),
                    cause: Box::new(E::Io {
                        server: s(),
                        source: io(),
                    }),
                },
                ErrorKind::Indeterminate,
            ),
        ];
        for (e, kind) in cases {
            assert_eq!(e.kind(), kind, "{e}");
            assert_eq!(e.is_indeterminate(), kind == ErrorKind::Indeterminate);
        }
    }

    #[test]
    fn io_causes_are_sources() {
        let e = E::ReplyLost {
            server: "h:1".into(),
            source: io(),
        };
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(
            source,
            Some(io::Error::from(io::ErrorKind::ConnectionReset).to_string())
        );
    }

    use MemcachedLimiterError as E;
}
