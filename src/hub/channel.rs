//! The live side of one stream: a ring of recent encoded events, bounded in
//! count and in bytes, and the subscribers waiting on it.
//!
//! A publisher pushes each stored event's bytes into the ring, in id order,
//! and wakes every waiting subscriber; each subscriber keeps its own cursor
//! (the last id it sent) and takes everything after it, several events at
//! once when several are ready. A subscriber whose cursor has fallen out of
//! the ring (the ring dropped what it had not sent yet) is told it lagged
//! and goes back to the store. Nothing is pushed while nobody subscribes,
//! and the ring is emptied when the last subscriber leaves, so a stream
//! nobody reads costs no live memory.
//!
//! Two signals travel beside the events, as counters rather than entries,
//! so an idle subscriber costs no timer: the keep-alive tick (a subscriber
//! that wakes to a new tick and has nothing else sends a keep-alive) and
//! "come back later" (shutdown, or the shared store's live feed failed).

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use tokio::sync::{watch, Notify};

use crate::ids::EventId;

/// An event in the ring: its id and its encoded bytes.
#[derive(Debug, Clone)]
pub struct Live {
    /// The event's id.
    pub id: EventId,
    /// The encoded event, shared with the store and every subscriber.
    pub bytes: Bytes,
    /// Whether it ends the stream.
    pub terminal: bool,
}

/// How many events and bytes a ring holds at most.
#[derive(Debug, Clone, Copy)]
pub struct RingLimits {
    /// Most events.
    pub events: usize,
    /// Most bytes (the newest event is kept whatever its size).
    pub bytes: usize,
}

/// Most bytes a subscriber takes from the ring at once.
pub const BATCH_BYTES: usize = 64 * 1024;

/// What a subscriber finds when it looks at the ring.
#[derive(Debug)]
pub enum Delivery {
    /// Events after its cursor: their bytes (one or several, joined), how
    /// many, the last id, and whether the last one ends the stream.
    Events {
        /// The events' bytes.
        bytes: Bytes,
        /// How many events.
        count: u64,
        /// The id of the last.
        last: EventId,
        /// Whether the last ends the stream.
        terminal: bool,
    },
    /// The ring no longer holds the event after its cursor.
    Lagged,
    /// Nothing new since the last keep-alive tick: send a keep-alive.
    KeepAlive,
    /// Come back later (shutdown, or the live feed failed).
    RetryLater,
}

/// Signals a subscriber has already seen.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen {
    keepalive: u64,
    retry_later: u64,
}

#[derive(Debug)]
struct Ring {
    events: VecDeque<Live>,
    bytes: usize,
    subscribers: usize,
    keepalive: u64,
    retry_later: u64,
}

/// One stream's ring and subscribers.
#[derive(Debug)]
pub struct Channel {
    ring: Mutex<Ring>,
    wake: Notify,
    limits: RingLimits,
    /// Subscribers on this node, as a watch for those who wait on it (a
    /// generation's no-listener grace).
    count: watch::Sender<usize>,
    /// Events delivered to this stream's subscribers (the hub sums these,
    /// so a delivery touches no atomic shared by every stream).
    pub(super) delivered: AtomicU64,
    /// Whether this is one of rill's own streams (`_*`), left out of
    /// traffic counts.
    pub(super) internal: bool,
    /// With a shared store: where the live feed stands (last id fed, wire
    /// prefix); `None` until a subscriber says where to start.
    pub(super) feed: Mutex<Option<(EventId, Option<String>)>>,
}

