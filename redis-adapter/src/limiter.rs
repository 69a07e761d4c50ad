//! The async limiter: checks, batches, and the round trips behind them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionLike;
use redis::{Cmd, Value};
use traffik_core::{Decision, GcraParams};

use crate::config::{Plan, RedisAlgorithm, RedisLimiterBuilder, TimeSource};
use crate::connection::{connect, is_unknown_node, Conn, Redirect, Target, MAX_REDIRECTS};
use crate::error::RedisLimiterError;
use crate::keys::{self, meta_key, slot_groups};
use crate::near_cache::{NearCache, NearCacheStats};
use crate::reply::{bad_reply, is_noscript, parse_reply, Failure, Reply};
use crate::scripts::LoadedScript;

mod dynamic;
mod multi;
mod transport;
pub use dynamic::RedisTiered;
pub use multi::RedisMultiLimiter;

struct Inner {
    conn: Conn,
    script: LoadedScript,
    /// The GCRA script with per-call parameters (`check_gcra`), loaded on first use.
    dynamic: LoadedScript,
    plan: Plan,
    algorithm: RedisAlgorithm,
    prefix: String,
    timeout: Duration,
    time_source: TimeSource,
    near: Option<NearCache>,
    started: Instant,
    hits: AtomicU64,
    round_trips: AtomicU64,
}

/// A rate limiter whose per-key state lives in Redis. Cheap to clone; clones share the
/// connection and near cache.
#[derive(Clone)]
pub struct RedisLimiter {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("algorithm", &self.inner.algorithm)
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .field("time_source", &self.inner.time_source)
            .field("near_cache", &self.inner.near.is_some())
            .finish_non_exhaustive()
    }
}

/// "Now" for one call.
#[derive(Clone, Copy)]
enum Now {
    Server,
    Nanos(u64),
}

/// One prepared check.
struct Prepared {
    key: Vec<u8>,
    cost: u64,
    now: Now,
    /// The near cache's clock when the request was built, if this call uses the cache.
    local: Option<u64>,
    /// The GCRA parameters of a `check_gcra` (which runs the dynamic script, uncached).
    params: Option<GcraParams>,
}

impl RedisLimiter {
    /// Connects as `builder` says, with the validated `algorithm` and `plan`, and loads the
    /// script.
    pub(crate) async fn connect(
        builder: RedisLimiterBuilder,
        algorithm: RedisAlgorithm,
        plan: Plan,
    ) -> Result<RedisLimiter, RedisLimiterError> {
        let timeout = builder.timeout;
        let conn = match tokio::time::timeout(timeout, connect(builder.target, timeout)).await {
            Ok(conn) => conn?,
            Err(_) => {
                return Err(RedisLimiterError::Connection {
                    detail: format!("no connection within {timeout:?}"),
                    source: None,
                })
            }
        };
        let script = LoadedScript::new(algorithm, &plan.params);
        let inner = Inner {
            conn,
            script,
            dynamic: LoadedScript::gcra_dynamic(),
            plan,
            algorithm,
            prefix: builder.prefix,
            timeout,
            time_source: builder.time_source,
            near: builder.near_cache.then(NearCache::default),
            started: Instant::now(),
            hits: AtomicU64::new(0),
            round_trips: AtomicU64::new(0),
        };
        let limiter = RedisLimiter {
            inner: Arc::new(inner),
        };
        if !limiter.inner.plan.unlimited {
            limiter.load_script().await?;
        }
        Ok(limiter)
    }

    /// Starts a builder connecting to `target`: a `redis://` URL, a [`redis::Client`], a
    /// [`ClusterClientBuilder`](redis::cluster::ClusterClientBuilder) or a [`Target`].
    pub fn builder(target: impl Into<Target>) -> RedisLimiterBuilder {
        RedisLimiterBuilder {
            target: target.into(),
            rate: None,
            algorithm: Ok(RedisAlgorithm::Gcra),
            burst: None,
            prefix: "traffik".into(),
            timeout: Duration::from_secs(1),
            time_source: TimeSource::Server,
            near_cache: false,
        }
    }

    /// Checks `cost` units for `key` at the configured time source and charges them if allowed.
    pub async fn check(
        &self,
        key: impl AsRef<[u8]>,
        cost: u64,
    ) -> Result<Decision, RedisLimiterError> {
        let now = self.now();
        self.check_now(key.as_ref(), cost, now, true).await
    }

