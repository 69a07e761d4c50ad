//! The single-node connection: one multiplexed connection, replaced by a fresh one after it
//! fails, kept so that a failure to *have* a connection can be told from a failure of a
//! command that was handed to one.
//!
//! redis-rs's `ConnectionManager` does the same reconnecting, but a call waiting for its
//! reconnection looks, from outside, like a call waiting for its reply: a timeout there would
//! have to be reported as possibly charged. Here the connection is awaited first, under the
//! call's deadline, and only then is the command handed over: every failure before that point
//! certainly sent nothing.

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisError, RedisFuture, Value};

/// A connection attempt, shared by every call that waits for it.
type Attempt = Shared<BoxFuture<'static, Result<MultiplexedConnection, Arc<RedisError>>>>;

enum State {
    Ready(MultiplexedConnection),
    Connecting(Attempt),
}

struct Inner {
    client: redis::Client,
    config: AsyncConnectionConfig,
    /// The state and its generation, bumped each time a connection is given up, so that the
    /// failure of an old connection does not throw away a newer one.
    state: Mutex<(State, u64)>,
}

/// A reconnecting single-node connection (cheap to clone: all clones share it).
#[derive(Clone)]
pub(crate) struct Single(Arc<Inner>);

/// The error inside the I/O error of a call that never had a connection: how
/// [`RedisLimiterError`](crate::RedisLimiterError) knows the command was not sent.
#[derive(Debug)]
pub(crate) struct NotSent(pub(crate) Arc<RedisError>);

impl fmt::Display for NotSent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no connection to Redis, nothing sent: {}", self.0)
    }
}

impl std::error::Error for NotSent {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// Whether `err` is a call's failure to get a connection (nothing was sent).
pub(crate) fn not_sent(err: &RedisError) -> Option<&NotSent> {
    let io = std::error::Error::source(err)?.downcast_ref::<io::Error>()?;
    io.get_ref()?.downcast_ref::<NotSent>()
}

/// A failure to connect, as a call reports it: I/O failures carry [`NotSent`]; others (a
/// refused password, a bad reply to the handshake) keep their own kind, which says as much.
fn unsent(err: Arc<RedisError>) -> RedisError {
    let kind = match std::error::Error::source(&*err).and_then(|s| s.downcast_ref::<io::Error>()) {
        Some(io) => io.kind(),
        None => return copy_of(&err),
    };
    RedisError::from(io::Error::new(kind, NotSent(err)))
}

/// `RedisError` is not `Clone`: a shared connect error is copied for each caller, kind and
/// text kept.
fn copy_of(err: &RedisError) -> RedisError {
    let detail = err.detail().map_or_else(|| err.to_string(), str::to_owned);
    RedisError::from((err.kind(), "connecting to Redis failed", detail))
}

impl Single {
    /// Connects once; the error is the client's.
    pub(crate) async fn connect(
        client: redis::Client,
        config: AsyncConnectionConfig,
    ) -> Result<Single, RedisError> {
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(Single(Arc::new(Inner {
            client,
            config,
            state: Mutex::new((State::Ready(conn), 0)),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, (State, u64)> {
        // Nothing panics while holding it, and every state is valid: take a poisoned lock over.
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn attempt(&self) -> Attempt {
        let inner = Arc::clone(&self.0);
        async move {
            inner
                .client
                .get_multiplexed_async_connection_with_config(&inner.config)
                .await
                .map_err(Arc::new)
        }
        .boxed()
        .shared()
    }

    /// The connection, once there is one; the error says why there is none (nothing sent).
    pub(crate) async fn connection(&self) -> Result<(MultiplexedConnection, u64), RedisError> {
        let (attempt, generation) = {
            let guard = self.lock();
            match &guard.0 {
                State::Ready(conn) => return Ok((conn.clone(), guard.1)),
                State::Connecting(attempt) => (attempt.clone(), guard.1),
            }
        };
        let outcome = attempt.await;
        let mut guard = self.lock();
        let current = guard.1 == generation && matches!(guard.0, State::Connecting(_));
        match outcome {
            Ok(conn) => {
                if current {
                    guard.0 = State::Ready(conn.clone());
                }
                Ok((conn, generation))
            }
            Err(err) => {
                if current {
                    // The next call tries again (attempts are made only while calls wait).
                    *guard = (
                        State::Connecting(self.attempt()),
                        generation.wrapping_add(1),
                    );
                }
                Err(unsent(err))
            }
        }
    }

    /// Gives up the connection of `generation` after it failed for good: the next call
    /// connects again.
    fn failed(&self, generation: u64, err: &RedisError) {
        if !err.is_unrecoverable_error() {
            return;
        }
        let mut guard = self.lock();
        if guard.1 == generation && matches!(guard.0, State::Ready(_)) {
            *guard = (
                State::Connecting(self.attempt()),
                generation.wrapping_add(1),
            );
        }
    }
}

impl ConnectionLike for Single {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        async move {
            let (mut conn, generation) = self.connection().await?;
            let result = conn.send_packed_command(cmd).await;
            if let Err(err) = &result {
                self.failed(generation, err);
            }
            result
        }
        .boxed()
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        async move {
            let (mut conn, generation) = self.connection().await?;
            let result = conn.send_packed_commands(cmd, offset, count).await;
            if let Err(err) = &result {
                self.failed(generation, err);
            }
            result
        }
        .boxed()
    }

    fn get_db(&self) -> i64 {
        self.0.client.get_connection_info().redis.db
    }
}
