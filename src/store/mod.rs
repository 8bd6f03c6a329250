//! The log behind every stream: the one seam between one node and many.
//!
//! A [`Store`] appends events, gives each the next id of its stream, keeps
//! them for the stream's retention and reads them back after an id. It holds
//! each event already encoded ([`Record::frame`]), so a replay is a list of
//! shared byte buffers. The hub does the live fan-out on top of it.
//!
//! [`memory::MemoryStore`] is the default, embedded store.
//! [`redis::RedisStore`] keeps streams in Redis Streams, shared by many
//! nodes; it is [`Store::shared`], so the hub takes its live feed from
//! [`Store::follow`] instead of from its own appends.

pub mod memory;
pub mod redis;

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::ids::{wire_id, EventId, StreamName};
use crate::sse::{encode_event, EventType};

/// An event as a publisher hands it in, before it has an id.
#[derive(Debug, Clone)]
pub struct Draft {
    /// The `event:` name; `None` for a plain `message`.
    pub event_type: Option<EventType>,
    /// The data, any text.
    pub data: String,
    /// Whether this event ends the stream (a generation's `done` or `error`).
    pub terminal: bool,
}

impl Draft {
    /// A plain `message` event.
    pub fn message(data: impl Into<String>) -> Self {
        Self {
            event_type: None,
            data: data.into(),
            terminal: false,
        }
    }

    /// Encodes the draft as it will be sent, with its id.
    pub fn encode(&self, prefix: Option<&str>, id: EventId) -> Bytes {
        encode_event(
            Some(&wire_id(prefix, id)),
            self.event_type.as_ref(),
            &self.data,
        )
    }
}

/// A stored event: its id and its bytes on the wire.
#[derive(Debug, Clone)]
pub struct Record {
    /// The event's id in its stream.
    pub id: EventId,
    /// The encoded event, shared by every subscriber.
    pub frame: Bytes,
    /// Whether this event ended the stream.
    pub terminal: bool,
}

/// What a read after an id found.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// Events after the requested id, oldest first, at most the limit asked.
    pub records: Vec<Record>,
    /// Id of the oldest retained event (last id + 1 when none is retained).
    pub first_retained: EventId,
    /// Id of the newest event ever appended (0 when none).
    pub last_id: EventId,
    /// Whether the stream has ended with a terminal event.
    pub finished: bool,
    /// The stream's wire-id prefix.
    pub prefix: Option<String>,
}

/// A stream as listed by `GET /v1/streams`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct StreamInfo {
    /// The stream's name.
    pub name: String,
    /// Id of the newest event, as sent on the wire.
    pub last_id: String,
    /// Events currently retained.
    pub retained_events: usize,
    /// Bytes of encoded events retained.
    pub retained_bytes: usize,
    /// Whether the stream has ended.
    pub finished: bool,
    /// Subscribers on this node.
    pub subscribers: usize,
}

