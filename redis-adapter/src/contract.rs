//! [`RedisLimiter`] under the one contract every traffik backend meets, so failover, waiting
//! and middleware take it like the in-process table.

use traffik_core::{AsyncLimiter, Decision, ErrorKind, LimiterError};

use crate::error::RedisLimiterError;
use crate::limiter::RedisLimiter;

impl LimiterError for RedisLimiterError {
    fn kind(&self) -> ErrorKind {
        match self {
            RedisLimiterError::InsufficientCapacity { max } => {
                ErrorKind::InsufficientCapacity { max: *max }
            }
            // Certainly never sent (see the table on `RedisLimiterError`).
            RedisLimiterError::Connection { .. } => ErrorKind::NotCharged,
            // The server refused or aborted the command (`NOSCRIPT`, out of memory, cluster
            // down, busy, script error): the scripts write only as their last step, so a script
            // that did not finish wrote nothing.
            RedisLimiterError::Server { .. } => ErrorKind::NotCharged,
            // The command may have run: no reply, or a lost one.
            RedisLimiterError::Timeout { .. } | RedisLimiterError::ReplyLost { .. } => {
                ErrorKind::Indeterminate
            }
            // The store does not answer as a traffik store: retrying the same call fails the
            // same way, and the error must reach the caller rather than be masked by a fallback.
            RedisLimiterError::Config { .. }
            | RedisLimiterError::WrongType { .. }
            | RedisLimiterError::CorruptState { .. }
            | RedisLimiterError::BadReply { .. } => ErrorKind::Config,
        }
    }
}

/// Any byte-like key: `str`, `[u8]`, `String`, `Vec<u8>`, ...
impl<K: AsRef<[u8]> + ?Sized + Sync> AsyncLimiter<K> for RedisLimiter {
    type Error = RedisLimiterError;

    async fn check(&self, key: &K, cost: u64) -> Result<Decision, Self::Error> {
        RedisLimiter::check(self, key, cost).await
    }

    async fn peek(&self, key: &K) -> Result<Decision, Self::Error> {
        RedisLimiter::peek(self, key).await
    }

    async fn reset(&self, key: &K) -> Result<(), Self::Error> {
        RedisLimiter::reset(self, key).await
    }
}
