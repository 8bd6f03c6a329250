//! The shared store: streams in Redis Streams, so many rill nodes serve the
//! same streams and a browser can resume on any of them.
//!
//! Keys, under a configurable prefix `P` (the `{name}` hash tag keeps one
//! stream's keys in one cluster slot):
//! - `P{name}:log`: a Redis Stream; entry `0-<n>` is event `n`, with fields
//!   `t` (event type, empty for `message`), `d` (data), `x` (terminal),
//!   `ts` (Redis time, ms) and `n` (stored size).
//! - `P{name}:meta`: a hash with `last` (the id counter), `fin`, `bytes`
//!   and `prefix` (the wire-id prefix).
//! - `P{name}:lease`, `P{name}:cancel`, `P{name}:watched`: a generation's
//!   owner lease, a cancel request from another node, and a mark that some
//!   node has listeners.
//! - `Pstreams` and `Pgenerations`: sets of stream names and of generation
//!   streams that hold a lease.
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

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::StreamRangeReply;
use redis::{Client, RedisError, Script};

mod entry;
mod lease;
mod live;
mod scripts;

use entry::{first_id, record};

use super::{
    Draft, Follow, Followed, Lease, Record, Replay, Retention, Store, StoreError, StreamInfo,
};
use crate::ids::{wire_id, EventId, StreamName};

/// Longest wait for one ordinary Redis command.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Entries one live read takes per stream per call. Kept below the default
/// `--subscriber-buffer` (256) so one batch cannot overrun a live ring and
/// push every subscriber into a catch-up read.
pub(crate) const FOLLOW_BATCH: usize = 128;

/// How to reach Redis and lay out keys.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://HOST:PORT/DB`.
    pub url: String,
    /// Prefix of every key rill writes.
    pub key_prefix: String,
    /// Live readers (each with its own connection).
    pub readers: usize,
}

/// The Redis Streams [`Store`].
pub struct RedisStore {
    client: Client,
    prefix: String,
    retention: Retention,
    max_streams: usize,
    manager: tokio::sync::Mutex<Option<ConnectionManager>>,
    readers: Vec<tokio::sync::Mutex<Option<MultiplexedConnection>>>,
    reader_ids: Vec<AtomicI64>,
    /// Where reader 0 stands in the removals stream.
    removals_seen: tokio::sync::Mutex<Option<String>>,
    scripts: Scripts,
}

