//! The log behind every stream: the one seam between one node and many.
//!
//! Three jobs, three traits, so each back-end says plainly what it does:
//! - [`Log`]: append events, give each the next id of its stream, keep them
//!   for the stream's retention and read them back after an id. Every store
//!   is a log.
//! - [`LiveFeed`]: for a log that other nodes append to, the events in the
//!   order the log gave ids, so each node can fan them out. Only shared
//!   stores have one.
//! - [`Leases`]: which node runs a generation, whether any node still
//!   listens to it, and cancel requests between nodes. Only shared stores
//!   need them.
//!
//! A log also keeps a few attributes beside each stream (the Durable
//! Streams view's content type, expiry and producers), changed by
//! compare-and-swap so that nodes sharing a store never lose an update.
//!
//! [`Store`] bundles what a back-end provides. [`memory::MemoryStore`] is a
//! log alone; [`redis::RedisStore`] is all three.
//!
//! Every stream has an incarnation: the `prefix` of its wire ids, chosen
//! when the stream is created (a random epoch for published streams, the
//! generation id for a generation's). A stream that is deleted, expires or
//! is lost with its store comes back under a new prefix, so an id a client
//! holds from before can never name a different event: it gets
//! `event: reset`.

pub mod memory;
pub mod redis;

use std::collections::HashSet;
use std::sync::Arc;
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
    /// Whether this event ends the stream (a generation's `done` or `failed`).
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

    /// A fingerprint of what the draft says, to tell a retry of the same
    /// publish from a different publish that reuses its idempotency key.
    pub fn fingerprint(&self) -> u64 {
        let mut h = Fnv::default();
        h.write(
            self.event_type
                .as_ref()
                .map_or("", |t| t.as_str())
                .as_bytes(),
        );
        h.write(&[0xff]);
        h.write(self.data.as_bytes());
        h.0
    }
}

/// FNV-1a, 64 bits: a fingerprint that every node computes alike, whatever
/// its build (std's hasher promises no such stability).
#[derive(Debug, Clone, Copy)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Feeds `bytes`.
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
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

/// What an append did.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The event's id (for a repeated key: the id the key got first).
    pub id: EventId,
    /// The stream's wire-id prefix.
    pub prefix: Option<String>,
    /// The new record; `None` when the idempotency key had been seen and
    /// nothing was stored.
    pub record: Option<Record>,
}

impl Appended {
    /// The id as subscribers see it in `id:`.
    pub fn wire_id(&self) -> String {
        wire_id(self.prefix.as_deref(), self.id)
    }
}

/// An idempotency key as a client sent it, with the fingerprint of the
/// request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The key: 1 to 255 visible ASCII characters.
    pub key: String,
    /// Fingerprint of the request the key was sent with.
    pub fingerprint: u64,
}

/// Longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

impl IdempotencyKey {
    /// Checks `key`: 1 to 255 visible ASCII characters.
    pub fn new(key: &str, fingerprint: u64) -> Option<Self> {
        let ok = !key.is_empty()
            && key.len() <= MAX_IDEMPOTENCY_KEY_LEN
            && key.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| Self {
            key: key.to_owned(),
            fingerprint,
        })
    }
}

/// What a claim on an idempotency key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key was free; it now holds the value offered.
    Fresh,
    /// The key already held this value, for the same request.
    Held(String),
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
    /// The stream's wire-id prefix (its incarnation); `None` when the stream
    /// does not exist.
    pub prefix: Option<String>,
    /// Who owns the stream (a generation's `sub`), if anyone.
    pub owner: Option<String>,
    /// The prefix the stream had before a Redis failover gave it a new one
    /// (its ids may have been given twice: see the Redis store).
    pub fenced_from: Option<String>,
}

impl Replay {
    /// Whether the stream exists.
    pub fn exists(&self) -> bool {
        self.prefix.is_some()
    }
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
    /// Most events kept per generation stream (`gen-*`), if more than
    /// `max_events`: enough for the longest answer the token cap allows,
    /// so a generation can be replayed from its first token until it
    /// expires.
    pub generation_events: usize,
    /// Most encoded bytes kept per stream.
    pub max_bytes: usize,
    /// Oldest event kept, by age.
    pub max_age: Duration,
}

