//! The hub: live fan-out of every stream to its subscribers.
//!
//! Each stream that someone publishes to or listens to has a [`Channel`]: a
//! `tokio::sync::broadcast` ring of encoded frames. Publishing appends to the
//! [`Store`] and sends the stored record's bytes into the ring under the
//! stream's publish lock, so the ring sees ids in order. Subscribing joins the
//! ring *before* reading the store, so every event is either in the replay or
//! in the ring (or both, and the subscriber skips ids it has already sent):
//! no gap and no duplicate at the seam.
//!
//! With a shared store (Redis) other nodes append too, so a local append
//! cannot go straight into the ring: it could overtake an event another node
//! appended first. There the live feed comes from the store instead: a
//! bounded set of reader tasks ([`Hub::run_feed`]) follow every stream that
//! has local subscribers and feed the rings in id order.
//!
//! One task per hub sends the keep-alive comment into every ring, so an idle
//! connection costs no timer of its own, and drops channels nobody holds.
//! At shutdown the same task sends a shutdown frame into every ring, so a
//! subscriber waits on its ring alone and never on the shutdown token.

mod feed;
mod subscription;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

pub use subscription::{Resume, Subscribe, Subscription};

use crate::ids::{EventId, StreamName};
use crate::sse::EventType;
use crate::store::{Draft, Record, Store, StoreError, StreamInfo};

/// Limits and timings of the hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Frames a subscriber may fall behind the live ring before it is caught
    /// up from the store.
    pub subscriber_buffer: usize,
    /// Interval of the `:` keep-alive comment.
    pub keepalive: Duration,
    /// The `retry:` hint sent first on every stream, in milliseconds.
    pub retry_ms: u64,
    /// Most subscribers on one stream (on this node).
    pub max_subscribers_per_stream: usize,
    /// Most subscribers on this node.
    pub max_subscribers: usize,
    /// Live readers following a shared store.
    pub live_readers: usize,
}

/// A frame in a stream's live ring.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The event id; `None` for a keep-alive comment or the shutdown frame.
    pub id: Option<EventId>,
    /// The encoded bytes.
    pub bytes: Bytes,
    /// Whether this frame ends the stream.
    pub terminal: bool,
}

impl Frame {
    /// The frame that tells every subscriber to come back later (the server
    /// is shutting down, or the live feed lost a shared store): no id,
    /// terminal. Its bytes are unused; each subscriber answers with its own
    /// jittered `retry:`.
    fn retry_later() -> Self {
        Self {
            id: None,
            bytes: Bytes::new(),
            terminal: true,
        }
    }

    /// Whether this is the "come back later" frame.
    pub fn is_retry_later(&self) -> bool {
        self.id.is_none() && self.terminal
    }
}

/// The live side of one stream.
#[derive(Debug)]
pub struct Channel {
    tx: broadcast::Sender<Frame>,
    publish: tokio::sync::Mutex<()>,
    subscribers: watch::Sender<usize>,
    /// With a shared store: where the live feed stands (last id fed, wire
    /// prefix); `None` until a subscriber says where to start.
    feed: Mutex<Option<(EventId, Option<String>)>>,
}

impl Channel {
    /// Subscribers on this node, as a watch that changes when one comes or goes.
    pub fn subscribers(&self) -> watch::Receiver<usize> {
        self.subscribers.subscribe()
    }
}

/// The `event: end` that closes the subscribers of a removed stream.
fn end_frame(name: &StreamName, id: EventId) -> Frame {
    let end = Draft {
        event_type: EventType::new("end").ok(),
        data: serde_json::json!({ "stream": name.as_str(), "reason": "deleted" }).to_string(),
        terminal: true,
    };
    Frame {
        id: Some(id),
        bytes: end.encode(None, id),
        terminal: true,
    }
}

/// The hub. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    channels: Mutex<HashMap<StreamName, Arc<Channel>>>,
    config: HubConfig,
    shutdown: CancellationToken,
    subscribers: AtomicUsize,
    published: AtomicU64,
    delivered: AtomicU64,
    wakers: Vec<tokio::sync::Notify>,
}

