//! The shared store: streams in Redis Streams, so many rill nodes serve the
//! same streams and a browser can resume on any of them.
//!
//! `--store` names one server, a Cluster or a master behind Sentinel (see
//! `topology.rs`); `connect.rs` hides which. Keys, under a configurable
//! prefix `P` (on one server and behind Sentinel; on a Cluster the names
//! differ so each partition of streams shares a hash slot, see
//! `layout.rs`):
//! - `P{name}:log`: a Redis Stream; entry `0-<n>` is event `n`, with fields
//!   `t` (event type, empty for `message`), `d` (data), `x` (terminal),
//!   `ts` (Redis time, ms) and `n` (stored size).
//! - `P{name}:meta`: a hash with `last` (the id counter), `fin`, `bytes`,
//!   `prefix` (the wire-id prefix: the stream's incarnation), `owner`,
//!   `rid` (the replication id of the master that last wrote it) and
//!   `prev` (the prefix before a failover fenced it; see `scripts.rs`).
//! - `P{name}:idem`, `P{name}:idemz`: idempotency keys of recent publishes
//!   (key → id and request fingerprint) and their ages.
//! - `P{name}:lease`, `P{name}:cancel`, `P{name}:watched`: a generation's
//!   owner lease, a cancel request from another node, and which nodes
//!   listen (node → until when).
//! - `Pindex`: a sorted set of stream names scored by when each expires;
//!   `Pgenerations`: the generation streams that hold a lease;
//!   `Pclaim:{scope}:key`: an idempotency key claimed for a value.
//! - `Premoved`: a short Redis Stream of removed streams, which every node's
//!   first live reader follows to end its local subscribers of them.
//!
//! Ids come from a counter inside the append script (`HINCRBY`), and the
//! entry is added as `XADD key 0-<id>`: Redis hands out each id once across
//! all nodes, the entry id *is* the event id (so `XRANGE`/`XREAD` need no
//! mapping), and ids stay plain `u64` on the wire. The explicit id (rather
//! than `0-*`) keeps the counter in the meta hash, next to `fin`, so "append
//! unless finished" is one atomic step.
//!
//! Redis keeps the data and type, not encoded bytes: each node encodes an
//! event when it reads it (once per event per node on the live path; once per
//! replaying subscriber on replay). Every command runs under a timeout, so
//! with Redis down publishes fail fast with [`StoreError::Unavailable`].

use std::collections::HashSet;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use async_trait::async_trait;
use redis::streams::StreamRangeReply;
use redis::{RedisError, Script};

mod connect;
mod entry;
mod layout;
mod lease;
mod live;
mod partitions;
mod scripts;
pub mod topology;

use connect::{Conn, Connector};
use layout::{Layout, CLUSTER_PARTITIONS};
use topology::Topology;

use entry::{first_id, record};

use super::{
    new_epoch, Appended, Claim, Draft, Follow, Followed, IdempotencyKey, Lease, Leases, LiveFeed,
    Log, Replay, Retention, StoreError, StreamInfo, StreamSpec,
};
use crate::ids::{EventId, StreamName};

/// Longest wait for one ordinary Redis command.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Entries one live read takes per stream per call. Kept below the default
/// `--subscriber-buffer` (256) so one batch cannot overrun a live ring and
/// push every subscriber into a catch-up read.
pub(crate) const FOLLOW_BATCH: usize = 128;
/// What an append or create script says when the node must count the
/// streams of every partition before a new one is made.
struct CountFirst;

/// How to reach Redis and lay out keys.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://HOST:PORT/DB`, `redis+cluster://...` or
    /// `redis+sentinel://...` (see [`Topology`]).
    pub url: String,
    /// Prefix of every key rill writes.
    pub key_prefix: String,
    /// Live readers (each with its own connection); on a Cluster, one per
    /// partition instead.
    pub readers: usize,
}

