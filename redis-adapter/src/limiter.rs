//! The async limiter, its builder and its connection.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use traffik_core::{Algorithm, AlgorithmKind, AnyAlgorithm, Decision, Rate};

use crate::error::RedisLimiterError;
use crate::scripts::LoadedScript;

/// 2^52: bound on every integer the scripts multiply or store.
const LIMIT_52: u64 = 1 << 52;
const NANOS_PER_SEC: u64 = 1_000_000_000;
/// The largest limit accepted for the sliding window log (it stores one entry per unit).
const MAX_LOG_LIMIT: u64 = 1_000_000;
/// Near-cache entries kept before expired ones are swept.
const NEAR_CACHE_CAP: usize = 65_536;

/// Which algorithm the scripts run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RedisAlgorithm {
    /// [`traffik_core::Gcra`]: the default.
    #[default]
    Gcra,
    /// [`traffik_core::TokenBucket`].
    TokenBucket,
    /// [`traffik_core::LeakyBucket`].
    LeakyBucket,
    /// [`traffik_core::FixedWindow`].
    FixedWindow,
    /// [`traffik_core::SlidingWindowCounter`].
    SlidingWindowCounter,
    /// An exact sliding window log: a sorted set of admission times per key, `limit` units in
    /// any window of one period (an entry at `e` counts at `t` while `e > t - period`). Memory
    /// and time are O(limit) per key; there is no in-process counterpart.
    SlidingWindowLog,
}

impl From<AlgorithmKind> for RedisAlgorithm {
    fn from(kind: AlgorithmKind) -> Self {
        match kind {
            AlgorithmKind::TokenBucket => RedisAlgorithm::TokenBucket,
            AlgorithmKind::LeakyBucket => RedisAlgorithm::LeakyBucket,
            AlgorithmKind::FixedWindow => RedisAlgorithm::FixedWindow,
            AlgorithmKind::SlidingWindowCounter => RedisAlgorithm::SlidingWindowCounter,
            _ => RedisAlgorithm::Gcra,
        }
    }
}

impl RedisAlgorithm {
    fn tag(self) -> &'static str {
        match self {
            RedisAlgorithm::Gcra => "gcra",
            RedisAlgorithm::TokenBucket => "tb",
            RedisAlgorithm::LeakyBucket => "lb",
            RedisAlgorithm::FixedWindow => "fw",
            RedisAlgorithm::SlidingWindowCounter => "swc",
            RedisAlgorithm::SlidingWindowLog => "swl",
        }
    }
}

/// Where a check's "now" comes from.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum TimeSource {
    /// Redis's `TIME`, read inside the script (microsecond granularity). All clients agree.
    #[default]
    Server,
    /// The caller's system clock, nanoseconds since the Unix epoch.
    System,
    /// A caller-supplied clock in nanoseconds (below 2^62).
    Custom(Arc<dyn Fn() -> u64 + Send + Sync>),
}

impl fmt::Debug for TimeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeSource::Server => f.write_str("Server"),
            TimeSource::System => f.write_str("System"),
            TimeSource::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// What to connect to.
#[derive(Clone)]
#[non_exhaustive]
pub enum Target {
    /// A `redis://` URL; the limiter keeps a reconnecting [`ConnectionManager`].
    Url(String),
    /// An existing client; the limiter keeps a reconnecting [`ConnectionManager`] on it.
    Client(redis::Client),
    /// Redis Cluster seed node URLs.
    Cluster(Vec<String>),
    /// An existing cluster client.
    ClusterClient(ClusterClient),
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Url(u) => f.debug_tuple("Url").field(u).finish(),
            Target::Client(c) => f.debug_tuple("Client").field(c).finish(),
            Target::Cluster(n) => f.debug_tuple("Cluster").field(n).finish(),
            Target::ClusterClient(_) => f.write_str("ClusterClient(..)"),
        }
    }
}

impl Target {
    /// A Redis Cluster reached through these seed nodes.
    pub fn cluster<I, S>(nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Target::Cluster(nodes.into_iter().map(Into::into).collect())
    }
}

