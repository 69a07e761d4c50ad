//! [`MemcachedLimiter`]: checks, peeks and resets against memcached.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use traffik_core::{Algorithm, AnyAlgorithm, AsyncLimiter, Clock, Decision, MAX_NOW};

use crate::config::MemcachedLimiterBuilder;
use crate::connection::{Conn, Pool, RecvError};
use crate::engine::{error_for, fail_unresolved, Engine, Group, Written};
use crate::error::MemcachedLimiterError as E;
use crate::keys;
use crate::protocol;

/// A rate limiter whose per-key state lives in memcached, shared by every process that uses the
/// same servers, prefix and configuration.
///
/// Cloning is cheap and clones share connections. See the [crate docs](crate) for how a check
/// runs, the clock contract, key names, expiry and failures.
#[derive(Clone)]
pub struct MemcachedLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    pools: Vec<Pool>,
    server_hashes: Vec<u64>,
    algorithm: AnyAlgorithm,
    tag: &'static str,
    prefix: String,
    timeout: Duration,
    attempts: u32,
    clock: Arc<dyn Clock + Send + Sync>,
}

impl std::fmt::Debug for MemcachedLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let servers: Vec<&str> = self.inner.pools.iter().map(Pool::addr).collect();
        f.debug_struct("MemcachedLimiter")
            .field("servers", &servers)
            .field("algorithm", &self.inner.algorithm)
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl MemcachedLimiter {
    /// Starts configuring a limiter on `server` (`"127.0.0.1:11211"`, `"memcache://host:port"`;
    /// add more with [`server`](MemcachedLimiterBuilder::server)).
    pub fn builder(server: impl Into<String>) -> MemcachedLimiterBuilder {
        MemcachedLimiterBuilder::new(server.into())
    }

    pub(crate) fn from_parts(
        servers: Vec<String>,
        algorithm: AnyAlgorithm,
        prefix: String,
        timeout: Duration,
        pool_size: usize,
        attempts: u32,
        clock: Arc<dyn Clock + Send + Sync>,
    ) -> Self {
        let server_hashes = servers.iter().map(|s| keys::fnv1a(s.as_bytes())).collect();
        MemcachedLimiter {
            inner: Arc::new(Inner {
                pools: servers
                    .into_iter()
                    .map(|s| Pool::new(s, pool_size))
                    .collect(),
                server_hashes,
                tag: keys::algorithm_tag(algorithm.kind()),
                algorithm,
                prefix,
                timeout,
                attempts,
                clock,
            }),
        }
    }

    /// Checks `cost` for `key` now (by the limiter's clock), charging it if admitted. A cost of
    /// zero is a [`peek`](Self::peek).
    pub async fn check(&self, key: impl AsRef<[u8]>, cost: u64) -> Result<Decision, E> {
        self.check_bytes(key.as_ref(), cost, self.inner.clock.now())
            .await
    }

    /// Checks `cost` for `key` at `now_nanos` instead of the clock's reading: for tests and
    /// simulations, or a caller with its own time source. Readings past
    /// [`MAX_NOW`](traffik_core::MAX_NOW) count as `MAX_NOW`, as in the core.
    pub async fn check_at(
        &self,
        key: impl AsRef<[u8]>,
        cost: u64,
        now_nanos: u64,
    ) -> Result<Decision, E> {
        self.check_bytes(key.as_ref(), cost, now_nanos).await
    }

    /// What `key` has left now, without charging or writing anything (one `gets`).
    pub async fn peek(&self, key: impl AsRef<[u8]>) -> Result<Decision, E> {
        self.check_bytes(key.as_ref(), 0, self.inner.clock.now())
            .await
    }

    /// Forgets everything charged to `key` (one `delete`).
    pub async fn reset(&self, key: impl AsRef<[u8]>) -> Result<(), E> {
        self.reset_bytes(key.as_ref()).await
    }

    /// Checks a batch of `(key, cost)` at one clock reading, pipelined: each server's share
    /// costs one round trip for all its `gets` and one for all its writes (more only for keys
    /// other clients changed in between), and servers are asked concurrently. Checks of the
    /// same key are decided in order, as if back to back. One result per check, in order; one
    /// timeout covers the whole batch.
    pub async fn check_many<K: AsRef<[u8]>>(
        &self,
        checks: &[(K, u64)],
    ) -> Vec<Result<Decision, E>> {
        let now = self.inner.clock.now().min(MAX_NOW);
        let inner = &*self.inner;
        let capacity = inner.algorithm.capacity();
        let mut results: Vec<Option<Result<Decision, E>>> = Vec::with_capacity(checks.len());
        let mut by_server: Vec<Vec<Group>> = (0..inner.pools.len()).map(|_| Vec::new()).collect();
        let mut index: HashMap<Vec<u8>, (usize, usize)> = HashMap::new();
        for (i, (key, cost)) in checks.iter().enumerate() {
            let cost = *cost;
            if cost > capacity {
                results.push(Some(Err(E::InsufficientCapacity { max: capacity })));
                continue;
            }
            if let AnyAlgorithm::Unlimited(u) = &inner.algorithm {
                results.push(Some(
                    u.decide(0, now, cost).map(|t| t.decision).map_err(E::from),
                ));
                continue;
            }
            results.push(None);
            let mkey = self.memcached_key(key.as_ref());
            match index.get(&mkey) {
                Some(&(s, g)) => by_server[s][g].checks.push((i, cost)),
                None => {
                    let s = keys::pick_server(&inner.server_hashes, &mkey);
                    index.insert(mkey.clone(), (s, by_server[s].len()));
                    by_server[s].push(Group::new(mkey, vec![(i, cost)]));
                }
            }
        }
        let runs = by_server
            .iter_mut()
            .enumerate()
            .filter(|(_, groups)| !groups.is_empty())
            .map(|(s, groups)| async move { self.engine(s, now).run(groups).await });
        let all = futures_util::future::join_all(runs);
        if tokio::time::timeout(inner.timeout, all).await.is_err() {
            for groups in &mut by_server {
                self.timed_out(groups);
            }
        }
        for group in by_server.into_iter().flatten() {
            match group.outcome {
                Some(Ok(decisions)) => {
                    for ((i, _), d) in group.checks.iter().zip(decisions) {
                        results[*i] = Some(d.map_err(E::from));
                    }
                }
                Some(Err(e)) => {
                    for (i, _) in &group.checks {
                        results[*i] = Some(Err(e.clone()));
                    }
                }
                None => {}
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or(Err(E::Timeout {
                    after: inner.timeout,
                }))
            })
            .collect()
    }

    /// The memcached key that holds `key`'s state (see the crate docs for the scheme).
    pub fn memcached_key(&self, key: impl AsRef<[u8]>) -> Vec<u8> {
        keys::memcached_key(&self.inner.prefix, self.inner.tag, key.as_ref())
    }

    /// The server (`host:port`) that holds `key`'s state.
    pub fn server_for(&self, key: impl AsRef<[u8]>) -> &str {
        let mkey = self.memcached_key(key);
        self.inner.pools[keys::pick_server(&self.inner.server_hashes, &mkey)].addr()
    }

    /// The algorithm every check runs (the core's, exactly).
    pub fn algorithm(&self) -> &AnyAlgorithm {
        &self.inner.algorithm
    }

    /// Asks every server for its version: a health check that also opens connections ahead of
    /// the first check. One `(server, result)` per server, in configuration order.
    pub async fn versions(&self) -> Vec<(String, Result<String, E>)> {
        let asks = self.inner.pools.iter().map(|pool| async move {
            let ask = async {
                let mut lease = pool.lease().await;
                let mut conn = match lease.take() {
                    Some(c) => c,
                    None => connect(pool).await?,
                };
                conn.send(protocol::VERSION)
                    .await
                    .map_err(|e| error_for(pool.addr(), RecvError::Io(e.source), false))?;
                let version = conn
                    .recv(protocol::parse_version)
                    .await
                    .map_err(|e| error_for(pool.addr(), e, false))?;
                lease.put(conn);
                Ok(version)
            };
            let result = tokio::time::timeout(self.inner.timeout, ask)
                .await
                .unwrap_or(Err(E::Timeout {
                    after: self.inner.timeout,
                }));
            (pool.addr().to_owned(), result)
        });
        futures_util::future::join_all(asks).await
    }

    async fn check_bytes(&self, key: &[u8], cost: u64, now: u64) -> Result<Decision, E> {
        self.charge(key, cost, now).await.map(|(d, _)| d)
    }

    /// A check that also says what it wrote, if anything: one leg of a multi-check.
    pub(crate) async fn charge(
        &self,
        key: &[u8],
        cost: u64,
        now: u64,
    ) -> Result<(Decision, Option<Written>), E> {
        let inner = &*self.inner;
        let now = now.min(MAX_NOW);
        let capacity = inner.algorithm.capacity();
        if cost > capacity {
            return Err(E::InsufficientCapacity { max: capacity });
        }
        if let AnyAlgorithm::Unlimited(u) = &inner.algorithm {
            // Nothing to store: the unlimited rate admits everything without state.
            return Ok((u.decide(0, now, cost)?.decision, None));
        }
        self.run_one(key, cost, now, &inner.algorithm).await
    }

    /// One check of `key` decided by `algorithm` at `now` (already clamped to `MAX_NOW`, the
    /// cost already within its capacity): the network part of every single check.
    pub(crate) async fn run_one<A: Algorithm + ?Sized>(
        &self,
        key: &[u8],
        cost: u64,
        now: u64,
        algorithm: &A,
    ) -> Result<(Decision, Option<Written>), E> {
        let inner = &*self.inner;
        let mkey = self.memcached_key(key);
        let server = keys::pick_server(&inner.server_hashes, &mkey);
        let mut groups = [Group::new(mkey, vec![(0, cost)])];
        let engine = Engine {
            algorithm,
            pool: &inner.pools[server],
            now,
            attempts: inner.attempts,
        };
        if tokio::time::timeout(inner.timeout, engine.run(&mut groups))
            .await
            .is_err()
        {
            self.timed_out(&mut groups);
        }
        let [group] = groups;
        match group.outcome {
            Some(Ok(decisions)) => match decisions.into_iter().next() {
                Some(d) => Ok((d?, group.written)),
                None => Err(E::Config("internal: a check produced no decision".into())),
            },
            Some(Err(e)) => Err(e),
            None => Err(E::Timeout {
                after: inner.timeout,
            }),
        }
    }

    /// Undoes the charge behind `written` on `key` if the key still holds exactly the state it
    /// wrote (see [`multi`](crate::multi)); `Ok(false)` when something else changed it.
    pub(crate) async fn refund(&self, key: &[u8], written: Written, now: u64) -> Result<bool, E> {
        let inner = &*self.inner;
        let mkey = self.memcached_key(key);
        let server = keys::pick_server(&inner.server_hashes, &mkey);
        let engine = self.engine(server, now.min(MAX_NOW));
        let mut sent = false;
        match tokio::time::timeout(inner.timeout, engine.refund(&mkey, written, &mut sent)).await {
            Ok(result) => result,
            Err(_) if sent => Err(E::ReplyTimeout {
                after: inner.timeout,
            }),
            Err(_) => Err(E::Timeout {
                after: inner.timeout,
            }),
        }
    }

    /// The limiter's clock, read now.
    pub(crate) fn now(&self) -> u64 {
        self.inner.clock.now()
    }

    /// The prefix its keys start with.
    pub(crate) fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The pool of the server that holds memcached key `mkey`.
    pub(crate) fn pool_for(&self, mkey: &[u8]) -> &Pool {
        &self.inner.pools[keys::pick_server(&self.inner.server_hashes, mkey)]
    }

    /// The timeout of one call.
    pub(crate) fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// How many read-modify-write rounds one call may take.
    pub(crate) fn attempts(&self) -> u32 {
        self.inner.attempts
    }

    async fn reset_bytes(&self, key: &[u8]) -> Result<(), E> {
        let inner = &*self.inner;
        if let AnyAlgorithm::Unlimited(_) = inner.algorithm {
            return Ok(());
        }
        let mkey = self.memcached_key(key);
        let pool = &inner.pools[keys::pick_server(&inner.server_hashes, &mkey)];
        let mut sent = false;
        let run = delete(pool, &mkey, &mut sent);
        match tokio::time::timeout(inner.timeout, run).await {
            Ok(result) => result,
            Err(_) if sent => Err(E::ReplyTimeout {
                after: inner.timeout,
            }),
            Err(_) => Err(E::Timeout {
                after: inner.timeout,
            }),
        }
    }

    fn engine(&self, server: usize, now: u64) -> Engine<'_> {
        Engine {
            algorithm: &self.inner.algorithm,
            pool: &self.inner.pools[server],
            now,
            attempts: self.inner.attempts,
        }
    }

    /// Fails the groups the timeout left unanswered: indeterminate if their write was out.
    fn timed_out(&self, groups: &mut [Group]) {
        let after = self.inner.timeout;
        fail_unresolved(groups, &E::ReplyTimeout { after }, &E::Timeout { after });
    }
}

