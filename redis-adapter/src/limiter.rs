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
        let mut out: Vec<Option<Result<Decision, RedisLimiterError>>> =
            Vec::with_capacity(checks.len());
        let mut pending = Vec::new();
        for (i, (key, cost)) in checks.iter().enumerate() {
            match self.local_answer(key.as_ref(), *cost, now, true) {
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

    fn command(&self, p: &Prepared, by_sha: bool) -> Cmd {
        if let Some(g) = p.params {
            let split = match p.now {
                Now::Nanos(n) => Some((n / dynamic::UNIT, n % dynamic::UNIT)),
                Now::Server => None,
            };
            let args = [p.cost, g.interval_nanos(), g.burst()];
            return self
                .inner
                .dynamic
                .command_args(by_sha, &p.key, &args, split);
        }
        let split = match p.now {
            Now::Nanos(n) => Some((n / self.inner.plan.unit, n % self.inner.plan.unit)),
            Now::Server => None,
        };
        self.inner.script.command(by_sha, &p.key, p.cost, split)
    }

    async fn within<T>(
        &self,
        label: &str,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisLimiterError> {
        match tokio::time::timeout(self.inner.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RedisLimiterError::from_redis(e, label)),
            Err(_) => Err(RedisLimiterError::Timeout {
                after: self.inner.timeout,
            }),
        }
    }

    /// One check, one round trip. The only resends are of commands a server refused without
    /// running them: a `NOSCRIPT` (once, by body) and, on a cluster, `MOVED` and `ASK`
    /// redirections (up to [`MAX_REDIRECTS`]).
    async fn remote(&self, p: &Prepared) -> Result<Decision, RedisLimiterError> {
        self.remote_until(p, tokio::time::Instant::now() + self.inner.timeout)
            .await
    }

    async fn remote_until(
        &self,
        p: &Prepared,
        deadline: tokio::time::Instant,
    ) -> Result<Decision, RedisLimiterError> {
        let label = || String::from_utf8_lossy(&p.key).into_owned();
        let mut conn = self.inner.conn.clone();
        let cluster = matches!(conn, Conn::Cluster(_));
        let (mut by_sha, mut redirect, mut redirects) = (true, None::<Redirect>, 0);
        loop {
            if let Err(unsent) = self.ready(&conn, deadline).await {
                return Err(unsent.error_for(&p.key, self.inner.timeout));
            }
            self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
            let cmd = self.command(p, by_sha);
            let sent = match &redirect {
                None => tokio::time::timeout_at(deadline, conn.req_packed_command(&cmd)).await,
                Some(to) => tokio::time::timeout_at(deadline, conn.send_redirected(&cmd, to)).await,
            };
            let err = match sent {
                Err(_) => return Err(self.timed_out()),
                Ok(Ok(v)) if by_sha && is_noscript(&v) => {
                    // The script never ran: sending its body is safe and caches it again.
                    by_sha = false;
                    continue;
                }
                Ok(Ok(v)) => return self.finish(p, v),
                Ok(Err(e)) => e,
            };
            if by_sha && err.kind() == redis::ErrorKind::NoScriptError {
                by_sha = false;
                continue;
            }
            if cluster && redirects < MAX_REDIRECTS {
                if let Some(to) = Redirect::of(&err) {
                    redirects += 1;
                    redirect = Some(to);
                    continue;
                }
                if matches!(redirect, Some(Redirect::Moved(_))) && is_unknown_node(&err) {
                    // Not sent: no connection to that node yet. The `MOVED` made the client
                    // refresh its slot map, so routing by slot reaches the new owner.
                    redirects += 1;
                    redirect = None;
                    continue;
                }
            }
            return Err(RedisLimiterError::from_redis(err, &label()));
        }
    }

    /// Many checks in one pipeline; entries answered `NOSCRIPT` (whose script never ran) are
    /// resent once by body, no other entry ever is. On a cluster every entry must hash to one
    /// slot.
    async fn remote_pipelined(
        &self,
        pending: &[(usize, Prepared)],
    ) -> Vec<Result<Decision, RedisLimiterError>> {
        let deadline = tokio::time::Instant::now() + self.inner.timeout;
        let mut conn = self.inner.conn.clone();
        let first = self
            .send_pipeline(&mut conn, pending.iter().map(|(_, p)| p), true, deadline)
            .await;
        let replies = match first {
            Ok(v) => v,
            Err(Failure::Redirected(_)) => {
                return self
                    .one_by_one(pending.iter().map(|(_, p)| p), deadline)
                    .await
            }
            Err(failure) => {
                return pending
                    .iter()
                    .map(|(_, p)| Err(failure.error_for(&p.key, self.inner.timeout)))
                    .collect()
            }
        };
        let mut out = Vec::with_capacity(pending.len());
        let mut retry = Vec::new();
        for (idx, ((_, p), reply)) in pending.iter().zip(replies).enumerate() {
            match reply {
                Reply::NoScript => {
                    out.push(None);
                    retry.push(idx);
                }
                Reply::Value(reply) => out.push(Some(self.finish(p, reply))),
            }
        }
        if !retry.is_empty() {
            let again = self
                .send_pipeline(
                    &mut conn,
                    retry.iter().map(|&idx| &pending[idx].1),
                    false,
                    deadline,
                )
                .await;
            match again {
                Ok(v) => {
                    for (&idx, reply) in retry.iter().zip(v) {
                        let p = &pending[idx].1;
                        out[idx] = Some(match reply {
                            Reply::Value(reply) => self.finish(p, reply),
                            Reply::NoScript => Err(bad_reply(format!(
                                "NOSCRIPT in reply to the script's body for {}",
                                String::from_utf8_lossy(&p.key)
                            ))),
                        });
                    }
                }
                Err(Failure::Redirected(_)) => {
                    let answers = self
                        .one_by_one(retry.iter().map(|&idx| &pending[idx].1), deadline)
                        .await;
                    for (&idx, answer) in retry.iter().zip(answers) {
                        out[idx] = Some(answer);
                    }
                }
                Err(failure) => {
                    for &idx in &retry {
                        out[idx] = Some(Err(
                            failure.error_for(&pending[idx].1.key, self.inner.timeout)
                        ));
                    }
                }
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(bad_reply("missing pipeline reply".into()))))
            .collect()
    }

    /// The checks of a cluster transaction that was redirected (so none of them ran), each
    /// sent on its own, following its own redirections, concurrently.
    async fn one_by_one<'p>(
        &self,
        checks: impl Iterator<Item = &'p Prepared>,
        deadline: tokio::time::Instant,
    ) -> Vec<Result<Decision, RedisLimiterError>> {
        futures_util::future::join_all(checks.map(|p| self.remote_until(p, deadline))).await
    }

    /// Sends the checks as one pipeline (by SHA or by body) and returns one reply per check.
    ///
    /// On a single node the pipeline is plain and every reply arrives on its own. The cluster
    /// client collapses a pipeline's replies into its first error, which would hide which
    /// entries ran; there the pipeline is a `MULTI`/`EXEC` transaction instead: the script
    /// cache cannot change during `EXEC`, so a `NOSCRIPT` means no entry ran, and any other
    /// error is a failure of the whole (never resent).
    async fn send_pipeline<'p>(
        &self,
        conn: &mut Conn,
        checks: impl ExactSizeIterator<Item = &'p Prepared>,
        by_sha: bool,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<Reply>, Failure> {
        let n = checks.len();
        let mut pipe = redis::pipe();
        for p in checks {
            pipe.add_command(self.command(p, by_sha));
        }
        self.ready(conn, deadline).await?;
        self.inner
            .round_trips
            .fetch_add(n as u64, Ordering::Relaxed);
        let count_mismatch = |got: usize| Failure::Count(got, n);
        match conn {
            Conn::Single(_) => {
                match tokio::time::timeout_at(deadline, conn.req_packed_commands(&pipe, 0, n)).await
                {
                    Err(_) => Err(Failure::Timeout),
                    Ok(Err(e)) => Err(Failure::Redis(e.into())),
                    Ok(Ok(v)) if v.len() == n => Ok(v.into_iter().map(Reply::from).collect()),
                    Ok(Ok(v)) => Err(count_mismatch(v.len())),
                }
            }
            Conn::Cluster(_) => {
                pipe.atomic();
                // The replies to MULTI and to each queued command are skipped; EXEC's is kept.
                match tokio::time::timeout_at(deadline, conn.req_packed_commands(&pipe, n + 1, 1))
                    .await
                {
                    Err(_) => Err(Failure::Timeout),
                    Ok(Err(e)) if e.kind() == redis::ErrorKind::NoScriptError => {
                        Ok((0..n).map(|_| Reply::NoScript).collect())
                    }
                    // Redirected at queueing or at `EXEC`: the transaction was discarded.
                    Ok(Err(e)) if Redirect::of(&e).is_some() => Err(Failure::Redirected(e.into())),
                    Ok(Err(e)) => Err(Failure::Transaction(e.into())),
                    Ok(Ok(mut v)) => match v.pop() {
                        Some(Value::Array(replies)) if v.is_empty() && replies.len() == n => {
                            Ok(replies.into_iter().map(Reply::from).collect())
                        }
                        Some(Value::Array(replies)) if v.is_empty() => {
                            Err(count_mismatch(replies.len()))
                        }
                        other => Err(Failure::Reply(format!(
                            "expected EXEC's array of {n} replies, got {other:?}"
                        ))),
                    },
                }
            }
        }
    }

    /// Waits for the connection under the call's deadline: a failure here sent nothing.
    async fn ready(&self, conn: &Conn, deadline: tokio::time::Instant) -> Result<(), Failure> {
        match tokio::time::timeout_at(deadline, conn.ready()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::Redis(e.into())),
            Err(_) => Err(Failure::NoConnection),
        }
    }

    fn timed_out(&self) -> RedisLimiterError {
        RedisLimiterError::Timeout {
            after: self.inner.timeout,
        }
    }

    /// Parses a script reply and feeds the near cache.
    fn finish(&self, p: &Prepared, reply: Value) -> Result<Decision, RedisLimiterError> {
        if let Some(g) = p.params {
            return parse_reply(reply, &p.key, g.burst(), dynamic::UNIT);
        }
        let plan = &self.inner.plan;
        let decision = parse_reply(reply, &p.key, plan.capacity, plan.unit)?;
        if let (Some(near), Some(local), true) = (
            &self.inner.near,
            p.local,
            decision.is_denied() && p.cost > 0,
        ) {
            near.record(&p.key, p.cost, local, &decision);
        }
        Ok(decision)
    }
}
