//! One subscriber's view of a stream: replay from an id, then live.
//!
//! A [`Subscription`] yields what its response body says, as [`Out`]
//! values that the HTTP layer encodes: the `retry:` hint, an `event: reset`
//! when the requested id is gone or belongs to another incarnation of the
//! stream, the retained events after the id, then live events. When it
//! falls out of the live ring it goes back to the store and catches up; if
//! the store no longer has what it missed, it says so with a reset.
//!
//! It is two things: a [`Cursor`] (where in the stream, and how to move
//! on) and a [`Place`] (the subscriber's place under the limits, given
//! back when dropped: the client went away). The delivery engine splits
//! them: many parked connections at the same position share one cursor,
//! each keeping its own place.
//!
//! Waiting for the next live event touches nothing shared but the ring:
//! shutdown arrives as a signal in the ring (or, for a subscriber that is
//! reading the store, as the cancelled token checked once per page).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::channel::{Channel, Delivery, Seen, BATCH_BYTES};
use super::Hub;
use crate::ids::{wire_id, EventId, StreamName, WireId};
use crate::metrics as m;
use crate::store::{Record, StoreError};

/// Events read from the store per page during replay.
const REPLAY_PAGE: usize = 256;

/// Where a client asked to resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// No id: start at the live edge.
    Live,
    /// A new reader of a stream rill just made for it (a generation): every
    /// event from the first. Not a resume.
    Beginning,
    /// After this id (`0`: everything retained).
    From(WireId),
    /// Text that is not one of rill's ids; answered with `event: reset`.
    Invalid(String),
}

impl Resume {
    /// The id as the client sent it, for messages.
    pub fn raw(&self) -> Option<String> {
        match self {
            Resume::Live | Resume::Beginning => None,
            Resume::From(w) => Some(wire_id(w.prefix.as_deref(), w.id)),
            Resume::Invalid(s) => Some(s.clone()),
        }
    }
}

/// The answer to a subscribe request.
pub enum Subscribe {
    /// Stream this.
    Stream(Box<Subscription>),
    /// The stream has ended and the client has read the end: answer `204`.
    FullyRead,
    /// Over a subscriber limit: answer `200` with `retry:` and close.
    Overloaded,
}

/// What a client missed, told with `event: reset` before what follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reset {
    /// Why: `unknown` (an id of no incarnation of this stream), `expired`
    /// (older than retention) or `lagged` (fell behind while connected).
    pub reason: &'static str,
    /// The id the client asked to resume after, as it sent it.
    pub requested: Option<String>,
    /// How many events were missed, when known.
    pub missed: Option<u64>,
    /// The id from which the stream goes on (the reset's own `id:`).
    pub resume_from: String,
}

/// One piece of a subscriber's response, for the HTTP layer to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// The `retry:` hint that opens a stream.
    Retry(u64),
    /// Encoded events, one or several, as they go on the wire.
    Events {
        /// Their bytes.
        bytes: Bytes,
        /// How many events.
        count: u64,
    },
    /// A keep-alive, so proxies do not cut an idle stream.
    KeepAlive,
    /// Events were missed.
    Reset(Reset),
    /// The end for now: come back after this many milliseconds (shutdown,
    /// or the store is in trouble).
    Close(u64),
}

/// Where a cursor stands, from [`Cursor::ready`].
#[derive(Debug)]
pub enum Step {
    /// This is next to send.
    Out(Out),
    /// Everything up to the live edge is sent.
    Live,
    /// The stream is over.
    End,
}

/// A live subscription; see the module docs.
pub struct Subscription {
    cursor: Cursor,
    place: Place,
}

/// A position in a stream and the way on from it: what is still to send
/// (the opening, a replay page), then live events from the ring, back to
/// the store when it falls out of the ring.
pub struct Cursor {
    hub: Hub,
    name: StreamName,
    channel: Arc<Channel>,
    prefix: Option<String>,
    last: EventId,
    seen: Seen,
    prelude: VecDeque<Out>,
    backlog: VecDeque<Record>,
    caught_up: bool,
    ended: bool,
}

