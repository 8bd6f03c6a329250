//! The live feed of a shared store: a few readers per node, not one per
//! subscriber.
//!
//! Each stream with local subscribers is followed by exactly one of the
//! node's reader tasks (the store says which: `--redis-readers` of them by
//! a hash of the name, or one per partition on a Redis Cluster). A
//! reader asks the store for everything after each stream's feed position in
//! one blocking call (`XREAD BLOCK` over all its streams), encodes each new
//! event once and sends it into the stream's ring, in id order. So a node
//! costs Redis one blocked connection per reader however many browsers
//! watch, and an event costs one read per node that has watchers.
//!
//! A stream's feed starts where its first subscriber's store read ended and
//! only ever moves back (a later subscriber that read less), never past
//! anything a subscriber still needs; it is forgotten when the last local
//! subscriber leaves. When a new stream is followed its reader is woken
//! (`CLIENT UNBLOCK`), so it need not wait for its current block to end.
//!
//! Some readers also hear of streams removed on any node and end their
//! local subscribers with `event: end`, as the removing node does. A stream
//! whose ids stop following on (a Redis failover fenced it) has its local
//! subscribers told to come back; they resume, and are told with
//! `event: reset` what may be gone.
//!
//! When the store fails, every followed stream's subscribers get a `retry:`
//! and a clean close (browsers come back and resume by id), and the reader
//! tries again with a growing pause until the store answers.

use std::sync::Arc;
use std::time::Duration;

use super::{Channel, Hub, Live};
use crate::ids::{EventId, StreamName};
use crate::metrics as m;
use crate::store::{Follow, Record};

/// Longest block of one live read; a new stream waits at most this long in
/// the rare case its wake-up lands just before the reader blocks.
const FEED_WAIT: Duration = Duration::from_millis(1000);
/// Pauses between attempts while the store is down.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

impl Channel {
    pub(super) fn feed_position(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<(EventId, Option<String>)>> {
        self.feed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new local subscriber (already counted) has read the store up to
    /// `after`: makes sure the feed covers everything after it. True when
    /// this starts the feed.
    pub(super) fn follow_from(&self, after: EventId, prefix: Option<String>) -> bool {
        let mut feed = self.feed_position();
        match feed.as_mut() {
            Some((at, _)) => {
                *at = (*at).min(after);
                false
            }
            None => {
                *feed = Some((after, prefix));
                true
            }
        }
    }

    /// The last local subscriber left: the feed stops following.
    pub(super) fn stop_following(&self) {
        if self.subscriber_count() == 0 {
            *self.feed_position() = None;
        }
    }

    fn follow(&self, name: &StreamName) -> Option<Follow> {
        self.feed_position().as_ref().map(|(after, prefix)| Follow {
            name: name.clone(),
            after: *after,
            prefix: prefix.clone(),
        })
    }

    /// Sends `records` that are past the feed position into the ring.
    fn feed(&self, records: Vec<Record>) {
        let mut feed = self.feed_position();
        let Some((at, _)) = feed.as_mut() else {
            return;
        };
        let from = *at;
        let fresh: Vec<Live> = records
            .into_iter()
            .filter(|r| r.id > from)
            .map(|r| Live {
                id: r.id,
                bytes: r.frame,
                terminal: r.terminal,
            })
            .collect();
        if let Some(last) = fresh.last() {
            *at = last.id;
        }
        self.push(fresh);
    }
}

impl Hub {
    /// The reader that follows `name`.
    pub(super) fn reader_of(&self, name: &StreamName) -> usize {
        self.inner
            .store
            .feed
            .as_ref()
            .map_or(0, |f| f.reader_of(name))
    }

    /// How many live readers to run (see [`Hub::run_feed`]).
    pub fn live_readers(&self) -> usize {
        self.inner.store.feed.as_ref().map_or(0, |f| f.readers())
    }

    /// Tells the reader of `name` that it has a new stream to follow.
    pub(super) async fn wake_reader(&self, name: &StreamName) {
        let reader = self.reader_of(name);
        if let Some(w) = self.inner.wakers.get(reader) {
            w.notify_one();
        }
        if let Some(feed) = &self.inner.store.feed {
            feed.interrupt(reader).await;
        }
    }

    fn followed(&self, reader: usize) -> Vec<(Arc<Channel>, Follow)> {
        let channels: Vec<(StreamName, Arc<Channel>)> = self
            .channels()
            .iter()
            .filter(|(name, _)| self.reader_of(name) == reader)
            .map(|(n, c)| (n.clone(), c.clone()))
            .collect();
        channels
            .into_iter()
            .filter_map(|(name, c)| c.follow(&name).map(|f| (c, f)))
            .collect()
    }

    /// Runs live reader `reader` of a shared store until shutdown.
    pub async fn run_feed(self, reader: usize) {
        let Some(store) = self.inner.store.feed.clone() else {
            return;
        };
        let shutdown = self.inner.shutdown.clone();
        let Some(waker) = self.inner.wakers.get(reader) else {
            return;
        };
        let mut backoff = BACKOFF_MIN;
        loop {
            let followed = self.followed(reader);
            // A reader that hears removals never idles.
            if followed.is_empty() && !store.hears_removals(reader) {
                tokio::select! {
                    _ = waker.notified() => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
            let from: Vec<Follow> = followed.iter().map(|(_, f)| f.clone()).collect();
            let got = tokio::select! {
                r = store.follow(reader, &from, FEED_WAIT) => r,
                _ = shutdown.cancelled() => return,
            };
            match got {
                Ok(got) => {
                    backoff = BACKOFF_MIN;
                    for (i, records) in got.records {
                        if let Some((channel, _)) = followed.get(i) {
                            channel.feed(records);
                        }
                    }
                    for i in got.broken {
                        if let Some((channel, f)) = followed.get(i) {
                            self.break_off(&f.name, channel);
                        }
                    }
                    for (name, last) in got.removed {
                        self.end_subscribers(&name, None, last);
                    }
                }
                Err(e) => {
                    tracing::warn!(reader, error = %e, "live feed failed; telling subscribers to retry");
                    metrics::counter!(m::LIVE_FEED_ERRORS).increment(1);
                    for (channel, _) in &followed {
                        // As at shutdown: come back later, and resume.
                        channel.retry_later();
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}