/// How long and how much a stream keeps.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Most events kept per stream.
    pub max_events: usize,
    /// Most encoded bytes kept per stream.
    pub max_bytes: usize,
    /// Oldest event kept, by age.
    pub max_age: Duration,
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream has ended; nothing more can be appended.
    #[error("stream {0} has ended")]
    Finished(StreamName),
    /// Creating the stream would pass the limit on streams.
    #[error("too many streams (limit {0})")]
    TooManyStreams(usize),
    /// A stream of that name already exists.
    #[error("stream {0} already exists")]
    Exists(StreamName),
    /// The store cannot be reached.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// An append-only log of streams.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates an empty stream whose ids carry `prefix` on the wire.
    async fn create(&self, name: &StreamName, prefix: Option<String>) -> Result<(), StoreError>;

    /// Appends an event, creating the stream if needed, and returns it with
    /// its id.
    async fn append(&self, name: &StreamName, draft: &Draft) -> Result<Record, StoreError>;

    /// Reads up to `limit` events after `after`.
    async fn read_after(
        &self,
        name: &StreamName,
        after: EventId,
        limit: usize,
    ) -> Result<Replay, StoreError>;

    /// Lists streams (subscriber counts are left 0 for the hub to fill).
    async fn list(&self) -> Result<Vec<StreamInfo>, StoreError>;

    /// Removes a stream and its events; returns its last id if it existed.
    async fn remove(&self, name: &StreamName) -> Result<Option<EventId>, StoreError>;

    /// Drops events past their age and streams left empty and idle.
    async fn sweep(&self) {}

    /// Like [`Store::sweep`], but keeps the streams in `watched` even when
    /// empty and idle: they have live subscribers, and dropping one would
    /// restart its ids under them (the next event would be `1` again, which
    /// they would take for one they already have).
    async fn sweep_watched(&self, watched: &HashSet<StreamName>) {
        let _ = watched;
        self.sweep().await
    }

    /// Whether the store is reachable.
    async fn healthy(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether other nodes append to this store too. A shared store's live
    /// events come from [`Store::follow`], in the order the store gave ids.
    fn shared(&self) -> bool {
        false
    }

    /// Waits up to `wait` for events after the positions in `from`, using the
    /// connection of live reader `reader`. Returns, for each position that
    /// has news, its index in `from` and the new records in id order; and,
    /// for reader 0 only, the streams removed (on any node) since its last
    /// call. Nothing when nothing came in time. Only shared stores follow.
    async fn follow(
        &self,
        reader: usize,
        from: &[Follow],
        wait: Duration,
    ) -> Result<Followed, StoreError> {
        let _ = (reader, from, wait);
        Err(StoreError::Unavailable(
            "this store has no live feed".into(),
        ))
    }

    /// Cuts short a [`Store::follow`] of `reader` that is waiting, so it can
    /// start again with a new list of positions.
    async fn interrupt(&self, reader: usize) {
        let _ = reader;
    }

    /// Takes or renews the lease of the node running the generation that
    /// writes `name`, for `ttl`, and reports what other nodes said about it.
    async fn renew_lease(&self, name: &StreamName, ttl: Duration) -> Result<Lease, StoreError> {
        let _ = (name, ttl);
        Ok(Lease::default())
    }

    /// Records, for `ttl`, that this node has listeners on `names`, so the
    /// nodes running those generations know someone still listens.
    async fn mark_watched(&self, names: &[StreamName], ttl: Duration) -> Result<(), StoreError> {
        let _ = (names, ttl);
        Ok(())
    }

    /// Asks the node running the generation that writes `name` to cancel it;
    /// false when no node holds its lease.
    async fn request_cancel(&self, name: &StreamName) -> Result<bool, StoreError> {
        let _ = name;
        Ok(false)
    }

    /// Ends every generation stream whose lease has lapsed (its node is gone)
    /// with `draft`, each exactly once however many nodes call this. Returns
    /// the streams it ended.
    async fn end_orphans(&self, draft: &Draft) -> Result<Vec<StreamName>, StoreError> {
        let _ = draft;
        Ok(Vec::new())
    }
}

/// What a lease renewal learned from other nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lease {
    /// Another node asked for the generation to be cancelled.
    pub cancel: bool,
    /// Some node has marked the stream watched within the lease.
    pub watched: bool,
}

/// What a live read found.
#[derive(Debug, Default)]
pub struct Followed {
    /// Index into the positions asked, and the new records, in id order.
    pub records: Vec<(usize, Vec<Record>)>,
    /// Streams removed since the last read, with their last id.
    pub removed: Vec<(StreamName, EventId)>,
}

/// A position a live reader follows a stream from.
#[derive(Debug, Clone)]
pub struct Follow {
    /// The stream.
    pub name: StreamName,
    /// The last id already fed.
    pub after: EventId,
    /// The stream's wire-id prefix, for encoding.
    pub prefix: Option<String>,
}