impl Hub {
    /// Subscribes to `name`, resuming as `resume` says.
    pub async fn subscribe(
        &self,
        name: &StreamName,
        resume: &Resume,
    ) -> Result<Subscribe, StoreError> {
        let cfg = self.config();
        let Some((place, seen)) = Place::take(self, name) else {
            metrics::counter!(m::REJECTED, "reason" => "subscriber_limit").increment(1);
            return Ok(Subscribe::Overloaded);
        };
        // Counted in the ring before the store is read: see the hub's docs.
        let head = self.store().log.read_after(name, EventId::START, 0).await?;
        let requested_after = match resume {
            Resume::Live => Some(head.last_id),
            Resume::Beginning => Some(EventId::START),
            Resume::From(w) if w.prefix.is_none() && w.id == EventId::START => Some(EventId::START),
            Resume::From(w) if head.exists() && w.prefix == head.prefix => Some(w.id),
            Resume::From(w) if head.exists() && head.prefix.as_deref() == Some("") => {
                // A stream made before incarnations: its ids are plain.
                w.prefix.is_none().then_some(w.id)
            }
            _ => None,
        };
        if head.finished && requested_after == Some(head.last_id) {
            return Ok(Subscribe::FullyRead);
        }
        if matches!(resume, Resume::From(_) | Resume::Invalid(_)) {
            metrics::counter!(m::RESUMES).increment(1);
        }
        let raw = resume.raw();
        let mut prelude = VecDeque::from([Out::Retry(cfg.retry_ms)]);
        let before_first = EventId(head.first_retained.0.saturating_sub(1));
        let last = match requested_after {
            Some(after) if after > head.last_id => {
                // Not an id this stream has given: say so, replay what is kept.
                prelude.push_back(reset(&head.prefix, before_first, "unknown", None, raw));
                before_first
            }
            None => {
                // An id of the incarnation a Redis failover fenced off: what
                // came after it may be lost, or given again under new ids.
                let fenced = matches!(resume, Resume::From(w)
                    if w.prefix.is_some() && w.prefix == head.fenced_from);
                let reason = if fenced { "failover" } else { "unknown" };
                prelude.push_back(reset(&head.prefix, before_first, reason, None, raw));
                before_first
            }
            Some(after) if after.next() < head.first_retained => {
                let missed = before_first.0 - after.0;
                prelude.push_back(reset(
                    &head.prefix,
                    before_first,
                    "expired",
                    Some(missed),
                    raw,
                ));
                before_first
            }
            Some(after) => after,
        };
        let ended = head.finished && last >= head.last_id;
        // The feed (shared stores) must cover everything after what this
        // subscriber read from the store: `head.last_id`.
        let started = place.channel.follow_from(head.last_id, head.prefix.clone());
        // Built before the wake-up's await, so that a client gone meanwhile
        // still gives its place back (in the place's `Drop`).
        let sub = Subscription {
            cursor: Cursor {
                hub: self.clone(),
                name: name.clone(),
                channel: place.channel.clone(),
                prefix: head.prefix,
                last,
                seen,
                prelude,
                backlog: VecDeque::new(),
                caught_up: false,
                ended,
            },
            place,
        };
        if started && self.store().is_shared() {
            self.wake_reader(name).await;
        }
        Ok(Subscribe::Stream(Box::new(sub)))
    }
}

fn reset(
    prefix: &Option<String>,
    at: EventId,
    reason: &'static str,
    missed: Option<u64>,
    requested: Option<String>,
) -> Out {
    metrics::counter!(m::RESETS, "reason" => reason).increment(1);
    let prefix = prefix.as_deref().filter(|p| !p.is_empty());
    Out::Reset(Reset {
        reason,
        requested,
        missed,
        resume_from: wire_id(prefix, at),
    })
}

impl Subscription {
    /// The stream this subscription reads.
    pub fn stream(&self) -> &StreamName {
        &self.cursor.name
    }

    /// The next piece of the response; `None` when the stream is over.
    pub async fn next(&mut self) -> Option<Out> {
        let out = self.cursor.next().await;
        if let Some(Out::Events { count, .. }) = &out {
            self.cursor.count(*count);
        }
        out
    }