struct Scripts {
    append: Script,
    create: Script,
    remove: Script,
    renew: Script,
    cancel: Script,
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
        let client = Client::open(config.url.as_str())
            .map_err(|e| StoreError::Unavailable(format!("bad redis URL: {e}")))?;
        let readers = config.readers.max(1);
        Ok(Self {
            client,
            prefix: config.key_prefix.clone(),
            retention,
            max_streams,
            manager: tokio::sync::Mutex::new(None),
            readers: (0..readers)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            reader_ids: (0..readers).map(|_| AtomicI64::new(0)).collect(),
            removals_seen: tokio::sync::Mutex::new(None),
            scripts: Scripts {
                append: Script::new(scripts::APPEND),
                create: Script::new(scripts::CREATE),
                remove: Script::new(scripts::REMOVE),
                renew: Script::new(scripts::RENEW_LEASE),
                cancel: Script::new(scripts::REQUEST_CANCEL),
            },
        })
    }

    fn key(&self, name: &StreamName, part: &str) -> String {
        format!("{}{{{}}}:{}", self.prefix, name, part)
    }

    fn index_key(&self) -> String {
        format!("{}streams", self.prefix)
    }

    /// A stream of removals, so every node can end its subscribers of a
    /// stream removed on another node.
    fn removals_key(&self) -> String {
        format!("{}removed", self.prefix)
    }

    fn generations_key(&self) -> String {
        format!("{}generations", self.prefix)
    }

    fn max_age_ms(&self) -> u64 {
        (self.retention.max_age.as_millis() as u64).max(1)
    }

    /// The shared command connection, made on first use. The manager
    /// reconnects by itself after Redis comes back.
    async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        let mut slot = self.manager.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(1))
            .set_response_timeout(COMMAND_TIMEOUT)
            // No retries inside the manager: a command that meets a dead
            // connection fails at once (503) and the next one reconnects.
            .set_number_of_retries(0);
        let c = timed(
            COMMAND_TIMEOUT,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    pub(crate) async fn append_as(
        &self,
        name: &StreamName,
        draft: &Draft,
        mode: &str,
    ) -> Result<Option<Record>, StoreError> {
        let mut c = self.conn().await?;
        let kind = draft.event_type.as_ref().map_or("", |t| t.as_str());
        let mut call = self.scripts.append.prepare_invoke();
        call.key(self.key(name, "log"))
            .key(self.key(name, "meta"))
            .key(self.index_key())
            .key(self.key(name, "lease"))
            .key(self.generations_key())
            .arg(name.as_str())
            .arg(kind)
            .arg(&draft.data)
            .arg(if draft.terminal { "1" } else { "0" })
            .arg(self.retention.max_events)
            .arg(self.retention.max_bytes)
            .arg(self.max_age_ms())
            .arg(self.max_streams)
            .arg(mode);
        let (code, prefix): (i64, Option<String>) =
            timed(COMMAND_TIMEOUT, call.invoke_async(&mut c)).await?;
        match code {
            -1 => Err(StoreError::Finished(name.clone())),
            -2 | -3 => Ok(None),
            -4 => Err(StoreError::TooManyStreams(self.max_streams)),
            id => {
                let id = EventId(id as u64);
                let prefix = prefix.filter(|p| !p.is_empty());
                Ok(Some(Record {
                    id,
                    frame: draft.encode(prefix.as_deref(), id),
                    terminal: draft.terminal,
                }))
            }
        }
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn create(&self, name: &StreamName, prefix: Option<String>) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let mut call = self.scripts.create.prepare_invoke();
        call.key(self.key(name, "meta"))
            .key(self.index_key())
            .arg(name.as_str())
            .arg(prefix.unwrap_or_default())
            .arg(self.max_streams)
            .arg(self.max_age_ms());
        let code: i64 = timed(COMMAND_TIMEOUT, call.invoke_async(&mut c)).await?;
        match code {
            -1 => Err(StoreError::Exists(name.clone())),
            -4 => Err(StoreError::TooManyStreams(self.max_streams)),
            _ => Ok(()),
        }
    }

    async fn append(&self, name: &StreamName, draft: &Draft) -> Result<Record, StoreError> {
        self.append_as(name, draft, "append")
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
            .arg(&["last", "fin", "prefix"])
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
        type Reply = (
            (Option<u64>, Option<String>, Option<String>),
            StreamRangeReply,
            StreamRangeReply,
        );
        let ((last, fin, prefix), oldest, page): Reply =
            timed(COMMAND_TIMEOUT, pipe.query_async(&mut c)).await?;
        let last = EventId(last.unwrap_or(0));
        let prefix = prefix.filter(|p| !p.is_empty());
        let records = if limit == 0 {
            Vec::new()
        } else {
            page.ids
                .iter()
                .filter_map(|e| record(e, prefix.as_deref()))
                .collect()
        };
        Ok(Replay {
            records,
            first_retained: EventId(first_id(&oldest).unwrap_or(last.0 + 1)),
            last_id: last,
            finished: fin.as_deref() == Some("1"),
            prefix,
        })
    }

    async fn list(&self) -> Result<Vec<StreamInfo>, StoreError> {
        let mut c = self.conn().await?;
        let mut names: Vec<String> = timed(
            COMMAND_TIMEOUT,
            redis::cmd("SMEMBERS")
                .arg(self.index_key())
                .query_async(&mut c),
        )
        .await?;
        names.sort();
        let names: Vec<StreamName> = names
            .into_iter()
            .filter_map(|n| StreamName::new(n).ok())
            .collect();
        let mut pipe = redis::pipe();
        for n in &names {
            pipe.cmd("HMGET")
                .arg(self.key(n, "meta"))
                .arg(&["last", "fin", "prefix", "bytes"])
                .cmd("XLEN")
                .arg(self.key(n, "log"));
        }
        type Row = (
            (Option<u64>, Option<String>, Option<String>, Option<u64>),
            usize,
        );
        let rows: Vec<Row> = timed(COMMAND_TIMEOUT, pipe.query_async(&mut c)).await?;
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for (name, ((last, fin, prefix, bytes), len)) in names.into_iter().zip(rows) {
            let Some(last) = last else {
                // Expired with its retention: forget it.
                gone.push(name.to_string());
                continue;
            };
            let prefix = prefix.filter(|p| !p.is_empty());
            out.push(StreamInfo {
                last_id: wire_id(prefix.as_deref(), EventId(last)),
                name: name.to_string(),
                retained_events: len,
                retained_bytes: bytes.unwrap_or(0) as usize,
                finished: fin.as_deref() == Some("1"),
                subscribers: 0,
            });
        }
        if !gone.is_empty() {
            let _: Result<i64, _> = timed(
                COMMAND_TIMEOUT,
                redis::cmd("SREM")
                    .arg(self.index_key())
                    .arg(gone)
                    .query_async(&mut c),
            )
            .await;
        }
        Ok(out)
    }

    async fn remove(&self, name: &StreamName) -> Result<Option<EventId>, StoreError> {
        let mut c = self.conn().await?;
        let mut call = self.scripts.remove.prepare_invoke();
        call.key(self.key(name, "log"))
            .key(self.key(name, "meta"))
            .key(self.index_key())
            .key(self.removals_key())
            .arg(name.as_str());
        let last: i64 = timed(COMMAND_TIMEOUT, call.invoke_async(&mut c)).await?;
        Ok((last >= 0).then_some(EventId(last as u64)))
    }

    async fn healthy(&self) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let _: String = timed(COMMAND_TIMEOUT, redis::cmd("PING").query_async(&mut c)).await?;
        Ok(())
    }

    fn shared(&self) -> bool {
        true
    }

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

    async fn renew_lease(&self, name: &StreamName, ttl: Duration) -> Result<Lease, StoreError> {
        self.renew(name, ttl).await
    }

    async fn mark_watched(&self, names: &[StreamName], ttl: Duration) -> Result<(), StoreError> {
        self.mark(names, ttl).await
    }

    async fn request_cancel(&self, name: &StreamName) -> Result<bool, StoreError> {
        self.ask_cancel(name).await
    }

    async fn end_orphans(&self, draft: &Draft) -> Result<Vec<StreamName>, StoreError> {
        self.reap(draft).await
    }
}