/// The Redis Streams store: a [`Log`], [`LiveFeed`] and [`Leases`].
pub struct RedisStore {
    conns: Connector,
    layout: Layout,
    retention: Retention,
    max_streams: usize,
    /// This node, in the marks of who listens to a generation.
    node: String,
    readers: Vec<live::ReaderSlot>,
    reader_ids: Vec<AtomicI64>,
    /// Where each reader that follows removals stands in them.
    removals_seen: Vec<tokio::sync::Mutex<Option<String>>>,
    scripts: Scripts,
}

struct Scripts {
    append: Script,
    create: Script,
    list: Script,
    remove: Script,
    renew: Script,
    mark: Script,
    cancel: Script,
    claim: Script,
    count: Script,
    swap_attrs: Script,
}

fn unavailable(e: RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

pub(crate) async fn timed<T>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, RedisError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r.map_err(unavailable),
        Err(_) => Err(StoreError::Unavailable(
            "redis did not answer in time".into(),
        )),
    }
}

impl RedisStore {
    /// A store on `config.url`; connects lazily, so rill starts (and answers
    /// 503) while Redis is down.
    pub fn new(
        config: &RedisConfig,
        retention: Retention,
        max_streams: usize,
    ) -> Result<Self, StoreError> {
        let topology =
            Topology::parse(&config.url).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let (layout, readers) = if topology.is_cluster() {
            if config.key_prefix.contains(['{', '}']) {
                return Err(StoreError::Unavailable(
                    "on a Redis Cluster the key prefix may not contain braces".into(),
                ));
            }
            let layout = Layout::partitioned(&config.key_prefix, CLUSTER_PARTITIONS);
            (layout, CLUSTER_PARTITIONS)
        } else {
            (Layout::single(&config.key_prefix), config.readers.max(1))
        };
        let listeners = if layout.is_partitioned() { readers } else { 1 };
        Ok(Self {
            conns: Connector::new(&topology)?,
            layout,
            retention,
            max_streams,
            node: format!("{}{}", new_epoch(), new_epoch()),
            readers: (0..readers)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            reader_ids: (0..readers).map(|_| AtomicI64::new(0)).collect(),
            removals_seen: (0..listeners)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            scripts: Scripts {
                append: Script::new(&scripts::append()),
                create: Script::new(&scripts::create()),
                list: Script::new(scripts::LIST),
                remove: Script::new(scripts::REMOVE),
                renew: Script::new(scripts::RENEW_LEASE),
                mark: Script::new(scripts::MARK_WATCHED),
                cancel: Script::new(scripts::REQUEST_CANCEL),
                claim: Script::new(scripts::CLAIM),
                count: Script::new(scripts::COUNT),
                swap_attrs: Script::new(scripts::SWAP_ATTRS),
            },
        })
    }

    fn key(&self, name: &StreamName, part: &str) -> String {
        self.layout.key(name, part)
    }

    /// The name index of the partition of `name`.
    fn index_key(&self, name: &StreamName) -> String {
        self.layout.shared_of(name, "index")
    }

    /// A stream of removals per partition, so every node can end its
    /// subscribers of a stream removed on another node.
    fn removals_key(&self, partition: usize) -> String {
        self.layout.shared(partition, "removed")
    }

    fn generations_key(&self, name: &StreamName) -> String {
        self.layout.shared_of(name, "generations")
    }

    fn max_age_ms(&self) -> u64 {
        (self.retention.max_age.as_millis() as u64).max(1)
    }

    /// The shared command connection, made on first use; it reconnects by
    /// itself after Redis comes back (or fails over).
    async fn conn(&self) -> Result<Conn, StoreError> {
        self.conns.shared().await
    }

    /// The limit on streams a script checks (see `scripts::LIMIT`): with
    /// one partition the script counts exactly; with several the node
    /// counts them all first, when a new stream is about to be made.
    fn limit(&self, admitted: bool) -> String {
        match (self.layout.is_partitioned(), admitted) {
            (false, _) => self.max_streams.to_string(),
            (true, false) => "ask".to_owned(),
            (true, true) => "admitted".to_owned(),
        }
    }

