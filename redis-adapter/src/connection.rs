//! What the limiter connects to, and the connection it keeps.
//!
//! A check must never be sent twice: one whose reply was lost may have run, and a resend would
//! charge it again. The single-node connection never resends a request (it only reconnects
//! for the next one). The cluster client resends on I/O errors by default, so the
//! limiter builds it with `retries(0)`; that also stops the client from following `MOVED` and
//! `ASK` itself, so the limiter follows them (a node that redirects did not run the command).

use std::fmt;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use crate::error::RedisLimiterError;
use crate::single::Single;

/// What to connect to.
#[non_exhaustive]
pub enum Target {
    /// A `redis://` URL; the limiter keeps one multiplexed connection, replaced by a new one
    /// after it fails.
    Url(String),
    /// An existing client; the limiter keeps one multiplexed connection from it, replaced by
    /// a new one after it fails.
    Client(redis::Client),
    /// Redis Cluster seed node URLs; connection and response timeouts are the limiter's.
    Cluster(Vec<String>),
    /// A configured cluster client builder (authentication, TLS, timeouts, ...). The limiter
    /// builds it with `retries(0)`, whatever it says, so that no check is ever resent after it
    /// may have run; `MOVED` and `ASK` redirections are still followed, by the limiter.
    ///
    /// A built [`ClusterClient`] is not accepted: its retry setting can be neither read nor
    /// changed, and its default resends a request whose reply was lost.
    ClusterBuilder(ClusterClientBuilder),
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Url(u) => f.debug_tuple("Url").field(u).finish(),
            Target::Client(c) => f.debug_tuple("Client").field(c).finish(),
            Target::Cluster(n) => f.debug_tuple("Cluster").field(n).finish(),
            Target::ClusterBuilder(_) => f.write_str("ClusterBuilder(..)"),
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
impl From<ClusterClientBuilder> for Target {
    fn from(builder: ClusterClientBuilder) -> Self {
        Target::ClusterBuilder(builder)
    }
}

/// The connection: a self-reconnecting single node, or a cluster.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(Single),
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

pub(crate) async fn connect(target: Target, timeout: Duration) -> Result<Conn, RedisLimiterError> {
    let conn_err = |e: redis::RedisError| RedisLimiterError::Connection {
        detail: "connecting failed".into(),
        source: Some(e.into()),
    };
    let single = |client: redis::Client| async move {
        let config = redis::AsyncConnectionConfig::new().set_connection_timeout(timeout);
        Single::connect(client, config)
            .await
            .map(Conn::Single)
            .map_err(conn_err)
    };
    let cluster = |builder: ClusterClientBuilder| async move {
        let client = builder
            .retries(0)
            .build()
            .map_err(|e| RedisLimiterError::config_from("bad cluster configuration", e))?;
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
                    RedisLimiterError::config_from(format!("bad Redis URL {url:?}"), e)
                })?,
            )
            .await
        }
        Target::Client(client) => single(client).await,
        Target::Cluster(nodes) => {
            let builder = ClusterClient::builder(nodes)
                .connection_timeout(timeout)
                .response_timeout(timeout);
            cluster(builder).await
        }
        Target::ClusterBuilder(builder) => cluster(builder).await,
    }
}

/// The most redirections one check follows (each one means the command did not run).
pub(crate) const MAX_REDIRECTS: u32 = 5;

/// Where a cluster node sent a command it did not run.
#[derive(Debug, Clone)]
pub(crate) enum Redirect {
    /// The slot lives on that node now.
    Moved(SingleNodeRoutingInfo),
    /// The slot is migrating there: resend once, preceded by `ASKING`.
    Ask(SingleNodeRoutingInfo),
}

impl Redirect {
    /// The redirection a cluster error asks for, if it is one.
    pub(crate) fn of(err: &RedisError) -> Option<Self> {
        let (addr, _slot) = err.redirect_node()?;
        let (host, port) = addr.rsplit_once(':')?;
        let route = SingleNodeRoutingInfo::ByAddress {
            host: host.to_owned(),
            port: port.parse().ok()?,
        };
        match err.kind() {
            ErrorKind::Moved => Some(Redirect::Moved(route)),
            ErrorKind::Ask => Some(Redirect::Ask(route)),
            _ => None,
        }
    }
}

/// Whether a request routed to a node by address failed before it was sent, because the client
/// holds no connection to that node (a `MOVED` to a node it has not connected to yet).
pub(crate) fn is_unknown_node(err: &RedisError) -> bool {
    err.kind() == ErrorKind::ClientError && err.to_string().contains("connection not found")
}

impl Conn {
    /// Waits until a single node's connection is there, so that a failure or a deadline
    /// reached while waiting is known to have sent nothing. A cluster has nothing to wait for
    /// here (its client connects to nodes as it routes).
    pub(crate) async fn ready(&self) -> Result<(), RedisError> {
        match self {
            Conn::Single(single) => single.connection().await.map(drop),
            Conn::Cluster(_) => Ok(()),
        }
    }

    /// Sends `cmd` to the node a redirection names (`ASKING` first for an `ASK`).
    pub(crate) async fn send_redirected(
        &mut self,
        cmd: &Cmd,
        redirect: &Redirect,
    ) -> RedisResult<Value> {
        match (self, redirect) {
            (Conn::Cluster(c), Redirect::Moved(node)) => {
                c.route_command(cmd, RoutingInfo::SingleNode(node.clone()))
                    .await
            }
            (Conn::Cluster(c), Redirect::Ask(node)) => {
                let mut pipe = redis::pipe();
                pipe.cmd("ASKING").add_command(cmd.clone());
                let mut replies = c.route_pipeline(&pipe, 1, 1, node.clone()).await?;
                match (replies.pop(), replies.is_empty()) {
                    (Some(reply), true) => Ok(reply),
                    _ => Err(RedisError::from((
                        ErrorKind::ParseError,
                        "expected one reply after ASKING",
                    ))),
                }
            }
            // A single node never redirects; `Redirect::of` is only consulted on a cluster.
            (conn @ Conn::Single(_), _) => conn.req_packed_command(cmd).await,
        }
    }
}