impl From<&str> for Target {
    fn from(url: &str) -> Self {
        Target::Url(url.to_owned())
    }
}
impl From<String> for Target {
    fn from(url: String) -> Self {
        Target::Url(url)
    }
}
impl From<redis::Client> for Target {
    fn from(client: redis::Client) -> Self {
        Target::Client(client)
    }
}
impl From<ClusterClient> for Target {
    fn from(client: ClusterClient) -> Self {
        Target::ClusterClient(client)
    }
}

/// The connection: a self-reconnecting single node, or a cluster.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Counters of the near cache and of round trips.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NearCacheStats {
    /// Checks answered locally as denied, without a round trip.
    pub hits: u64,
    /// Checks (and pipelined batch entries) that went to Redis.
    pub round_trips: u64,
}

#[derive(Clone, Copy)]
struct NearEntry {
    /// Smallest cost Redis denied.
    cost: u64,
    /// Local time (see `Inner::local_now`) until which that cost stays denied.
    until: u64,
    /// Local time at which Redis said the key is fresh.
    reset_at: u64,
    remaining: u64,
    limit: u64,
}

/// Builds a [`RedisLimiter`]; see [`RedisLimiter::builder`].
#[derive(Debug)]
#[must_use]
pub struct RedisLimiterBuilder {
    target: Target,
    rate: Option<Rate>,
    algorithm: RedisAlgorithm,
    burst: Option<u64>,
    prefix: String,
    timeout: Duration,
    time_source: TimeSource,
    near_cache: bool,
}

impl RedisLimiterBuilder {
    /// The rate every key is limited to (required).
    pub fn rate(mut self, rate: Rate) -> Self {
        self.rate = Some(rate);
        self
    }

    /// The algorithm (default GCRA). Takes a [`RedisAlgorithm`] or a core [`AlgorithmKind`].
    pub fn algorithm(mut self, algorithm: impl Into<RedisAlgorithm>) -> Self {
        self.algorithm = algorithm.into();
        self
    }

    /// Burst (GCRA) or capacity (buckets); defaults to the rate's limit. Window algorithms take
    /// none.
    pub fn burst(mut self, burst: u64) -> Self {
        self.burst = Some(burst);
        self
    }

    /// The namespace put before every key (default `traffik`). It may not contain braces.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The most one call (or one pipelined batch) may take, connecting included (default 1 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Where "now" comes from (default [`TimeSource::Server`]).
    pub fn time_source(mut self, source: TimeSource) -> Self {
        self.time_source = source;
        self
    }

    /// Answers keys that Redis denied locally until their `retry_after` passes (default off).
    ///
    /// The cache remembers, per key, the smallest cost denied and until when; a check of at
    /// least that cost before then is denied without a round trip. Other clients can only
    /// consume more, so such a check would have been denied by Redis too: admissions are never
    /// affected. The cached denial reports the `remaining` Redis last reported (which may
    /// understate what has refilled since) and a `retry_after` that is a lower bound.
    pub fn near_cache(mut self, enabled: bool) -> Self {
        self.near_cache = enabled;
        self
    }

