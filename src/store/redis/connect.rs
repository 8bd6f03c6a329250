//! Connections to whichever Redis deployment `--store` names, behind one
//! type, so the store's commands do not care which it is.
//!
//! - One server: a connection manager that reconnects by itself.
//! - Sentinel: the same, to the master the sentinels name; when a command
//!   fails the way a demoted or dead master fails (connection lost, refused,
//!   timed out, `READONLY`, `MASTERDOWN`), the connection is dropped and the
//!   next command asks the sentinels again, so rill follows a failover
//!   without a restart.
//! - Cluster: the `redis` crate's cluster connection, which learns the slot
//!   map, follows `MOVED`, and refreshes the map when a master fails over.
//!
//! Live readers block in `XREAD`, which holds a connection until it returns,
//! so each has a connection of its own ([`Connector::reader`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, Client, Cmd, ErrorKind, RedisError, RedisFuture, Value};

use super::topology::{SentinelTarget, Topology};
use super::{timed, COMMAND_TIMEOUT};
use crate::store::StoreError;

/// Longest wait to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A connection to the deployment, for any command.
#[derive(Clone)]
pub enum Conn {
    /// To one server (or the master found through Sentinel, with the flag
    /// that says it must be found again).
    Single {
        /// The connection.
        conn: ConnectionManager,
        /// Set when a command failed as a lost master fails.
        stale: Option<Arc<AtomicBool>>,
    },
    /// A live reader's own connection to one server.
    Direct {
        /// The connection.
        conn: MultiplexedConnection,
        /// As for `Single`.
        stale: Option<Arc<AtomicBool>>,
    },
    /// To a Cluster.
    Cluster(ClusterConnection),
}

/// Whether an error means the server we talk to is no longer a usable
/// master, so the sentinels must be asked again.
fn lost_master(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::ReadOnly | ErrorKind::MasterDown | ErrorKind::TryAgain
        )
}

fn watch<T>(stale: &Option<Arc<AtomicBool>>, r: Result<T, RedisError>) -> Result<T, RedisError> {
    if let (Some(flag), Err(e)) = (stale, &r) {
        if lost_master(e) {
            flag.store(true, Ordering::Relaxed);
        }
    }
    r
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            match self {
                Conn::Single { conn, stale } => watch(stale, conn.req_packed_command(cmd).await),
                Conn::Direct { conn, stale } => watch(stale, conn.req_packed_command(cmd).await),
                Conn::Cluster(c) => c.req_packed_command(cmd).await,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            match self {
                Conn::Single { conn, stale } => {
                    watch(stale, conn.req_packed_commands(cmd, offset, count).await)
                }
                Conn::Direct { conn, stale } => {
                    watch(stale, conn.req_packed_commands(cmd, offset, count).await)
                }
                Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count).await,
            }
        })
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single { conn, .. } => conn.get_db(),
            Conn::Direct { conn, .. } => conn.get_db(),
            Conn::Cluster(_) => 0,
        }
    }
}

impl Conn {
    /// Runs `cmd` on the master of hash slot `slot` (on one server: on it).
    /// For commands with no key that must reach a given node, such as
    /// `CLIENT ID` and `CLIENT UNBLOCK`.
    pub async fn on_slot<T: redis::FromRedisValue>(
        &mut self,
        cmd: &Cmd,
        slot: u16,
    ) -> Result<T, StoreError> {
        let master = Route::new(slot, SlotAddr::Master);
        self.routed(
            cmd,
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(master)),
        )
        .await
    }

    /// Whether the deployment answers: `PING` to the server, or on a
    /// Cluster to every master, healthy when at least one answers. Not when
    /// all do: one shard's master that is down (and failing over) should
    /// not take every rill node out of a load balancer, since streams on
    /// the other shards are still served.
    pub async fn ping(&mut self) -> Result<(), StoreError> {
        let any_master = RoutingInfo::MultiNode((
            MultipleNodeRoutingInfo::AllMasters,
            Some(ResponsePolicy::OneSucceeded),
        ));
        let _: String = self.routed(&redis::cmd("PING"), any_master).await?;
        Ok(())
    }

    /// Runs `cmd` where `route` says on a Cluster; on one server, on it.
    async fn routed<T: redis::FromRedisValue>(
        &mut self,
        cmd: &Cmd,
        route: RoutingInfo,
    ) -> Result<T, StoreError> {
        match self {
            Conn::Cluster(c) => {
                let v = timed(COMMAND_TIMEOUT, c.route_command(cmd, route)).await?;
                redis::from_redis_value(&v)
                    .map_err(|e| StoreError::Unavailable(format!("redis: {e}")))
            }
            other => timed(COMMAND_TIMEOUT, cmd.query_async(other)).await,
        }
    }

    /// Whether a command on this connection failed as a lost Sentinel
    /// master fails, so the master must be found again.
    fn is_stale(&self) -> bool {
        match self {
            Conn::Single { stale, .. } | Conn::Direct { stale, .. } => {
                stale.as_ref().is_some_and(|s| s.load(Ordering::Relaxed))
            }
            Conn::Cluster(_) => false,
        }
    }
}

