//! [`RedisMultiLimiter`]: several limits on the same keys, decided and written by one
//! script, all or nothing.

use std::fmt;

use redis::{Cmd, Value};
use traffik_core::{AsyncLimiter, Decision};

use super::{Now, RedisLimiter};
use crate::config::RedisAlgorithm;
use crate::error::RedisLimiterError;
use crate::keys::meta_key;
use crate::reply::{bad_reply, parse_reply};
use crate::scripts::multi;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Several limits on the same keys (for example `10/s` and `1000/h`), checked by one Lua script
/// that decides every limit and then writes all of them or none: on Redis the check is truly
/// atomic, so a denied check never charges anything, even under contention.
///
/// Made from [`RedisLimiter`]s built as usual, one per limit, each with any algorithm and its own
/// prefix. A key's state under every limit is `<prefix>:{<key>}:<algorithm>` (and, for the
/// sliding window log, that name followed by `:m` for its meta key), exactly as a single check
/// of that limiter keeps it, so a key checked alone and through the multi-limit shares one
/// state. All the keys of one check share the hash tag `{<key>}` and one Redis Cluster slot, as
/// a multi-key script requires. Each limit decides with the same Lua code as its own script. The check goes over the first
/// limiter's connection, with its timeout and time source; the limiters' near caches are not
/// used. On a cluster, `MOVED` and `ASK` redirections are followed as for single checks; while
/// a slot migrates, Redis refuses a multi-key script whose keys are not all on one side
/// (`TRYAGAIN`), which fails the check as [`RedisLimiterError::Server`] with nothing charged.
///
/// Decisions are those of `traffik_core::check_all` over the same limits in the same order:
/// the first limit that denies answers; admitted, the limit with the least left answers, with
/// the longest `reset_after`.
pub struct RedisMultiLimiter {
    limiters: Vec<RedisLimiter>,
    capacities: Vec<u64>,
    /// Which limits are sliding window logs (two keys each: the log and its meta hash).
    logs: Vec<bool>,
    body: String,
    sha: String,
}

impl fmt::Debug for RedisMultiLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisMultiLimiter")
            .field("limiters", &self.limiters)
            .finish_non_exhaustive()
    }
}

impl RedisMultiLimiter {
    /// The limits, checked in this order (put the one most likely to deny first).
    ///
    /// # Errors
    ///
    /// [`RedisLimiterError::Config`] for no limiter, an unlimited one, or two that share their
    /// keys (same prefix and algorithm). Every algorithm is accepted.
    pub fn new(limiters: Vec<RedisLimiter>) -> Result<Self, RedisLimiterError> {
        if limiters.is_empty() {
            return Err(RedisLimiterError::config(
                "a multi-limit needs at least one limiter",
            ));
        }
        let mut kinds = Vec::with_capacity(limiters.len());
        let mut capacities = Vec::with_capacity(limiters.len());
        let mut logs = Vec::with_capacity(limiters.len());
        for (i, l) in limiters.iter().enumerate() {
            let inner = &l.inner;
            let (kind, params) = match inner.algorithm {
                RedisAlgorithm::Gcra | RedisAlgorithm::LeakyBucket => (0, 4),
                RedisAlgorithm::TokenBucket => (1, 5),
                RedisAlgorithm::FixedWindow => (2, 4),
                RedisAlgorithm::SlidingWindowCounter => (3, 4),
                RedisAlgorithm::SlidingWindowLog => (4, 3),
                RedisAlgorithm::DebtBucket { .. } => (5, 6),
                RedisAlgorithm::QuotaRollover(_) => (6, 8),
            };
            if inner.plan.unlimited || inner.plan.params.len() != params {
                return Err(RedisLimiterError::config(format!(
                    "limiter {i} is unlimited: leave it out of the multi-limit"
                )));
            }
            if limiters[..i]
                .iter()
                .any(|o| o.redis_key(b"k") == l.redis_key(b"k"))
            {
                return Err(RedisLimiterError::config(format!(
                    "limiter {i} shares its keys with an earlier one: give each its own prefix"
                )));
            }
            kinds.push(kind);
            logs.push(kind == 4);
            capacities.push(inner.plan.capacity);
        }
        let limits: Vec<(u64, &[u64])> = kinds
            .iter()
            .zip(&limiters)
            .map(|(&kind, l)| (kind, l.inner.plan.params.as_slice()))
            .collect();
        let (body, sha) = multi(&limits);
        Ok(RedisMultiLimiter {
            limiters,
            capacities,
            logs,
            body,
            sha,
        })
    }