async fn connect(pool: &Pool) -> Result<Conn, E> {
    Conn::connect(pool.addr()).await.map_err(|e| E::Connect {
        server: pool.addr().to_owned(),
        source: Arc::new(e),
    })
}

/// Deletes `key`; sets `sent` once a `delete` may have reached the server.
async fn delete(pool: &Pool, key: &[u8], sent: &mut bool) -> Result<(), E> {
    let mut lease = pool.lease().await;
    let (mut conn, mut reused) = match lease.take() {
        Some(c) => (c, true),
        None => (connect(pool).await?, false),
    };
    let mut request = Vec::with_capacity(key.len() + 9);
    protocol::push_delete(&mut request, key);
    loop {
        let result = match conn.send(&request).await {
            Err(e) if !e.wrote_any => Err(RecvError::Io(e.source)),
            Err(e) => {
                *sent = true;
                Err(RecvError::Io(e.source))
            }
            Ok(()) => {
                *sent = true;
                conn.recv(protocol::parse_delete).await.map(|_| ())
            }
        };
        match result {
            Ok(()) => {
                lease.put(conn);
                return Ok(());
            }
            // A pooled connection the server closed meanwhile. Resending a delete cannot
            // count anything twice: at worst it also forgets a charge made in between, which
            // is the same as the reset happening a moment later.
            Err(RecvError::Io(lost)) if reused => {
                reused = false;
                conn = match connect(pool).await {
                    Ok(c) => c,
                    // The first delete may have arrived: say so rather than "not applied".
                    Err(_) if *sent => {
                        return Err(error_for(pool.addr(), RecvError::Io(lost), true))
                    }
                    Err(e) => return Err(e),
                };
            }
            Err(e) => return Err(error_for(pool.addr(), e, *sent)),
        }
    }
}

/// The contract every traffik store answers, for middleware and failover written once.
impl<K: AsRef<[u8]> + ?Sized + Sync> AsyncLimiter<K> for MemcachedLimiter {
    type Error = E;

    fn check(&self, key: &K, cost: u64) -> impl Future<Output = Result<Decision, E>> + Send {
        self.check_bytes(key.as_ref(), cost, self.inner.clock.now())
    }

    fn peek(&self, key: &K) -> impl Future<Output = Result<Decision, E>> + Send {
        self.check_bytes(key.as_ref(), 0, self.inner.clock.now())
    }

    fn reset(&self, key: &K) -> impl Future<Output = Result<(), E>> + Send {
        self.reset_bytes(key.as_ref())
    }
}