impl Channel {
    /// An empty channel.
    pub fn new(limits: RingLimits, internal: bool) -> Self {
        Self {
            ring: Mutex::new(Ring {
                events: VecDeque::new(),
                bytes: 0,
                subscribers: 0,
                keepalive: 0,
                retry_later: 0,
            }),
            wake: Notify::new(),
            limits,
            count: watch::channel(0).0,
            delivered: AtomicU64::new(0),
            internal,
            feed: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribers on this node, as a watch that changes when one comes or goes.
    pub fn subscribers(&self) -> watch::Receiver<usize> {
        self.count.subscribe()
    }

    /// Subscribers on this node now.
    pub fn subscriber_count(&self) -> usize {
        self.lock().subscribers
    }

    /// Counts one more subscriber unless that passes `max`; true when it
    /// fits. Counted under the ring's lock, so a publisher that finds no
    /// subscriber (and pushes nothing) published before this subscriber
    /// reads the store, and the store has the event.
    pub(super) fn join(&self, max: usize) -> Option<Seen> {
        let seen = {
            let mut ring = self.lock();
            if ring.subscribers >= max {
                return None;
            }
            ring.subscribers += 1;
            self.count.send_replace(ring.subscribers);
            Seen {
                keepalive: ring.keepalive,
                retry_later: ring.retry_later,
            }
        };
        Some(seen)
    }

    /// Counts a subscriber gone; returns how many remain. The last one
    /// empties the ring.
    pub(super) fn leave(&self) -> usize {
        let mut ring = self.lock();
        ring.subscribers = ring.subscribers.saturating_sub(1);
        if ring.subscribers == 0 {
            ring.events = VecDeque::new();
            ring.bytes = 0;
        }
        self.count.send_replace(ring.subscribers);
        ring.subscribers
    }

    /// Pushes events (in id order, after everything already pushed) and
    /// wakes the subscribers. Does nothing while nobody subscribes.
    pub fn push(&self, events: impl IntoIterator<Item = Live>) {
        {
            let mut ring = self.lock();
            if ring.subscribers == 0 {
                return;
            }
            for live in events {
                if ring.events.back().is_some_and(|b| b.id >= live.id) {
                    continue;
                }
                ring.bytes += live.bytes.len();
                ring.events.push_back(live);
            }
            while ring.events.len() > 1
                && (ring.events.len() > self.limits.events || ring.bytes > self.limits.bytes)
            {
                if let Some(old) = ring.events.pop_front() {
                    ring.bytes -= old.bytes.len();
                }
            }
        }
        self.wake.notify_waiters();
    }

    /// Ticks the keep-alive and wakes the subscribers.
    pub(super) fn keepalive(&self) {
        self.lock().keepalive += 1;
        self.wake.notify_waiters();
    }

    /// Tells every current subscriber to come back later.
    pub(super) fn retry_later(&self) {
        self.lock().retry_later += 1;
        self.wake.notify_waiters();
    }

    /// Waits until there is something for a subscriber whose cursor is
    /// `last`: events after it, a lag, a keep-alive tick or "come back later".
    pub async fn next(&self, last: EventId, seen: &mut Seen) -> Delivery {
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            // Registered before looking, so a push between the look and the
            // wait still wakes us.
            woken.as_mut().enable();
            if let Some(d) = self.look(last, seen) {
                return d;
            }
            woken.await;
        }
    }

    /// What there is for a subscriber at `last` now, without waiting.
    pub fn look(&self, last: EventId, seen: &mut Seen) -> Option<Delivery> {
        let ring = self.lock();
        if ring.retry_later > seen.retry_later {
            seen.retry_later = ring.retry_later;
            return Some(Delivery::RetryLater);
        }
        let start = ring.events.partition_point(|e| e.id <= last);
        if let Some(first) = ring.events.get(start) {
            if first.id != last.next() {
                return Some(Delivery::Lagged);
            }
            return Some(batch(ring.events.range(start..)));
        }
        if ring.keepalive > seen.keepalive {
            seen.keepalive = ring.keepalive;
            return Some(Delivery::KeepAlive);
        }
        None
    }
}

/// Joins consecutive events up to [`BATCH_BYTES`] (always at least one,
/// never past a terminal one): one write for a burst instead of one each.
fn batch<'a>(mut events: impl Iterator<Item = &'a Live>) -> Delivery {
    let Some(first) = events.next() else {
        return Delivery::Lagged;
    };
    let (mut count, mut last, mut terminal) = (1, first.id, first.terminal);
    let mut joined: Option<BytesMut> = None;
    for e in events {
        let len = joined.as_ref().map_or(first.bytes.len(), |b| b.len());
        if terminal || len + e.bytes.len() > BATCH_BYTES {
            break;
        }
        let buf = joined.get_or_insert_with(|| {
            let mut b = BytesMut::with_capacity(BATCH_BYTES.min(first.bytes.len() * 8));
            b.extend_from_slice(&first.bytes);
            b
        });
        buf.extend_from_slice(&e.bytes);
        count += 1;
        last = e.id;
        terminal = e.terminal;
    }
    Delivery::Events {
        bytes: joined.map_or_else(|| first.bytes.clone(), BytesMut::freeze),
        count,
        last,
        terminal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(id: u64, len: usize) -> Live {
        Live {
            id: EventId(id),
            bytes: Bytes::from(vec![b'x'; len]),
            terminal: false,
        }
    }

    fn limits(events: usize, bytes: usize) -> RingLimits {
        RingLimits { events, bytes }
    }

    #[test]
    fn nothing_is_kept_without_subscribers() {
        let c = Channel::new(limits(8, 1 << 20), false);
        c.push([live(1, 10)]);
        let mut seen = c.join(10).unwrap();
        assert!(c.look(EventId(0), &mut seen).is_none());
        c.push([live(2, 10)]);
        // The subscriber read event 1 from the store, then gets 2 live.
        match c.look(EventId(1), &mut seen) {
            Some(Delivery::Events { count: 1, last, .. }) => assert_eq!(last, EventId(2)),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.leave(), 0);
        assert_eq!(c.lock().bytes, 0);
    }

    #[test]
    fn the_ring_is_bounded_in_bytes_and_a_laggard_is_told() {
        let c = Channel::new(limits(100, 1000), false);
        let mut seen = c.join(10).unwrap();
        c.push((1..=10).map(|i| live(i, 300)));
        assert!(c.lock().bytes <= 1000);
        assert!(matches!(
            c.look(EventId(0), &mut seen),
            Some(Delivery::Lagged)
        ));
        // A frame larger than the whole bound is still delivered.
        c.push([live(11, 5000)]);
        assert_eq!(c.lock().events.len(), 1);
        assert!(matches!(
            c.look(EventId(10), &mut seen),
            Some(Delivery::Events { count: 1, .. })
        ));
    }

    #[test]
    fn ready_events_are_joined_and_stop_at_the_end() {
        let c = Channel::new(limits(100, 1 << 20), false);
        let mut seen = c.join(10).unwrap();
        c.push((1..=3).map(|i| live(i, 10)));
        let mut end = live(4, 10);
        end.terminal = true;
        c.push([end, live(5, 10)]);
        match c.look(EventId(0), &mut seen) {
            Some(Delivery::Events {
                bytes,
                count,
                last,
                terminal,
            }) => {
                assert_eq!(
                    (bytes.len(), count, last, terminal),
                    (40, 4, EventId(4), true)
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn signals_reach_each_subscriber_once() {
        let c = Channel::new(limits(8, 1 << 20), false);
        let mut seen = c.join(10).unwrap();
        assert!(c.look(EventId(0), &mut seen).is_none());
        c.keepalive();
        assert!(matches!(
            c.look(EventId(0), &mut seen),
            Some(Delivery::KeepAlive)
        ));
        assert!(c.look(EventId(0), &mut seen).is_none());
        c.retry_later();
        assert!(matches!(
            c.look(EventId(0), &mut seen),
            Some(Delivery::RetryLater)
        ));
        let mut late = c.join(10).unwrap();
        assert!(c.look(EventId(0), &mut late).is_none(), "joined after");
        assert!(c.join(2).is_none(), "over the per-stream limit");
    }
}