impl Hub {
    /// A hub over `store`. Call [`Hub::run_maintenance`] in a task.
    pub fn new(store: Arc<dyn Store>, config: HubConfig, shutdown: CancellationToken) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                channels: Mutex::new(HashMap::new()),
                wakers: (0..config.live_readers.max(1))
                    .map(|_| tokio::sync::Notify::new())
                    .collect(),
                config,
                shutdown,
                subscribers: AtomicUsize::new(0),
                published: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
            }),
        }
    }

    /// The store behind the hub.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The hub's configuration.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// The token that is cancelled when the server shuts down.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// Subscribers on this node, all streams.
    pub fn subscriber_count(&self) -> usize {
        self.inner.subscribers.load(Ordering::Relaxed)
    }

    /// Events published through this node, and events written to its
    /// subscribers, since start: the one count behind both the dashboard and
    /// the `/metrics` counters.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.inner.published.load(Ordering::Relaxed),
            self.inner.delivered.load(Ordering::Relaxed),
        )
    }

    /// The `n` streams with the most subscribers on this node.
    pub fn busiest(&self, n: usize) -> Vec<(StreamName, usize)> {
        let mut all = self.subscribers_per_stream();
        // Stable: equal counts stay in name order.
        all.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
        all.truncate(n);
        all
    }

    /// Whether one more subscriber fits under the node's limit.
    pub fn has_room(&self) -> bool {
        self.subscriber_count() < self.inner.config.max_subscribers
    }

    fn channels(&self) -> std::sync::MutexGuard<'_, HashMap<StreamName, Arc<Channel>>> {
        self.inner
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The channel of `name`, created if absent.
    pub fn channel(&self, name: &StreamName) -> Arc<Channel> {
        let mut map = self.channels();
        map.entry(name.clone())
            .or_insert_with(|| {
                let (tx, _) = broadcast::channel(self.inner.config.subscriber_buffer.max(1));
                let (subscribers, _) = watch::channel(0);
                Arc::new(Channel {
                    tx,
                    publish: tokio::sync::Mutex::new(()),
                    subscribers,
                    feed: Mutex::new(None),
                })
            })
            .clone()
    }

    /// Appends an event and sends it to every live subscriber.
    pub async fn publish(&self, name: &StreamName, draft: &Draft) -> Result<Record, StoreError> {
        if self.inner.store.shared() {
            // The store orders events across nodes; the feed delivers them.
            let record = self.inner.store.append(name, draft).await?;
            self.inner.published.fetch_add(1, Ordering::Relaxed);
            return Ok(record);
        }
        let channel = self.channel(name);
        let _order = channel.publish.lock().await;
        let record = self.inner.store.append(name, draft).await?;
        // No receiver is not an error: the event is in the store.
        let _ = channel.tx.send(Frame {
            id: Some(record.id),
            bytes: record.frame.clone(),
            terminal: record.terminal,
        });
        self.inner.published.fetch_add(1, Ordering::Relaxed);
        Ok(record)
    }

    /// Ends and removes a stream: live subscribers get a terminal
    /// `event: end` and are closed. Returns whether the stream existed.
    pub async fn remove(&self, name: &StreamName) -> Result<bool, StoreError> {
        let channel = self.channel(name);
        let _order = channel.publish.lock().await;
        let Some(last) = self.inner.store.remove(name).await? else {
            return Ok(false);
        };
        let _ = channel.tx.send(end_frame(name, last.next()));
        Ok(true)
    }

    /// Streams whose names start with `prefix` that have subscribers on
    /// this node.
    pub fn watched(&self, prefix: &str) -> Vec<StreamName> {
        self.channels()
            .iter()
            .filter(|(n, c)| n.as_str().starts_with(prefix) && *c.subscribers.borrow() > 0)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Streams in the store, with this node's subscriber counts.
    pub async fn list(&self) -> Result<Vec<StreamInfo>, StoreError> {
        let mut streams = self.inner.store.list().await?;
        let map = self.channels();
        for s in &mut streams {
            if let Ok(name) = StreamName::new(s.name.clone()) {
                s.subscribers = map.get(&name).map_or(0, |c| *c.subscribers.borrow());
            }
        }
        Ok(streams)
    }

    /// Streams that have subscribers on this node, with their counts, by name.
    pub fn subscribers_per_stream(&self) -> Vec<(StreamName, usize)> {
        let mut out: Vec<(StreamName, usize)> = self
            .channels()
            .iter()
            .map(|(name, c)| (name.clone(), *c.subscribers.borrow()))
            .filter(|(_, n)| *n > 0)
            .collect();
        out.sort_unstable();
        out
    }

    /// Sends keep-alives, sweeps the store and drops unused channels, until
    /// shutdown; then sends the shutdown frame into every ring.
    pub async fn run_maintenance(self) {
        let keepalive = Frame {
            id: None,
            bytes: Bytes::from_static(b":\n\n"),
            terminal: false,
        };
        let mut ticks = tokio::time::interval(self.inner.config.keepalive);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = self.inner.shutdown.cancelled() => {
                    self.announce_shutdown();
                    return;
                }
            }
            let (live, watched): (Vec<Arc<Channel>>, HashSet<StreamName>) = {
                let mut map = self.channels();
                // Only the map holds a channel nobody subscribes to or
                // publishes on; no one can reach it except through the map,
                // whose lock we hold.
                map.retain(|_, c| Arc::strong_count(c) > 1);
                let watched = map
                    .iter()
                    .filter(|(_, c)| *c.subscribers.borrow() > 0)
                    .map(|(name, _)| name.clone())
                    .collect();
                (map.values().cloned().collect(), watched)
            };
            for c in live {
                let _ = c.tx.send(keepalive.clone());
            }
            self.inner.store.sweep_watched(&watched).await;
        }
    }

    /// Puts the shutdown frame into every ring. A subscriber that joins a
    /// ring after this sees the cancelled token when it first reads the
    /// store (see `Subscription::next_chunk`).
    fn announce_shutdown(&self) {
        let live: Vec<Arc<Channel>> = self.channels().values().cloned().collect();
        for c in live {
            let _ = c.tx.send(Frame::retry_later());
        }
    }
}