    /// The position, for a reader that goes on from here.
    pub fn cursor(&self) -> &Cursor {
        &self.cursor
    }

    /// The position and the place, apart.
    pub fn into_parts(self) -> (Cursor, Place) {
        (self.cursor, self.place)
    }
}

impl Cursor {
    /// A cursor at `last` of stream `name` (of incarnation `prefix`), at
    /// the live edge, with nothing left to send before live events: where
    /// a reader goes on after it has sent everything up to `last`.
    pub fn at(&self, last: EventId) -> Cursor {
        Cursor {
            hub: self.hub.clone(),
            name: self.name.clone(),
            channel: self.channel.clone(),
            prefix: self.prefix.clone(),
            last,
            seen: self.seen,
            prelude: VecDeque::new(),
            backlog: VecDeque::new(),
            caught_up: true,
            ended: self.ended,
        }
    }

    /// The stream.
    pub fn stream(&self) -> &StreamName {
        &self.name
    }

    /// The last event id sent.
    pub fn last(&self) -> EventId {
        self.last
    }

    /// Whether the stream is over for this cursor.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Counts `n` events written to subscribers of this stream.
    pub fn count(&self, n: u64) {
        self.channel.delivered.fetch_add(n, Ordering::Relaxed);
    }

    /// The next piece to send; `None` when the stream is over. Deliveries
    /// are not counted here: whoever writes them counts them.
    pub async fn next(&mut self) -> Option<Out> {
        match self.step(true).await {
            Step::Out(out) => Some(out),
            Step::End | Step::Live => None,
        }
    }

    /// Like [`Cursor::next`], but rather than wait for live events it says
    /// [`Step::Live`]: everything up to the live edge is sent, and the next
    /// thing to send is whatever the stream gets next.
    pub async fn ready(&mut self) -> Step {
        self.step(false).await
    }

    async fn step(&mut self, wait: bool) -> Step {
        loop {
            if let Some(out) = self.prelude.pop_front() {
                return Step::Out(out);
            }
            if self.ended {
                return Step::End;
            }
            if !self.backlog.is_empty() {
                let (bytes, count) = self.take_backlog();
                return Step::Out(Out::Events { bytes, count });
            }
            if !self.caught_up {
                if self.hub.shutdown().is_cancelled() {
                    // The shutdown signal may have passed while we read the
                    // store, or been sent before we joined the ring.
                    return Step::Out(self.shut_down());
                }
                if let Err(e) = self.fill_backlog().await {
                    tracing::warn!(stream = %self.name, error = %e, "replay failed; closing");
                    self.ended = true;
                    return Step::Out(Out::Close(self.hub.config().retry_ms));
                }
                continue;
            }
            // A replay page is up to REPLAY_PAGE records; a subscriber
            // waiting on live events keeps neither that allocation nor the
            // prelude's.
            if self.backlog.capacity() > 0 || self.prelude.capacity() > 0 {
                self.backlog = VecDeque::new();
                self.prelude = VecDeque::new();
            }
            let delivery = if wait {
                self.channel.next(self.last, &mut self.seen).await
            } else {
                match self.channel.look(self.last, &mut self.seen) {
                    Some(d) => d,
                    None => return Step::Live,
                }
            };
            match delivery {
                Delivery::RetryLater => return Step::Out(self.shut_down()),
                Delivery::KeepAlive => return Step::Out(Out::KeepAlive),
                Delivery::Lagged => {
                    // Fell out of the ring: catch up from the store.
                    metrics::counter!(m::SLOW_CATCHUPS).increment(1);
                    self.caught_up = false;
                }
                Delivery::Events { terminal: true, .. } if self.hub.shutdown().is_cancelled() => {
                    // A generation ended by this very shutdown: the client is
                    // told to come back rather than that the answer is done,
                    // whichever of the two signals reached the ring first.
                    return Step::Out(self.shut_down());
                }
                Delivery::Events {
                    bytes,
                    count,
                    last,
                    terminal,
                } => {
                    self.moved(last, terminal);
                    return Step::Out(Out::Events { bytes, count });
                }
            }
        }
    }