impl Retention {
    /// The retention of stream `name`: generation streams keep at least
    /// `generation_events` events.
    pub fn for_stream(&self, name: &StreamName) -> Retention {
        let mut r = *self;
        if name
            .as_str()
            .starts_with(crate::generation::GENERATION_PREFIX)
        {
            r.max_events = r.max_events.max(r.generation_events);
        }
        r
    }
}

/// What a new stream is made with.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// The wire-id prefix of its events.
    pub prefix: String,
    /// Who owns it (a generation's `sub`).
    pub owner: Option<String>,
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
    /// The node's memory budget for events is spent.
    #[error("the store holds {budget} bytes of events, its budget (--max-store-bytes); try again when older events expire")]
    Full {
        /// The budget, in bytes.
        budget: usize,
    },
    /// An idempotency key came back with a different request.
    #[error("Idempotency-Key `{0}` was already used for a different request")]
    KeyReused(String),
    /// The store cannot be reached.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// An append-only log of streams.
#[async_trait]
pub trait Log: Send + Sync + 'static {
    /// Creates an empty stream.
    async fn create(&self, name: &StreamName, spec: StreamSpec) -> Result<(), StoreError>;

    /// Appends an event, creating the stream (with a fresh incarnation) if
    /// needed. With `key`, a key seen before on this stream within its
    /// retention stores nothing and answers the id it got first.
    async fn append(
        &self,
        name: &StreamName,
        draft: &Draft,
        key: Option<&IdempotencyKey>,
    ) -> Result<Appended, StoreError>;

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

    /// Drops events past their age, and streams left empty and idle except
    /// those in `watched`: they have live subscribers, and dropping one
    /// would give it a new incarnation under them.
    async fn sweep(&self, watched: &HashSet<StreamName>);

    /// Whether the store is reachable.
    async fn healthy(&self) -> Result<(), StoreError>;

    /// Claims idempotency key `key` in `scope` for `value`, for `ttl`; or
    /// finds what it holds. A key held for a different request (another
    /// fingerprint) is [`StoreError::KeyReused`].
    async fn claim(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        value: &str,
        ttl: Duration,
    ) -> Result<Claim, StoreError>;

    /// The attributes kept beside stream `name` (the Durable Streams view
    /// keeps its content type, expiry and producers here), if any. They
    /// name the incarnation they belong to themselves: attributes outlive
    /// neither a removal nor a sweep of their stream on this store, but a
    /// shared store may still hold them for a while after.
    async fn attrs(&self, name: &StreamName) -> Result<Option<String>, StoreError>;

    /// Sets (`Some`) or clears (`None`) the attributes of stream `name`.
    async fn set_attrs(&self, name: &StreamName, attrs: Option<&str>) -> Result<(), StoreError>;

    /// Sets or clears the attributes of stream `name` only if they are
    /// still `expected` (`None`: there are none), so that nodes updating
    /// them at once never lose an update. Returns whether it did.
    async fn swap_attrs(
        &self,
        name: &StreamName,
        expected: Option<&str>,
        attrs: Option<&str>,
    ) -> Result<bool, StoreError>;
}

/// The live side of a log that many nodes append to.
#[async_trait]
pub trait LiveFeed: Send + Sync + 'static {
    /// Waits up to `wait` for events after the positions in `from`, using the
    /// connection of live reader `reader`. Returns, for each position that
    /// has news, its index in `from` and the new records in id order; the
    /// streams whose ids no longer follow on; and, for readers that
    /// [hear removals](LiveFeed::hears_removals), the streams removed (on
    /// any node) since their last call. Nothing when nothing came in time.
    async fn follow(
        &self,
        reader: usize,
        from: &[Follow],
        wait: Duration,
    ) -> Result<Followed, StoreError>;

    /// Cuts short a [`LiveFeed::follow`] of `reader` that is waiting, so it
    /// can start again with a new list of positions.
    async fn interrupt(&self, reader: usize);

    /// How many live readers the node runs.
    fn readers(&self) -> usize;

    /// The reader that follows `name`.
    fn reader_of(&self, name: &StreamName) -> usize;

    /// Whether `reader` also hears of streams removed on any node.
    fn hears_removals(&self, reader: usize) -> bool;
}