    /// Runs a script that may make a stream, `once(limit)`: when it asks,
    /// counts every partition (see [`RedisStore::admit`]) and runs it again
    /// as admitted.
    async fn admitting<T, Fut>(&self, mut once: impl FnMut(String) -> Fut) -> Result<T, StoreError>
    where
        Fut: std::future::Future<Output = Result<Result<T, CountFirst>, StoreError>>,
    {
        if let Ok(done) = once(self.limit(false)).await? {
            return Ok(done);
        }
        self.admit().await?;
        once(self.limit(true)).await?.map_err(|CountFirst| {
            StoreError::Unavailable("redis asked to count the streams of an admitted one".into())
        })
    }

    pub(crate) async fn append_as(
        &self,
        name: &StreamName,
        draft: &Draft,
        key: Option<&IdempotencyKey>,
        mode: &str,
    ) -> Result<Option<Appended>, StoreError> {
        self.admitting(move |limit| self.append_once(name, draft, key, mode, limit))
            .await
    }

    async fn append_once(
        &self,
        name: &StreamName,
        draft: &Draft,
        key: Option<&IdempotencyKey>,
        mode: &str,
        limit: String,
    ) -> Result<Result<Option<Appended>, CountFirst>, StoreError> {
        let mut c = self.conn().await?;
        let kind = draft.event_type.as_ref().map_or("", |t| t.as_str());
        let mut call = self.scripts.append.prepare_invoke();
        call.key(self.key(name, "log"))
            .key(self.key(name, "meta"))
            .key(self.index_key(name))
            .key(self.key(name, "lease"))
            .key(self.generations_key(name))
            .key(self.key(name, "idem"))
            .key(self.key(name, "idemz"))
            .arg(name.as_str())
            .arg(kind)
            .arg(&draft.data)
            .arg(if draft.terminal { "1" } else { "0" })
            .arg(self.retention.for_stream(name).max_events)
            .arg(self.retention.max_bytes)
            .arg(self.max_age_ms())
            .arg(limit)
            .arg(mode)
            .arg(new_epoch())
            .arg(key.map_or("", |k| k.key.as_str()))
            .arg(key.map_or(0, |k| k.fingerprint).to_string());
        let reply: Vec<redis::Value> = timed(COMMAND_TIMEOUT, call.invoke_async(&mut c)).await?;
        let code: i64 = reply
            .first()
            .and_then(|v| redis::from_redis_value(v).ok())
            .unwrap_or(-99);
        match code {
            -1 => Err(StoreError::Finished(name.clone())),
            -2 | -3 => Ok(Ok(None)),
            -4 => Err(StoreError::TooManyStreams(self.max_streams)),
            -5 => Err(StoreError::KeyReused(
                key.map(|k| k.key.clone()).unwrap_or_default(),
            )),
            -6 => Ok(Err(CountFirst)),
            id if id > 0 => {
                let text = |i: usize| -> String {
                    reply
                        .get(i)
                        .and_then(|v| redis::from_redis_value::<String>(v).ok())
                        .unwrap_or_default()
                };
                let id = EventId(id as u64);
                let prefix = Some(text(1)).filter(|p| !p.is_empty());
                let fresh = text(2) == "1";
                Ok(Ok(Some(Appended {
                    id,
                    record: fresh.then(|| super::Record {
                        id,
                        frame: draft.encode(prefix.as_deref(), id),
                        terminal: draft.terminal,
                    }),
                    prefix,
                })))
            }
            other => Err(StoreError::Unavailable(format!(
                "redis append answered {other}"
            ))),
        }
    }
}