    fn moved(&mut self, last: EventId, terminal: bool) {
        self.last = last;
        self.ended |= terminal;
    }

    /// The replayed events in hand, joined up to the batch size, so a
    /// subscriber catching up gets one write per batch instead of one per
    /// event. The events' bytes are copied, never re-encoded (see
    /// `bench/RESULTS.md`, catch-up replay).
    fn take_backlog(&mut self) -> (Bytes, u64) {
        let mut parts: Vec<Bytes> = Vec::new();
        let (mut len, mut count, mut last, mut terminal) = (0, 0, self.last, false);
        while let Some(r) = self.backlog.front() {
            if terminal || (count > 0 && len + r.frame.len() > BATCH_BYTES) {
                break;
            }
            let Some(r) = self.backlog.pop_front() else {
                break;
            };
            len += r.frame.len();
            count += 1;
            last = r.id;
            terminal = r.terminal;
            parts.push(r.frame);
        }
        self.moved(last, terminal);
        if parts.len() == 1 {
            return (parts.pop().unwrap_or_default(), count);
        }
        let mut joined = BytesMut::with_capacity(len);
        for p in parts {
            joined.extend_from_slice(&p);
        }
        (joined.freeze(), count)
    }

    /// Ends the stream: come back later, after a jittered pause.
    fn shut_down(&mut self) -> Out {
        self.ended = true;
        Out::Close(shutdown_retry(self.hub.config().retry_ms))
    }

    async fn fill_backlog(&mut self) -> Result<(), StoreError> {
        let page = self
            .hub
            .store()
            .log
            .read_after(&self.name, self.last, REPLAY_PAGE)
            .await?;
        let moved = match (&self.prefix, &page.prefix) {
            (Some(mine), Some(now)) => mine != now,
            (Some(_), None) => true,
            (None, now) => {
                self.prefix.clone_from(now);
                false
            }
        };
        if moved || page.last_id < self.last {
            // The stream was deleted (and perhaps made anew) while we lagged
            // past its `end`: its ids are no longer the ones we counted.
            // Close with a retry; the reconnect is answered with a reset.
            self.ended = true;
            self.prelude
                .push_back(Out::Close(self.hub.config().retry_ms));
            return Ok(());
        }
        if self.last.next() < page.first_retained && self.last < page.last_id {
            // What we missed has left the store while we lagged.
            let at = EventId(page.first_retained.0 - 1);
            let missed = at.0 - self.last.0;
            metrics::counter!(m::SLOW_DROPS).increment(1);
            self.prelude
                .push_back(reset(&self.prefix, at, "lagged", Some(missed), None));
            self.last = at;
        }
        if page.records.len() < REPLAY_PAGE {
            self.caught_up = true;
        }
        self.backlog.extend(page.records);
        Ok(())
    }
}

/// The pause before a client comes back after a shutdown, with jitter so
/// that a restart does not bring every browser back in the same millisecond.
pub fn shutdown_retry(retry_ms: u64) -> u64 {
    use rand::Rng;
    rand::rng().random_range(retry_ms..=retry_ms.saturating_mul(4).max(retry_ms))
}

/// A subscriber's place under the limits (node and stream), taken before
/// anything else so that concurrent subscribers cannot overshoot a limit;
/// given back when dropped.
pub struct Place {
    hub: Hub,
    name: StreamName,
    channel: Arc<Channel>,
}

impl Place {
    /// Takes a place, or `None` when a limit is reached.
    fn take(hub: &Hub, name: &StreamName) -> Option<(Place, Seen)> {
        if !hub.take_place() {
            return None;
        }
        let channel = hub.channel(name);
        match channel.join(hub.config().max_subscribers_per_stream) {
            Some(seen) => Some((
                Place {
                    hub: hub.clone(),
                    name: name.clone(),
                    channel,
                },
                seen,
            )),
            None => {
                hub.release_place();
                hub.drop_channel_if_unused(name, &channel);
                None
            }
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if self.channel.leave() == 0 {
            self.channel.stop_following();
            self.hub.drop_channel_if_unused(&self.name, &self.channel);
        }
        self.hub.release_place();
    }
}
