//! A connection to Redis — one node or a cluster — opened on first use and shared by every
//! caller, each call bounded by a timeout. The limits' shared store and the cache's Redis tier
//! both talk through it; what counts as an outage, and what to do then, is theirs to decide.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;

/// What can go wrong with one call.
#[derive(Debug, thiserror::Error)]
pub enum RedisFailure {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("no node to connect to")]
    NoNode,
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
}

#[derive(Clone)]
enum Conn {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Where Redis is and how long a call may take.
#[derive(Clone)]
pub struct RedisTarget {
    /// Node URLs: one, or a cluster's seed nodes (they may carry a password).
    pub nodes: Vec<String>,
    pub cluster: bool,
    pub timeout: Duration,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTarget")
            .field("nodes", &self.nodes.len())
            .field("cluster", &self.cluster)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A shared connection, opened lazily (a node's reconnects itself; a cluster's follows the
/// cluster's topology).
pub struct RedisLink {
    target: RedisTarget,
    conn: arc_swap::ArcSwapOption<Conn>,
    connecting: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink").field("target", &self.target).finish()
    }
}

impl RedisLink {
    pub fn new(target: RedisTarget) -> RedisLink {
        RedisLink {
            target,
            conn: arc_swap::ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    /// A client for a subscription of its own (pub/sub needs a connection to itself; on a
    /// cluster, a message published on any node reaches every node's subscribers).
    pub fn subscriber_client(&self) -> Result<redis::Client, RedisFailure> {
        let url = self.target.nodes.first().ok_or(RedisFailure::NoNode)?;
        Ok(redis::Client::open(url.as_str())?)
    }

    async fn connect(&self) -> Result<Conn, RedisFailure> {
        if let Some(c) = self.conn.load_full() {
            return Ok((*c).clone());
        }
        let _one = self.connecting.lock().await;
        if let Some(c) = self.conn.load_full() {
            return Ok((*c).clone());
        }
        let t = self.target.timeout;
        let conn = if self.target.cluster {
            let client = redis::cluster::ClusterClient::builder(self.target.nodes.clone())
                .connection_timeout(t)
                .response_timeout(t)
                .retries(0)
                .build()?;
            let c = tokio::time::timeout(t * 4, client.get_async_connection())
                .await
                .map_err(|_| RedisFailure::Timeout(t * 4))??;
            Conn::Cluster(c)
        } else {
            let url = self.target.nodes.first().ok_or(RedisFailure::NoNode)?;
            let client = redis::Client::open(url.as_str())?;
            let cfg = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(t))
                .set_response_timeout(Some(t))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500));
            Conn::Node(ConnectionManager::new_lazy_with_config(client, cfg)?)
        };
        self.conn.store(Some(Arc::new(conn.clone())));
        Ok(conn)
    }

    /// One command, within the timeout.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, RedisFailure> {
        self.query_within(cmd, self.target.timeout).await
    }

    /// One command, within `t`.
    pub async fn query_within<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        t: Duration,
    ) -> Result<T, RedisFailure> {
        let mut conn = self.connect().await?;
        let call = async {
            match &mut conn {
                Conn::Node(c) => cmd.query_async::<T>(c).await,
                Conn::Cluster(c) => cmd.query_async::<T>(c).await,
            }
        };
        Ok(tokio::time::timeout(t, call)
            .await
            .map_err(|_| RedisFailure::Timeout(t))??)
    }

    /// One script (sent by its digest, loaded when the server does not know it), within the
    /// timeout.
    pub async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, RedisFailure> {
        let mut conn = self.connect().await?;
        let t = self.target.timeout;
        let call = async {
            match &mut conn {
                Conn::Node(c) => invocation.invoke_async::<T>(c).await,
                Conn::Cluster(c) => invocation.invoke_async::<T>(c).await,
            }
        };
        Ok(tokio::time::timeout(t, call)
            .await
            .map_err(|_| RedisFailure::Timeout(t))??)
    }
}
