//! The hub: live fan-out of every stream to its subscribers.
//!
//! A stream that someone listens to on this node has a [`Channel`]: a ring
//! of its recent encoded events (see [`channel`]). A stream nobody listens
//! to has none: publishing to it, deleting it or being refused it costs no
//! live memory.
//!
//! Publishing appends to the store, then pushes the stored record's bytes
//! into the stream's ring, both under a publish lock (one of a fixed set,
//! chosen by the stream's name), so the ring sees ids in order. Subscribing
//! counts the subscriber in the ring *before* reading the store, so every
//! event is either in the replay or in the ring (or both, and the
//! subscriber skips ids it has already sent): no gap and no duplicate at
//! the seam.
//!
//! With a shared store (Redis) other nodes append too, so a local append
//! cannot go straight into the ring: it could overtake an event another
//! node appended first. There the live feed comes from the store instead: a
//! bounded set of reader tasks ([`Hub::run_feed`]) follow every stream that
//! has local subscribers and feed the rings in id order.
//!
//! One task per hub ticks the keep-alive of every ring and sweeps the
//! store; at shutdown it tells every ring's subscribers to come back later.

mod channel;
mod feed;
mod subscription;

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use channel::{Channel, Delivery, Live, RingLimits, Seen};
pub use subscription::{
    shutdown_retry, Cursor, Out, Place, Reset, Resume, Step, Subscribe, Subscription,
};

use crate::ids::{EventId, StreamName};
use crate::sse::EventType;
use crate::store::{Appended, Draft, IdempotencyKey, Store, StoreError, StreamInfo};

/// Publish locks; a stream takes the one its name hashes to.
const PUBLISH_LOCKS: usize = 64;

/// Limits and timings of the hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Events a subscriber may fall behind the live ring before it is caught
    /// up from the store.
    pub subscriber_buffer: usize,
    /// Bytes of events a stream's live ring holds at most.
    pub subscriber_buffer_bytes: usize,
    /// Interval of the keep-alive comment.
    pub keepalive: Duration,
    /// The `retry:` hint sent first on every stream, in milliseconds.
    pub retry_ms: u64,
    /// Most subscribers on one stream (on this node).
    pub max_subscribers_per_stream: usize,
    /// Most subscribers on this node.
    pub max_subscribers: usize,
}

/// Whether `name` is one of rill's own streams (`_*`), whose traffic is
/// left out of the published and delivered counts.
pub fn is_internal(name: &StreamName) -> bool {
    name.as_str().starts_with('_')
}

/// The `event: end` that closes the subscribers of a removed stream.
fn end_event(name: &StreamName, prefix: Option<&str>, id: EventId) -> Live {
    let end = Draft {
        event_type: EventType::new("end").ok(),
        data: serde_json::json!({ "stream": name.as_str(), "reason": "deleted" }).to_string(),
        terminal: true,
    };
    Live {
        id,
        bytes: end.encode(prefix, id),
        terminal: true,
    }
}

/// The hub. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    channels: Mutex<HashMap<StreamName, Arc<Channel>>>,
    publish_locks: Vec<tokio::sync::Mutex<()>>,
    config: HubConfig,
    shutdown: CancellationToken,
    subscribers: AtomicUsize,
    published: AtomicU64,
    /// Deliveries of channels that are gone, and to subscribers that read
    /// no channel (the demo's viewers).
    delivered_retired: AtomicU64,
    wakers: Vec<tokio::sync::Notify>,
}

impl Hub {
    /// A hub over `store`. Call [`Hub::run_maintenance`] in a task.
    pub fn new(store: Store, config: HubConfig, shutdown: CancellationToken) -> Self {
        let readers = store.feed.as_ref().map_or(1, |f| f.readers()).max(1);
        Self {
            inner: Arc::new(Inner {
                store,
                channels: Mutex::new(HashMap::new()),
                publish_locks: (0..PUBLISH_LOCKS)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
                wakers: (0..readers).map(|_| tokio::sync::Notify::new()).collect(),
                config,
                shutdown,
                subscribers: AtomicUsize::new(0),
                published: AtomicU64::new(0),
                delivered_retired: AtomicU64::new(0),
            }),
        }
    }