#[async_trait]
impl Log for RedisStore {
    async fn create(&self, name: &StreamName, spec: StreamSpec) -> Result<(), StoreError> {
        let spec = &spec;
        self.admitting(move |limit| async move {
            let mut c = self.conn().await?;
            let mut call = self.scripts.create.prepare_invoke();
            call.key(self.key(name, "meta"))
                .key(self.index_key(name))
                .arg(name.as_str())
                .arg(&spec.prefix)
                .arg(spec.owner.as_deref().unwrap_or_default())
                .arg(limit)
                .arg(self.max_age_ms());
            let code: i64 = timed(COMMAND_TIMEOUT, call.invoke_async(&mut c)).await?;
            match code {
                -1 => Err(StoreError::Exists(name.clone())),
                -4 => Err(StoreError::TooManyStreams(self.max_streams)),
                -6 => Ok(Err(CountFirst)),
                _ => Ok(Ok(())),
            }
        })
        .await
    }

    async fn append(
        &self,
        name: &StreamName,
        draft: &Draft,
        key: Option<&IdempotencyKey>,
    ) -> Result<Appended, StoreError> {
        self.append_as(name, draft, key, "append")
            .await?
            .ok_or_else(|| StoreError::Unavailable("append refused".into()))
    }

    async fn read_after(
        &self,
        name: &StreamName,
        after: EventId,
        limit: usize,
    ) -> Result<Replay, StoreError> {
        let mut c = self.conn().await?;
        let log = self.key(name, "log");
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HMGET")
            .arg(self.key(name, "meta"))
            .arg(&["last", "fin", "prefix", "owner", "prev"])
            .cmd("XRANGE")
            .arg(&log)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .cmd("XRANGE")
            .arg(&log)
            .arg(format!("0-{}", after.0.saturating_add(1)))
            .arg("+")
            .arg("COUNT")
            .arg(limit.max(1));
        type Meta = (
            Option<u64>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        type Reply = (Meta, StreamRangeReply, StreamRangeReply);
        let ((last, fin, prefix, owner, prev), oldest, page): Reply =
            timed(COMMAND_TIMEOUT, pipe.query_async(&mut c)).await?;
        let exists = last.is_some();
        let last = EventId(last.unwrap_or(0));
        // A stream made before incarnations existed has an empty prefix.
        let prefix = if exists {
            Some(prefix.unwrap_or_default())
        } else {
            None
        };
        let wire_prefix = prefix.as_deref().filter(|p| !p.is_empty());
        let records = if limit == 0 {
            Vec::new()
        } else {
            page.ids
                .iter()
                .filter_map(|e| record(e, wire_prefix))
                .collect()
        };
        Ok(Replay {
            records,
            first_retained: EventId(first_id(&oldest).unwrap_or(last.0 + 1)),
            last_id: last,
            finished: fin.as_deref() == Some("1"),
            prefix,
            owner: owner.filter(|o| !o.is_empty()),
            fenced_from: prev.filter(|p| !p.is_empty()),
        })
    }

    async fn list(&self) -> Result<Vec<StreamInfo>, StoreError> {
        let mut out = Vec::new();
        for p in 0..self.layout.partitions() {
            out.extend(self.list_partition(p).await?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn remove(&self, name: &StreamName) -> Result<Option<EventId>, StoreError> {
        let mut c = self.conn().await?;
        let mut call = self.scripts.remove.prepare_invoke();
        call.key(self.key(name, "log"))
            .key(self.key(name, "meta"))
            .key(self.index_key(name))
            .key(self.removals_key(self.layout.partition_of(name)))
            .key(self.key(name, "idem"))
            .key(self.key(name, "idemz"))
            .arg(name.as_str());
        let last: i64 = timed(COMMAND_TIMEOUT, call.invoke_async(&mut c)).await?;
        Ok((last >= 0).then_some(EventId(last as u64)))
    }

    async fn sweep(&self, _watched: &HashSet<StreamName>) {
        // Redis expires every key of a stream by itself, and the index
        // drops expired names whenever a stream is made or listed.
    }

    async fn healthy(&self) -> Result<(), StoreError> {
        self.conn().await?.ping().await
    }

    async fn claim(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        value: &str,
        ttl: Duration,
    ) -> Result<Claim, StoreError> {
        let mut c = self.conn().await?;
        let mut call = self.scripts.claim.prepare_invoke();
        call.key(self.layout.claim(scope, &key.key))
            .arg(value)
            .arg(key.fingerprint.to_string())
            .arg(ttl.as_millis().max(1) as u64);
        let reply: Vec<redis::Value> = timed(COMMAND_TIMEOUT, call.invoke_async(&mut c)).await?;
        let code: i64 = reply
            .first()
            .and_then(|v| redis::from_redis_value(v).ok())
            .unwrap_or(-99);
        match code {
            1 => Ok(Claim::Fresh),
            0 => Ok(Claim::Held(
                reply
                    .get(1)
                    .and_then(|v| redis::from_redis_value(v).ok())
                    .unwrap_or_default(),
            )),
            -5 => Err(StoreError::KeyReused(key.key.clone())),
            other => Err(StoreError::Unavailable(format!(
                "redis claim answered {other}"
            ))),
        }
    }

    async fn attrs(&self, name: &StreamName) -> Result<Option<String>, StoreError> {
        let mut c = self.conn().await?;
        let get = redis::cmd("GET").arg(self.key(name, "attrs")).clone();
        timed(COMMAND_TIMEOUT, get.query_async(&mut c)).await
    }

    async fn set_attrs(&self, name: &StreamName, attrs: Option<&str>) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let key = self.key(name, "attrs");
        let cmd = match attrs {
            // They last as long as the stream's events can: a stream's keys
            // expire one retention age after its last write.
            Some(a) => redis::cmd("SET")
                .arg(key)
                .arg(a)
                .arg("PX")
                .arg(self.max_age_ms())
                .clone(),
            None => redis::cmd("DEL").arg(key).clone(),
        };
        timed(COMMAND_TIMEOUT, cmd.query_async::<()>(&mut c)).await
    }

    async fn swap_attrs(
        &self,
        name: &StreamName,
        expected: Option<&str>,
        attrs: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let mut call = self.scripts.swap_attrs.prepare_invoke();
        call.key(self.key(name, "attrs"))
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(if attrs.is_some() { "1" } else { "0" })
            .arg(attrs.unwrap_or_default())
            .arg(self.max_age_ms());
        let done: i64 = timed(COMMAND_TIMEOUT, call.invoke_async(&mut c)).await?;
        Ok(done == 1)
    }
}

#[async_trait]
impl LiveFeed for RedisStore {
    async fn follow(
        &self,
        reader: usize,
        from: &[Follow],
        wait: Duration,
    ) -> Result<Followed, StoreError> {
        self.read_live(reader, from, wait).await
    }

    async fn interrupt(&self, reader: usize) {
        self.unblock(reader).await;
    }

    fn readers(&self) -> usize {
        self.readers.len()
    }

    fn reader_of(&self, name: &StreamName) -> usize {
        if self.layout.is_partitioned() {
            // One reader per partition: its streams share a slot, so one
            // `XREAD` on the slot's master follows them all.
            return self.layout.partition_of(name);
        }
        (layout::fnv(name.as_str().as_bytes()) % self.readers.len().max(1) as u64) as usize
    }

    fn hears_removals(&self, reader: usize) -> bool {
        reader < self.removals_seen.len()
    }
}

#[async_trait]
impl Leases for RedisStore {
    async fn renew_lease(&self, name: &StreamName, ttl: Duration) -> Result<Lease, StoreError> {
        self.renew(name, ttl).await
    }

    async fn mark_watched(
        &self,
        watching: &[StreamName],
        left: &[StreamName],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.mark(watching, left, ttl).await
    }

    async fn request_cancel(&self, name: &StreamName) -> Result<bool, StoreError> {
        self.ask_cancel(name).await
    }

    async fn end_orphans(&self, draft: &Draft) -> Result<Vec<StreamName>, StoreError> {
        self.reap(draft).await
    }
}
