//! What the limiter connects to, and the connection it keeps.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::error::RedisLimiterError;

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
pub(crate) enum Conn {
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

pub(crate) async fn connect(target: Target, timeout: Duration) -> Result<Conn, RedisLimiterError> {
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