    /// Checks as if the time were `now_nanos` (caller's clock, nanoseconds below 2^62), whatever
    /// the configured time source. It bypasses the near cache (neither answered from it nor
    /// feeding it): the cache keeps time on the configured source, and `now_nanos` may be on
    /// any clock.
    pub async fn check_at(
        &self,
        key: impl AsRef<[u8]>,
        cost: u64,
        now_nanos: u64,
    ) -> Result<Decision, RedisLimiterError> {
        self.check_now(key.as_ref(), cost, Now::Nanos(now_nanos), false)
            .await
    }

    /// What a check would say, charging nothing (a zero-cost check).
    pub async fn peek(&self, key: impl AsRef<[u8]>) -> Result<Decision, RedisLimiterError> {
        self.check(key, 0).await
    }

    /// Forgets `key`: its next check sees a fresh state.
    pub async fn reset(&self, key: impl AsRef<[u8]>) -> Result<(), RedisLimiterError> {
        let key = self.redis_key(key.as_ref());
        if let Some(near) = &self.inner.near {
            near.forget(&key);
        }
        let log = self.inner.algorithm == RedisAlgorithm::SlidingWindowLog;
        self.delete(key, log).await
    }

    /// `DEL` of `key` (and, if `with_meta`, its meta key).
    async fn delete(&self, key: Vec<u8>, with_meta: bool) -> Result<(), RedisLimiterError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(&key);
        if with_meta {
            cmd.arg(meta_key(&key));
        }
        let label = String::from_utf8_lossy(&key).into_owned();
        let mut conn = self.inner.conn.clone();
        let reply = self.within(&label, conn.req_packed_command(&cmd)).await?;
        match reply {
            Value::Int(_) => Ok(()),
            Value::ServerError(e) => Err(RedisLimiterError::from_redis(
                redis::RedisError::from(e),
                &label,
            )),
            other => Err(bad_reply(format!("DEL answered {other:?}"))),
        }
    }

    /// Checks many `(key, cost)` pairs in one pipelined round trip. On a cluster the checks are
    /// grouped by hash slot and each group is one pipeline (a `MULTI`/`EXEC` transaction, so
    /// that a `NOSCRIPT` is known to concern every check in it), the groups sent concurrently;
    /// a group of one check is a plain request. Results are in input order; each check succeeds
    /// or fails on its own. A failure of a whole round trip is reported for every check it
    /// carried.
    ///
    /// On a cluster, the client reports only a transaction's first error, so an error in one
    /// check of a slot group (a key holding a foreign value, say) loses the replies of the
    /// others in that transaction, which ran: each check of the group then fails as
    /// [`RedisLimiterError::ReplyLost`] (indeterminate), and none is resent.
    pub async fn check_many<K: AsRef<[u8]>>(
        &self,
        checks: &[(K, u64)],
    ) -> Vec<Result<Decision, RedisLimiterError>> {
        let now = self.now();
        let answers = checks
            .iter()
            .map(|(key, cost)| self.local_answer(key.as_ref(), *cost, now, true))
            .collect();
        self.send_many(answers).await
    }

    /// The checks of a batch, each answered locally or prepared, with the prepared ones sent
    /// as [`check_many`](Self::check_many) says; results in input order.
    async fn send_many(
        &self,
        checks: Vec<Result<Result<Decision, RedisLimiterError>, Prepared>>,
    ) -> Vec<Result<Decision, RedisLimiterError>> {
        let mut out: Vec<Option<Result<Decision, RedisLimiterError>>> =
            Vec::with_capacity(checks.len());
        let mut pending = Vec::new();
        for (i, check) in checks.into_iter().enumerate() {
            match check {
                Ok(answer) => out.push(Some(answer)),
                Err(prepared) => {
                    out.push(None);
                    pending.push((i, prepared));
                }
            }
        }
        if pending.is_empty() {
            return out.into_iter().flatten().collect();
        }
        let groups = match &self.inner.conn {
            Conn::Cluster(_) => slot_groups(pending, |(_, p)| &p.key),
            Conn::Single(_) => vec![pending],
        };
        let answers = futures_util::future::join_all(groups.iter().map(|group| async move {
            match group.as_slice() {
                [(_, p)] if matches!(self.inner.conn, Conn::Cluster(_)) => {
                    vec![self.remote(p).await]
                }
                _ => self.remote_pipelined(group).await,
            }
        }))
        .await;
        for (group, answers) in groups.iter().zip(answers) {
            for ((i, _), answer) in group.iter().zip(answers) {
                out[*i] = Some(answer);
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(bad_reply("missing pipeline reply".into()))))
            .collect()
    }

    /// Near-cache hits and round trips so far.
    pub fn stats(&self) -> NearCacheStats {
        NearCacheStats {
            hits: self.inner.hits.load(Ordering::Relaxed),
            round_trips: self.inner.round_trips.load(Ordering::Relaxed),
        }
    }

    /// The Redis key (or first key) that holds `key`'s state: `<prefix>:{<key>}:<algorithm>`,
    /// with `%` in `key` written `%25`, `}` written `%7D`, and the empty key written `%`. The
    /// braces are a Redis Cluster hash tag that is never empty and never closed early, so every
    /// key of one check lands in one slot whatever bytes `key` holds.
    pub fn redis_key(&self, key: &[u8]) -> Vec<u8> {
        keys::redis_key(&self.inner.prefix, key, self.inner.algorithm.tag())
    }

    /// The SHA1 of this limiter's script (one script per algorithm and configuration), e.g. for
    /// `SCRIPT EXISTS` or to replay checks with `redis-benchmark`.
    pub fn script_sha(&self) -> &str {
        &self.inner.script.sha
    }

    /// Loads the script on the server (every primary on a cluster).
    async fn load_script(&self) -> Result<(), RedisLimiterError> {
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(&self.inner.script.body);
        let mut conn = self.inner.conn.clone();
        match self
            .within("SCRIPT LOAD", conn.req_packed_command(&cmd))
            .await?
        {
            Value::ServerError(e) => Err(RedisLimiterError::from_redis(
                redis::RedisError::from(e),
                "SCRIPT LOAD",
            )),
            _ => Ok(()),
        }
    }

    fn now(&self) -> Now {
        match &self.inner.time_source {
            TimeSource::Server => Now::Server,
            TimeSource::System => Now::Nanos(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
                    .unwrap_or(0),
            ),
            TimeSource::Custom(f) => Now::Nanos(f()),
        }
    }

    /// The near cache's clock, on the configured time source: its nanoseconds for a caller
    /// clock (the time the check is decided at), local monotonic time for server time (which
    /// runs at the rate of Redis's).
    fn local_now(&self, now: Now) -> u64 {
        match now {
            Now::Nanos(n) => n,
            Now::Server => {
                u64::try_from(self.inner.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
            }
        }
    }

    async fn check_now(
        &self,
        key: &[u8],
        cost: u64,
        now: Now,
        cached: bool,
    ) -> Result<Decision, RedisLimiterError> {
        match self.local_answer(key, cost, now, cached) {
            Ok(answer) => answer,
            Err(prepared) => self.remote(&prepared).await,
        }
    }

    /// Answers without Redis when possible (capacity, unlimited, and the near cache if `cached`:
    /// `now` is on the configured time source); otherwise the prepared request.
    fn local_answer(
        &self,
        key: &[u8],
        cost: u64,
        now: Now,
        cached: bool,
    ) -> Result<Result<Decision, RedisLimiterError>, Prepared> {
        let plan = &self.inner.plan;
        if plan.unlimited {
            return Ok(Ok(Decision::allow(u64::MAX, u64::MAX, 0)));
        }
        if cost > plan.capacity {
            return Ok(Err(RedisLimiterError::InsufficientCapacity {
                max: plan.capacity,
            }));
        }
        let redis_key = self.redis_key(key);
        let local = (cached && self.inner.near.is_some()).then(|| self.local_now(now));
        if let (Some(near), Some(local), true) = (&self.inner.near, local, cost > 0) {
            if let Some(denied) = near.lookup(&redis_key, cost, local) {
                self.inner.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Ok(denied));
            }
        }
        Err(Prepared {
            key: redis_key,
            cost,
            now,
            local,
            params: None,
        })
    }
}