/// Generations across nodes.
#[async_trait]
pub trait Leases: Send + Sync + 'static {
    /// Takes or renews the lease of the node running the generation that
    /// writes `name`, for `ttl`, and reports what other nodes said about it.
    async fn renew_lease(&self, name: &StreamName, ttl: Duration) -> Result<Lease, StoreError>;

    /// Records that this node listens to `watching` (for `ttl` from now)
    /// and stopped listening to `left` (just now), so the nodes running
    /// those generations know who listens, and since when nobody does.
    async fn mark_watched(
        &self,
        watching: &[StreamName],
        left: &[StreamName],
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// Asks the node running the generation that writes `name` to cancel it;
    /// false when no node holds its lease.
    async fn request_cancel(&self, name: &StreamName) -> Result<bool, StoreError>;

    /// Ends every generation stream whose lease has lapsed (its node is gone)
    /// with `draft`, each exactly once however many nodes call this. Returns
    /// the streams it ended.
    async fn end_orphans(&self, draft: &Draft) -> Result<Vec<StreamName>, StoreError>;
}

/// What a back-end provides: always a log; a live feed and leases when
/// other nodes share it.
#[derive(Clone)]
pub struct Store {
    /// The log.
    pub log: Arc<dyn Log>,
    /// The live feed, for a log other nodes append to.
    pub feed: Option<Arc<dyn LiveFeed>>,
    /// Leases, for generations across nodes.
    pub leases: Option<Arc<dyn Leases>>,
}

impl Store {
    /// A log of this node alone.
    pub fn local(log: Arc<dyn Log>) -> Self {
        Self {
            log,
            feed: None,
            leases: None,
        }
    }

    /// A store that other nodes share: log, feed and leases in one.
    pub fn shared<S: Log + LiveFeed + Leases>(store: Arc<S>) -> Self {
        Self {
            log: store.clone(),
            feed: Some(store.clone()),
            leases: Some(store),
        }
    }

    /// Whether other nodes append to this store too. A shared store's live
    /// events come from its [`LiveFeed`], in the order the store gave ids.
    pub fn is_shared(&self) -> bool {
        self.feed.is_some()
    }
}

/// A fresh incarnation for a published stream: eight hex digits.
pub fn new_epoch() -> String {
    use rand::Rng;
    format!("{:08x}", rand::rng().random::<u32>())
}

/// What a lease renewal learned from other nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lease {
    /// Another node asked for the generation to be cancelled.
    pub cancel: bool,
    /// Some node listens to the stream now.
    pub watched: bool,
    /// When nobody listens: how long ago the last node stopped, if any ever
    /// listened.
    pub unheard_for: Option<Duration>,
}

/// What a live read found.
#[derive(Debug, Default)]
pub struct Followed {
    /// Index into the positions asked, and the new records, in id order.
    pub records: Vec<(usize, Vec<Record>)>,
    /// Streams removed since the last read, with their last id.
    pub removed: Vec<(StreamName, EventId)>,
    /// Indexes into the positions asked of streams whose ids no longer
    /// follow on from the position (a failover fenced them, or they were
    /// made anew): their subscribers must come back and resume.
    pub broken: Vec<usize>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_checked() {
        assert!(IdempotencyKey::new("abc-123_X", 1).is_some());
        assert!(IdempotencyKey::new(&"k".repeat(255), 1).is_some());
        for bad in ["", "a b", "é", "a\n", &"k".repeat(256)] {
            assert!(IdempotencyKey::new(bad, 1).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn fingerprints_tell_drafts_apart() {
        let a = Draft::message("x");
        let mut b = Draft::message("x");
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.event_type = EventType::new("x").ok();
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), Draft::message("y").fingerprint());
    }
}