enum Target {
    Single(Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
    Cluster(ClusterClient),
}

/// Makes connections to the deployment and keeps the shared one.
pub struct Connector {
    target: Target,
    shared: tokio::sync::Mutex<Option<Conn>>,
    /// Bumped whenever a lost Sentinel master is replaced, so live readers
    /// move to the new master too.
    generation: AtomicU64,
}

impl Connector {
    /// A connector for `topology`; connects lazily, so rill starts (and
    /// answers 503) while Redis is down.
    pub fn new(topology: &Topology) -> Result<Connector, StoreError> {
        let bad = |e: RedisError| StoreError::Unavailable(format!("bad redis URL: {e}"));
        let target = match topology {
            Topology::Single(url) => Target::Single(Client::open(url.as_str()).map_err(bad)?),
            Topology::Cluster(seeds) => Target::Cluster(
                ClusterClientBuilder::new(seeds.clone())
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(COMMAND_TIMEOUT)
                    // A few quick retries ride out a MOVED after a
                    // failover; the whole still fits in one command's time.
                    .retries(3)
                    .min_retry_wait(50)
                    .max_retry_wait(500)
                    .build()
                    .map_err(bad)?,
            ),
            Topology::Sentinel(t) => {
                Target::Sentinel(tokio::sync::Mutex::new(sentinel_client(t).map_err(bad)?))
            }
        };
        Ok(Connector {
            target,
            shared: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
        })
    }

    /// The connection ordinary commands share, made on first use (and made
    /// again after a Sentinel master was lost).
    pub async fn shared(&self) -> Result<Conn, StoreError> {
        let mut slot = self.shared.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_stale()) {
            return Ok(c.clone());
        }
        if slot.take().is_some() {
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
        let c = match &self.target {
            Target::Single(client) => Conn::Single {
                conn: manager(client.clone()).await?,
                stale: None,
            },
            Target::Sentinel(s) => {
                let client = self.master(s).await?;
                Conn::Single {
                    conn: manager(client).await?,
                    stale: Some(Arc::new(AtomicBool::new(false))),
                }
            }
            Target::Cluster(client) => {
                Conn::Cluster(timed(COMMAND_TIMEOUT, client.get_async_connection()).await?)
            }
        };
        *slot = Some(c.clone());
        Ok(c)
    }

    /// How many times a lost master was replaced.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// A connection of its own for a live reader, whose commands may block
    /// for up to `wait`.
    pub async fn reader(&self, wait: Duration) -> Result<Conn, StoreError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(wait + COMMAND_TIMEOUT);
        let direct = |client: Client, stale| async move {
            let conn = timed(
                COMMAND_TIMEOUT,
                client.get_multiplexed_async_connection_with_config(&config),
            )
            .await?;
            Ok::<_, StoreError>(Conn::Direct { conn, stale })
        };
        match &self.target {
            Target::Single(client) => direct(client.clone(), None).await,
            Target::Sentinel(s) => {
                let client = self.master(s).await?;
                direct(client, Some(Arc::new(AtomicBool::new(false)))).await
            }
            Target::Cluster(client) => {
                let config = ClusterConfig::new()
                    .set_connection_timeout(CONNECT_TIMEOUT)
                    .set_response_timeout(wait + COMMAND_TIMEOUT);
                Ok(Conn::Cluster(
                    timed(
                        COMMAND_TIMEOUT,
                        client.get_async_connection_with_config(config),
                    )
                    .await?,
                ))
            }
        }
    }

    /// The client for the master the sentinels name now.
    async fn master(&self, s: &tokio::sync::Mutex<SentinelClient>) -> Result<Client, StoreError> {
        let mut s = s.lock().await;
        timed(COMMAND_TIMEOUT, s.async_get_client()).await
    }
}

async fn manager(client: Client) -> Result<ConnectionManager, StoreError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(COMMAND_TIMEOUT)
        // No retries inside the manager: a command that meets a dead
        // connection fails at once (503) and the next one reconnects.
        .set_number_of_retries(0);
    timed(
        COMMAND_TIMEOUT,
        ConnectionManager::new_with_config(client, config),
    )
    .await
}

fn sentinel_client(t: &SentinelTarget) -> Result<SentinelClient, RedisError> {
    let addrs = t
        .sentinels
        .iter()
        .map(|s| redis::IntoConnectionInfo::into_connection_info(s.as_str()).map(|i| i.addr))
        .collect::<Result<Vec<_>, _>>()?;
    let mut b = SentinelClientBuilder::new(addrs, t.master.clone(), SentinelServerType::Master)?
        .set_client_to_redis_db(t.db);
    if let Some((user, pass)) = &t.auth {
        if !user.is_empty() {
            b = b.set_client_to_redis_username(user.clone());
        }
        if !pass.is_empty() {
            b = b.set_client_to_redis_password(pass.clone());
        }
    }
    b.build()
}