    /// The Redis keys of `key`'s state, one per limit, all in one cluster slot (a sliding window
    /// log's meta key, this name followed by `:m`, is not listed).
    pub fn redis_keys(&self, key: &[u8]) -> Vec<Vec<u8>> {
        self.limiters.iter().map(|l| l.redis_key(key)).collect()
    }

    /// The limiters, one per limit.
    pub fn limiters(&self) -> &[RedisLimiter] {
        &self.limiters
    }

    fn first(&self) -> &RedisLimiter {
        // `new` refuses an empty list.
        &self.limiters[0]
    }

    /// Checks `cost` for `key` against every limit at the configured time source, charging all
    /// of them or none.
    pub async fn check(
        &self,
        key: impl AsRef<[u8]>,
        cost: u64,
    ) -> Result<Decision, RedisLimiterError> {
        self.run(key.as_ref(), cost, self.first().now()).await
    }

    /// [`check`](Self::check) as if the time were `now_nanos` on the caller's clock.
    pub async fn check_at(
        &self,
        key: impl AsRef<[u8]>,
        cost: u64,
        now_nanos: u64,
    ) -> Result<Decision, RedisLimiterError> {
        self.run(key.as_ref(), cost, Now::Nanos(now_nanos)).await
    }

    /// What a check would say under the tightest limit, charging nothing.
    pub async fn peek(&self, key: impl AsRef<[u8]>) -> Result<Decision, RedisLimiterError> {
        self.check(key, 0).await
    }

    /// Forgets `key` under every limit.
    pub async fn reset(&self, key: impl AsRef<[u8]>) -> Result<(), RedisLimiterError> {
        for l in &self.limiters {
            l.reset(key.as_ref()).await?;
        }
        Ok(())
    }

    fn command(&self, by_sha: bool, keys: &[Vec<u8>], cost: u64, now: Now) -> Cmd {
        let mut cmd = crate::scripts::eval(by_sha, &self.sha, &self.body);
        let logs = self.logs.iter().filter(|&&log| log).count();
        cmd.arg(keys.len() + logs);
        for (k, &log) in keys.iter().zip(&self.logs) {
            cmd.arg(k);
            if log {
                cmd.arg(meta_key(k));
            }
        }
        cmd.arg(cost);
        if let Now::Nanos(n) = now {
            for l in &self.limiters {
                let unit = l.inner.plan.unit;
                cmd.arg(n / unit).arg(n % unit);
            }
        }
        cmd
    }

    async fn run(&self, key: &[u8], cost: u64, now: Now) -> Result<Decision, RedisLimiterError> {
        let first = self.first();
        let deadline = tokio::time::Instant::now() + first.inner.timeout;
        let keys = self.redis_keys(key);
        // As `RedisLimiter`'s single check, on the first limit's connection.
        let reply = first
            .send_script(&keys[0], deadline, false, |by_sha| {
                self.command(by_sha, &keys, cost, now)
            })
            .await?;
        self.finish(&keys[0], reply)
    }

    /// Parses the reply, whose limit is that of the limit that answered.
    fn finish(&self, key: &[u8], reply: Value) -> Result<Decision, RedisLimiterError> {
        let limit = match &reply {
            // Five doubles, or seven with the durations split.
            Value::BulkString(b) if b.len() == 40 || b.len() == 56 => {
                let mut raw = [0u8; 8];
                raw.copy_from_slice(&b[8..16]);
                let v = f64::from_le_bytes(raw);
                self.capacities
                    .iter()
                    .copied()
                    .find(|&c| c as f64 == v)
                    .ok_or_else(|| {
                        bad_reply(format!(
                            "limit {v} in the reply is none of this multi-limit's"
                        ))
                    })?
            }
            // A too-big reply or an error: the parser reports it (any capacity will do).
            _ => self.capacities[0],
        };
        // Split durations come in whole seconds and nanoseconds, whatever the limits' units.
        parse_reply(reply, key, limit, NANOS_PER_SEC)
    }
}

/// Any byte-like key, as for [`RedisLimiter`].
impl<K: AsRef<[u8]> + ?Sized + Sync> AsyncLimiter<K> for RedisMultiLimiter {
    type Error = RedisLimiterError;

    async fn check(&self, key: &K, cost: u64) -> Result<Decision, Self::Error> {
        RedisMultiLimiter::check(self, key, cost).await
    }

    async fn peek(&self, key: &K) -> Result<Decision, Self::Error> {
        RedisMultiLimiter::peek(self, key).await
    }

    async fn reset(&self, key: &K) -> Result<(), Self::Error> {
        RedisMultiLimiter::reset(self, key).await
    }
}