    /// The store behind the hub.
    pub fn store(&self) -> &Store {
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
    /// subscribers, since start, leaving out rill's own `_*` streams: the
    /// one count behind both the dashboard and the `/metrics` counters.
    pub fn totals(&self) -> (u64, u64) {
        let live: u64 = self
            .channels()
            .values()
            .filter(|c| !c.internal)
            .map(|c| c.delivered.load(Ordering::Relaxed))
            .sum();
        (
            self.inner.published.load(Ordering::Relaxed),
            live + self.inner.delivered_retired.load(Ordering::Relaxed),
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

    /// Counts `n` events written to a subscriber that reads no channel
    /// (a viewer of the demo's recording).
    pub fn count_delivered(&self, n: u64) {
        self.inner.delivered_retired.fetch_add(n, Ordering::Relaxed);
    }

    /// Takes a place under the node's subscriber limit, or `None` when it
    /// is full. The place is given back by [`Hub::release_place`].
    pub(crate) fn take_place(&self) -> bool {
        let total = &self.inner.subscribers;
        if total.fetch_add(1, Ordering::AcqRel) >= self.inner.config.max_subscribers {
            total.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        metrics::gauge!(crate::metrics::SUBSCRIBERS).increment(1.0);
        true
    }

    /// Gives back a place taken with [`Hub::take_place`].
    pub(crate) fn release_place(&self) {
        self.inner.subscribers.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(crate::metrics::SUBSCRIBERS).decrement(1.0);
    }

    fn channels(&self) -> std::sync::MutexGuard<'_, HashMap<StreamName, Arc<Channel>>> {
        self.inner
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn ring_limits(&self) -> RingLimits {
        RingLimits {
            events: self.inner.config.subscriber_buffer.max(1),
            bytes: self.inner.config.subscriber_buffer_bytes.max(1),
        }
    }

    /// The channel of `name`, made if absent. Held, it keeps the stream's
    /// subscriber count available (a generation watches it for its grace).
    pub fn channel(&self, name: &StreamName) -> Arc<Channel> {
        let limits = self.ring_limits();
        self.channels()
            .entry(name.clone())
            .or_insert_with(|| Arc::new(Channel::new(limits, is_internal(name))))
            .clone()
    }

    /// The channel of `name`, if someone listens to it or holds it.
    pub fn existing_channel(&self, name: &StreamName) -> Option<Arc<Channel>> {
        self.channels().get(name).cloned()
    }

    /// Forgets `channel` if it is still the one of `name` and only the map
    /// and the caller hold it.
    fn drop_channel_if_unused(&self, name: &StreamName, channel: &Arc<Channel>) {
        let mut map = self.channels();
        let ours = map.get(name).is_some_and(|c| Arc::ptr_eq(c, channel));
        if ours && Arc::strong_count(channel) <= 2 && channel.subscriber_count() == 0 {
            map.remove(name);
            self.retire(channel);
        }
    }

    fn retire(&self, channel: &Channel) {
        if !channel.internal {
            let n = channel.delivered.load(Ordering::Relaxed);
            self.inner.delivered_retired.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn publish_lock(&self, name: &StreamName) -> &tokio::sync::Mutex<()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        name.hash(&mut h);
        &self.inner.publish_locks[(h.finish() % PUBLISH_LOCKS as u64) as usize]
    }

    /// Appends an event and sends it to every live subscriber. With `key`,
    /// a retry of a publish already stored stores nothing and answers the
    /// first id.
    pub async fn publish(
        &self,
        name: &StreamName,
        draft: &Draft,
        key: Option<&IdempotencyKey>,
    ) -> Result<Appended, StoreError> {
        let log = &self.inner.store.log;
        let appended = if self.inner.store.is_shared() {
            // The store orders events across nodes; the feed delivers them.
            log.append(name, draft, key).await?
        } else {
            let _order = self.publish_lock(name).lock().await;
            let appended = log.append(name, draft, key).await?;
            if let (Some(r), Some(channel)) = (&appended.record, self.existing_channel(name)) {
                channel.push([Live {
                    id: r.id,
                    bytes: r.frame.clone(),
                    terminal: r.terminal,
                }]);
            }
            appended
        };
        if appended.record.is_some() && !is_internal(name) {
            self.inner.published.fetch_add(1, Ordering::Relaxed);
        }
        Ok(appended)
    }

    /// Ends and removes a stream: live subscribers get a terminal
    /// `event: end` and are closed. Returns whether the stream existed.
    pub async fn remove(&self, name: &StreamName) -> Result<bool, StoreError> {
        let _order = self.publish_lock(name).lock().await;
        let head = self
            .inner
            .store
            .log
            .read_after(name, EventId::START, 0)
            .await?;
        let Some(last) = self.inner.store.log.remove(name).await? else {
            return Ok(false);
        };
        self.end_subscribers(name, head.prefix.as_deref(), last);
        Ok(true)
    }

    /// Tells the local subscribers of a stream whose ids no longer follow on
    /// from what they were sent to come back and resume: the reconnect is
    /// answered with `event: reset`. The channel leaves the map, so those
    /// who come back follow the stream afresh.
    fn break_off(&self, name: &StreamName, channel: &Arc<Channel>) {
        let mut channels = self.channels();
        if channels.get(name).is_some_and(|c| Arc::ptr_eq(c, channel)) {
            channels.remove(name);
        }
        drop(channels);
        channel.retry_later();
        self.retire(channel);
    }

    /// Sends `event: end` to the subscribers of a removed stream. The
    /// channel leaves the map, so a stream made anew under the name gets a
    /// channel of its own.
    fn end_subscribers(&self, name: &StreamName, prefix: Option<&str>, last: EventId) {
        let channel = self.channels().remove(name);
        if let Some(channel) = channel {
            let followed = channel
                .feed_position()
                .as_ref()
                .and_then(|(_, p)| p.clone());
            let prefix = prefix.map(str::to_owned).or(followed);
            channel.push([end_event(name, prefix.as_deref(), last.next())]);
            self.retire(&channel);
        }
    }

    /// Streams whose names start with `prefix` that have subscribers on
    /// this node.
    pub fn watched(&self, prefix: &str) -> Vec<StreamName> {
        self.channels()
            .iter()
            .filter(|(n, c)| n.as_str().starts_with(prefix) && c.subscriber_count() > 0)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Streams in the store, with this node's subscriber counts.
    pub async fn list(&self) -> Result<Vec<StreamInfo>, StoreError> {
        let mut streams = self.inner.store.log.list().await?;
        let map = self.channels();
        for s in &mut streams {
            if let Ok(name) = StreamName::new(s.name.clone()) {
                s.subscribers = map.get(&name).map_or(0, |c| c.subscriber_count());
            }
        }
        Ok(streams)
    }

    /// Streams that have subscribers on this node, with their counts, by name.
    pub fn subscribers_per_stream(&self) -> Vec<(StreamName, usize)> {
        let mut out: Vec<(StreamName, usize)> = self
            .channels()
            .iter()
            .map(|(name, c)| (name.clone(), c.subscriber_count()))
            .filter(|(_, n)| *n > 0)
            .collect();
        out.sort_unstable();
        out
    }

    /// Ticks keep-alives, sweeps the store and drops unused channels, until
    /// shutdown; then tells every subscriber to come back later.
    pub async fn run_maintenance(self) {
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
                // watches; no one can reach it except through the map,
                // whose lock we hold.
                let mut gone = Vec::new();
                map.retain(|_, c| {
                    let keep = Arc::strong_count(c) > 1;
                    if !keep {
                        gone.push(c.clone());
                    }
                    keep
                });
                let watched = map
                    .iter()
                    .filter(|(_, c)| c.subscriber_count() > 0)
                    .map(|(name, _)| name.clone())
                    .collect();
                drop(map);
                for c in gone {
                    self.retire(&c);
                }
                (self.channels().values().cloned().collect(), watched)
            };
            for c in live {
                c.keepalive();
            }
            self.inner.store.log.sweep(&watched).await;
        }
    }

    /// Tells every ring's subscribers to come back later. A subscriber that
    /// joins a ring after this sees the cancelled token when it first reads
    /// the store (see `Subscription::next`).
    fn announce_shutdown(&self) {
        let live: Vec<Arc<Channel>> = self.channels().values().cloned().collect();
        for c in live {
            c.retry_later();
        }
    }
}