    /// Validates the configuration and connects.
    pub async fn build(self) -> Result<RedisLimiter, RedisLimiterError> {
        let rate = self
            .rate
            .ok_or_else(|| RedisLimiterError::Config("a rate is required".into()))?;
        if self.prefix.contains(['{', '}']) {
            return Err(RedisLimiterError::Config(
                "the prefix may not contain '{' or '}' (they delimit the cluster hash tag)".into(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(RedisLimiterError::Config(
                "the timeout must be positive".into(),
            ));
        }
        let plan = Plan::new(self.algorithm, rate, self.burst)?;
        let conn =
            match tokio::time::timeout(self.timeout, connect(self.target, self.timeout)).await {
                Ok(conn) => conn?,
                Err(_) => {
                    return Err(RedisLimiterError::Connection {
                        detail: format!("no connection within {:?}", self.timeout),
                    })
                }
            };
        let script = LoadedScript::new(self.algorithm, &plan.params);
        let inner = Inner {
            conn,
            script,
            plan,
            algorithm: self.algorithm,
            prefix: self.prefix,
            timeout: self.timeout,
            time_source: self.time_source,
            near: self.near_cache.then(|| Mutex::new(HashMap::new())),
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
}

async fn connect(target: Target, timeout: Duration) -> Result<Conn, RedisLimiterError> {
    let conn_err = |e: redis::RedisError| RedisLimiterError::Connection {
        detail: e.to_string(),
    };
    let single = |client: redis::Client| async move {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_number_of_retries(1)
            .set_factor(10)
            .set_max_delay(100);
        ConnectionManager::new_with_config(client, config)
            .await
            .map(Conn::Single)
            .map_err(conn_err)
    };
    let cluster = |client: ClusterClient| async move {
        client
            .get_async_connection()
            .await
            .map(Conn::Cluster)
            .map_err(conn_err)
    };
    match target {
        Target::Url(url) => {
            single(
                redis::Client::open(url.as_str()).map_err(|e| {
                    RedisLimiterError::Config(format!("bad Redis URL {url:?}: {e}"))
                })?,
            )
            .await
        }
        Target::Client(client) => single(client).await,
        Target::Cluster(nodes) => {
            let client = ClusterClient::builder(nodes)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .build()
                .map_err(|e| RedisLimiterError::Config(format!("bad cluster nodes: {e}")))?;
            cluster(client).await
        }
        Target::ClusterClient(client) => cluster(client).await,
    }
}

/// The per-limiter constants: the time unit `L`, the script arguments, and the capacity.
#[derive(Debug, Clone)]
struct Plan {
    unit: u64,
    /// The script constants, in the order its first line names them.
    params: Vec<u64>,
    capacity: u64,
    unlimited: bool,
}

impl Plan {
    fn new(alg: RedisAlgorithm, rate: Rate, burst: Option<u64>) -> Result<Self, RedisLimiterError> {
        let cfg = |m: String| RedisLimiterError::Config(m);
        if rate.is_unlimited() {
            return Ok(Plan {
                unit: 1,
                params: Vec::new(),
                capacity: u64::MAX,
                unlimited: true,
            });
        }
        let (limit, period) = (rate.limit(), rate.period_nanos());
        if period >= LIMIT_52 {
            return Err(cfg(format!(
                "period {period} ns is too long for exact Lua arithmetic (must be below 2^52 ns, about 52 days)"
            )));
        }
        // The unit: the period, or its smallest multiple of at least one second.
        let k = if period < NANOS_PER_SEC {
            NANOS_PER_SEC.div_ceil(period)
        } else {
            1
        };
        let unit = k * period;
        let (params, capacity) = if alg == RedisAlgorithm::SlidingWindowLog {
            if limit == 0 || limit > period {
                return Err(cfg(format!(
                    "rate {rate} is not a finite rate of at most one per ns"
                )));
            }
            if burst.is_some_and(|b| b != limit) {
                return Err(cfg("the sliding window log takes no burst".into()));
            }
            if limit > MAX_LOG_LIMIT {
                return Err(cfg(format!(
                    "the sliding window log stores one entry per unit; limit at most {MAX_LOG_LIMIT}"
                )));
            }
            (vec![unit, limit, period], limit)
        } else {
            let kind = match alg {
                RedisAlgorithm::TokenBucket => AlgorithmKind::TokenBucket,
                RedisAlgorithm::LeakyBucket => AlgorithmKind::LeakyBucket,
                RedisAlgorithm::FixedWindow => AlgorithmKind::FixedWindow,
                RedisAlgorithm::SlidingWindowCounter => AlgorithmKind::SlidingWindowCounter,
                _ => AlgorithmKind::Gcra,
            };
            let core = AnyAlgorithm::new(kind, rate, burst).map_err(|e| cfg(e.to_string()))?;
            let capacity = core.capacity();
            let params = match alg {
                RedisAlgorithm::Gcra | RedisAlgorithm::LeakyBucket => {
                    let interval = period.div_ceil(limit);
                    let tolerance = capacity.saturating_mul(interval);
                    if tolerance > LIMIT_52 / 2 {
                        return Err(cfg(format!(
                            "burst x interval = {tolerance} ns exceeds 2^51 ns (about 26 days)"
                        )));
                    }
                    vec![unit, interval, tolerance, capacity]
                }
                RedisAlgorithm::TokenBucket => {
                    if capacity > LIMIT_52 / 4 {
                        return Err(cfg("token bucket capacity exceeds 2^50".into()));
                    }
                    vec![unit, capacity, limit, period, k * limit]
                }
                _ => vec![unit, limit, period, k],
            };
            (params, capacity)
        };
        Ok(Plan {
            unit,
            params,
            capacity,
            unlimited: false,
        })
    }
}

struct Inner {
    conn: Conn,
    script: LoadedScript,
    plan: Plan,
    algorithm: RedisAlgorithm,
    prefix: String,
    timeout: Duration,
    time_source: TimeSource,
    near: Option<Mutex<HashMap<Vec<u8>, NearEntry>>>,
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
    /// The near-cache clock at the moment the request was built.
    local: u64,
}

impl RedisLimiter {
    /// Starts a builder connecting to `target`: a `redis://` URL, a [`redis::Client`], a
    /// [`ClusterClient`] or a [`Target`].
    pub fn builder(target: impl Into<Target>) -> RedisLimiterBuilder {
        RedisLimiterBuilder {
            target: target.into(),
            rate: None,
            algorithm: RedisAlgorithm::Gcra,
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
        self.check_now(key.as_ref(), cost, now).await
    }

    /// Checks as if the time were `now_nanos` (caller's clock, nanoseconds below 2^62), whatever
    /// the configured time source.
    pub async fn check_at(
        &self,
        key: impl AsRef<[u8]>,
        cost: u64,
        now_nanos: u64,
    ) -> Result<Decision, RedisLimiterError> {
        self.check_now(key.as_ref(), cost, Now::Nanos(now_nanos))
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
            lock(near).remove(&key);
        }
        let mut cmd = redis::cmd("DEL");
        cmd.arg(&key);
        if self.inner.algorithm == RedisAlgorithm::SlidingWindowLog {
            cmd.arg(meta_key(&key));
        }
        let label = String::from_utf8_lossy(&key).into_owned();
        let mut conn = self.inner.conn.clone();
        let reply = self.within(&label, conn.req_packed_command(&cmd)).await?;
        match reply {
            Value::Int(_) => Ok(()),
            Value::ServerError(e) => Err(RedisLimiterError::from_redis(&e.into(), &label)),
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
            match self.local_answer(key.as_ref(), *cost, now) {
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

    /// The Redis key (or first key) that holds `key`'s state: `{prefix}:{<key>}:<algorithm>`.
    pub fn redis_key(&self, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.inner.prefix.len() + key.len() + 10);
        out.extend_from_slice(self.inner.prefix.as_bytes());
        out.extend_from_slice(b":{");
        out.extend_from_slice(key);
        out.extend_from_slice(b"}:");
        out.extend_from_slice(self.inner.algorithm.tag().as_bytes());
        out
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
            Value::ServerError(e) => Err(RedisLimiterError::from_redis(&e.into(), "SCRIPT LOAD")),
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

    /// The near cache's clock: the caller's nanoseconds, or local monotonic time for server time.
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
    ) -> Result<Decision, RedisLimiterError> {
        match self.local_answer(key, cost, now) {
            Ok(answer) => answer,
            Err(prepared) => self.remote(&prepared).await,
        }
    }

    /// Answers without Redis when possible (capacity, unlimited, near cache); otherwise the
    /// prepared request.
    fn local_answer(
        &self,
        key: &[u8],
        cost: u64,
        now: Now,
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
        let local = self.local_now(now);
        if let (Some(near), true) = (&self.inner.near, cost > 0) {
            let mut map = lock(near);
            if let Some(e) = map.get(&redis_key).copied() {
                if local < e.until && cost >= e.cost {
                    self.inner.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(Ok(Decision::deny(
                        e.limit,
                        e.remaining,
                        e.until - local,
                        e.reset_at.saturating_sub(local),
                    )));
                }
                if local >= e.until {
                    map.remove(&redis_key);
                }
            }
        }
        Err(Prepared {
            key: redis_key,
            cost,
            now,
            local,
        })
    }

    fn command(&self, p: &Prepared, by_sha: bool) -> Cmd {
        let inner = &self.inner;
        let mut cmd = if by_sha {
            let mut c = redis::cmd("EVALSHA");
            c.arg(&inner.script.sha);
            c
        } else {
            let mut c = redis::cmd("EVAL");
            c.arg(&inner.script.body);
            c
        };
        if inner.algorithm == RedisAlgorithm::SlidingWindowLog {
            cmd.arg(2).arg(&p.key).arg(meta_key(&p.key));
        } else {
            cmd.arg(1).arg(&p.key);
        }
        cmd.arg(p.cost);
        if let Now::Nanos(n) = p.now {
            cmd.arg(n / inner.plan.unit).arg(n % inner.plan.unit);
        }
        cmd
    }

    async fn within<T>(
        &self,
        _label: &str,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisLimiterError> {
        match tokio::time::timeout(self.inner.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RedisLimiterError::from_redis(&e, _label)),
            Err(_) => Err(RedisLimiterError::Timeout {
                after: self.inner.timeout,
            }),
        }
    }

    /// One check, one round trip (two after a `NOSCRIPT`).
    async fn remote(&self, p: &Prepared) -> Result<Decision, RedisLimiterError> {
        let label = || String::from_utf8_lossy(&p.key).into_owned();
        let deadline = tokio::time::Instant::now() + self.inner.timeout;
        let mut conn = self.inner.conn.clone();
        self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
        let cmd = self.command(p, true);
        let reply = match tokio::time::timeout_at(deadline, conn.req_packed_command(&cmd)).await {
            Err(_) => return Err(self.timed_out()),
            Ok(Err(e)) if e.kind() == redis::ErrorKind::NoScriptError => None,
            Ok(Err(e)) => return Err(RedisLimiterError::from_redis(&e, &label())),
            Ok(Ok(v)) if is_noscript(&v) => None,
            Ok(Ok(v)) => Some(v),
        };
        let reply = match reply {
            Some(v) => v,
            None => {
                // The script never ran: sending its body is safe and caches it again.
                self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
                let cmd = self.command(p, false);
                match tokio::time::timeout_at(deadline, conn.req_packed_command(&cmd)).await {
                    Err(_) => return Err(self.timed_out()),
                    Ok(Err(e)) => return Err(RedisLimiterError::from_redis(&e, &label())),
                    Ok(Ok(v)) => v,
                }
            }
        };
        self.finish(p, reply)
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
            Err(failure) => {
                return pending
                    .iter()
                    .map(|(_, p)| Err(self.failed(&failure, &p.key)))
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
                Err(failure) => {
                    for &idx in &retry {
                        out[idx] = Some(Err(self.failed(&failure, &pending[idx].1.key)));
                    }
                }
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(bad_reply("missing pipeline reply".into()))))
            .collect()
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
        self.inner
            .round_trips
            .fetch_add(n as u64, Ordering::Relaxed);
        let count_mismatch = |got: usize| Failure::Count(got, n);
        match conn {
            Conn::Single(_) => {
                match tokio::time::timeout_at(deadline, conn.req_packed_commands(&pipe, 0, n)).await
                {
                    Err(_) => Err(Failure::Timeout),
                    Ok(Err(e)) => Err(Failure::Redis(e)),
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
                    Ok(Err(e)) => Err(Failure::Transaction(e)),
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

    /// The error reported for one check of a pipeline that failed as a whole.
    fn failed(&self, failure: &Failure, key: &[u8]) -> RedisLimiterError {
        match failure {
            Failure::Timeout => self.timed_out(),
            Failure::Redis(e) => RedisLimiterError::from_redis(e, &String::from_utf8_lossy(key)),
            Failure::Transaction(e) => match RedisLimiterError::from_redis(e, "") {
                RedisLimiterError::Connection { detail } => {
                    RedisLimiterError::Connection { detail }
                }
                RedisLimiterError::ReplyLost { detail } => RedisLimiterError::ReplyLost { detail },
                // The first error of some entry, for every entry: the others may have run.
                _ => RedisLimiterError::ReplyLost {
                    detail: format!(
                        "a check on the same cluster slot failed ({e}), and the replies of its \
                         whole transaction, this check's ({}) included, were lost with it",
                        String::from_utf8_lossy(key)
                    ),
                },
            },
            Failure::Count(got, sent) => {
                bad_reply(format!("{got} replies to a pipeline of {sent}"))
            }
            Failure::Reply(detail) => bad_reply(detail.clone()),
        }
    }

    fn timed_out(&self) -> RedisLimiterError {
        RedisLimiterError::Timeout {
            after: self.inner.timeout,
        }
    }

    /// Parses a script reply and feeds the near cache.
    fn finish(&self, p: &Prepared, reply: Value) -> Result<Decision, RedisLimiterError> {
        let decision = parse_reply(reply, &p.key, self.inner.plan.capacity)?;
        if let (Some(near), true) = (&self.inner.near, decision.is_denied() && p.cost > 0) {
            let entry = NearEntry {
                cost: p.cost,
                until: p.local.saturating_add(decision.retry_after_nanos()),
                reset_at: p.local.saturating_add(decision.reset_after_nanos()),
                remaining: decision.remaining(),
                limit: decision.limit(),
            };
            let mut map = lock(near);
            if map.len() >= NEAR_CACHE_CAP {
                map.retain(|_, e| e.until > p.local);
                if map.len() >= NEAR_CACHE_CAP {
                    map.clear();
                }
            }
            let slot = map.entry(p.key.clone()).or_insert(entry);
            // Keep the smallest denied cost; a later denial of it extends the deadline.
            if entry.cost < slot.cost || (entry.cost == slot.cost && entry.until > slot.until) {
                *slot = entry;
            }
        }
        Ok(decision)
    }
}

/// One entry's reply in a pipeline.
enum Reply {
    /// `NOSCRIPT`: the script was not cached and did not run.
    NoScript,
    Value(Value),
}

impl From<Value> for Reply {
    fn from(v: Value) -> Self {
        if is_noscript(&v) {
            Reply::NoScript
        } else {
            Reply::Value(v)
        }
    }
}

/// Why a pipeline produced no per-entry replies.
enum Failure {
    /// No reply within the deadline.
    Timeout,
    Redis(redis::RedisError),
    /// A cluster transaction's first error: it may concern any one entry, and the others may
    /// have run.
    Transaction(redis::RedisError),
    /// `(received, sent)`.
    Count(usize, usize),
    Reply(String),
}

/// Redis Cluster's slot count.
const CLUSTER_SLOTS: u16 = 16_384;

/// The cluster slot of `key`: CRC16 (XMODEM) of its hash tag (the bytes between the first `{`
/// and the next `}`, when not empty) or of the whole key, modulo 16384.
fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .map(|close| &rest[..close])
        })
        .filter(|tag| !tag.is_empty())
        .unwrap_or(key);
    crc16_xmodem(hashed) % CLUSTER_SLOTS
}

/// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection.
fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Splits `items` by the cluster slot of `key(item)`: groups in the order their slots first
/// appear, items within a group in input order.
fn slot_groups<T>(items: Vec<T>, key: impl Fn(&T) -> &[u8]) -> Vec<Vec<T>> {
    let mut index: HashMap<u16, usize> = HashMap::new();
    let mut groups: Vec<Vec<T>> = Vec::new();
    for item in items {
        let slot = key_slot(key(&item));
        let g = *index.entry(slot).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(item);
    }
    groups
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn meta_key(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.extend_from_slice(b":m");
    k
}

fn is_noscript(v: &Value) -> bool {
    matches!(v, Value::ServerError(e) if e.code() == "NOSCRIPT")
}

fn bad_reply(detail: String) -> RedisLimiterError {
    RedisLimiterError::BadReply { detail }
}

/// The script's reply: `allowed, limit, remaining, retry_after, reset_after` as five
/// little-endian doubles (integers below 2^53, so exact), or `-1, max` for a cost the limit can
/// never admit.
fn parse_reply(reply: Value, key: &[u8], capacity: u64) -> Result<Decision, RedisLimiterError> {
    let bytes = match reply {
        Value::BulkString(bytes) => bytes,
        Value::ServerError(e) => {
            return Err(RedisLimiterError::from_redis(
                &e.into(),
                &String::from_utf8_lossy(key),
            ))
        }
        other => {
            return Err(bad_reply(format!(
                "expected the script's packed reply, got {other:?}"
            )))
        }
    };
    let mut nums = [0i64; 5];
    let n = bytes.len() / 8;
    if bytes.len() % 8 != 0 || !(n == 2 || n == 5) {
        return Err(bad_reply(format!(
            "expected 2 or 5 packed numbers in the script reply, got {} bytes",
            bytes.len()
        )));
    }
    for (slot, chunk) in nums.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(chunk);
        let v = f64::from_le_bytes(raw);
        // Every figure is an integer of magnitude below 2^53.
        if v.fract() != 0.0 || v.abs() >= 9_007_199_254_740_992.0 {
            return Err(bad_reply(format!(
                "expected integers in the script reply, got {v}"
            )));
        }
        #[allow(clippy::cast_possible_truncation)]
        {
            *slot = v as i64;
        }
    }
    match &nums[..n] {
        [-1, max] => Err(RedisLimiterError::InsufficientCapacity {
            max: u64::try_from(*max).unwrap_or(capacity),
        }),
        &[allowed, limit, remaining, retry, reset] => {
            let field = |v: i64, name: &str| {
                u64::try_from(v).map_err(|_| bad_reply(format!("negative {name} {v} in reply")))
            };
            let (limit, remaining) = (field(limit, "limit")?, field(remaining, "remaining")?);
            let (retry, reset) = (field(retry, "retry_after")?, field(reset, "reset_after")?);
            if limit != capacity || remaining > limit {
                return Err(bad_reply(format!(
                    "limit {limit} / remaining {remaining} do not match this limiter (capacity {capacity})"
                )));
            }
            match allowed {
                1 if retry == 0 => Ok(Decision::allow(limit, remaining, reset)),
                0 => Ok(Decision::deny(limit, remaining, retry, reset)),
                _ => Err(bad_reply(format!(
                    "bad allowed flag {allowed} (retry_after {retry})"
                ))),
            }
        }
        _ => Err(bad_reply(format!(
            "expected a 2-number reply to start with -1, got {:?}",
            &nums[..n]
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::{crc16_xmodem, key_slot, slot_groups};

    #[test]
    fn crc16_and_slots_match_redis() {
        // The CRC16-XMODEM check value, and slots Redis documents or reports
        // (`CLUSTER KEYSLOT foo` is 12182).
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"123456789"), 12739);
        // The hash tag rules of the cluster specification.
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        // An empty tag hashes the whole key; so does an unclosed brace.
        assert_eq!(
            key_slot(b"foo{}{bar}"),
            crc16_xmodem(b"foo{}{bar}") % 16_384
        );
        assert_eq!(key_slot(b"foo{bar"), crc16_xmodem(b"foo{bar") % 16_384);
    }

    #[test]
    fn keys_sharing_a_hash_tag_form_one_group_in_input_order() {
        // Limiter keys are `prefix:{<key>}:alg`; a caller key containing `}` ends the tag early,
        // so `team}1` and `team}2` share the tag `team`.
        let keys: Vec<(usize, Vec<u8>)> = [
            "p:{a}:gcra",
            "p:{team}1}:gcra",
            "p:{b}:gcra",
            "p:{team}2}:gcra",
            "p:{a}:gcra:m",
            "p:{team}3}:gcra",
            "other:{a}:tb",
        ]
        .iter()
        .enumerate()
        .map(|(i, k)| (i, k.as_bytes().to_vec()))
        .collect();
        let groups = slot_groups(keys, |(_, k)| k);
        let order: Vec<Vec<usize>> = groups
            .iter()
            .map(|g| g.iter().map(|(i, _)| *i).collect())
            .collect();
        assert_eq!(order, vec![vec![0, 4, 6], vec![1, 3, 5], vec![2]]);
        for g in &groups {
            let slot = key_slot(&g[0].1);
            assert!(g.iter().all(|(_, k)| key_slot(k) == slot));
        }
        assert_ne!(key_slot(b"a"), key_slot(b"team"));
        assert_ne!(key_slot(b"a"), key_slot(b"b"));
        assert_ne!(key_slot(b"b"), key_slot(b"team"));
    }

    #[test]
    fn distinct_slots_form_distinct_groups() {
        let keys: Vec<Vec<u8>> = (0..500)
            .map(|i| format!("p:{{k{i}}}:gcra").into_bytes())
            .collect();
        let groups = slot_groups(keys.clone(), |k| k);
        let mut slots: Vec<u16> = groups.iter().map(|g| key_slot(&g[0])).collect();
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), keys.len());
        let n = slots.len();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots.len(), n, "one group per slot");
    }
}
