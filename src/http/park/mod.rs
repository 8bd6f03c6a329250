//! Parked subscribers: rill's own delivery path for HTTP/1.1 event streams.
//!
//! Once an HTTP/1.1 subscriber's response head is written, its connection
//! leaves hyper: what remains is the socket, its place under the limits and
//! a few words of state ([`ParkedConn`]). No read buffer, no write buffer,
//! no task of its own. Subscribers of one stream that are at the same
//! position form a [`group`]: one writer task per stream follows the
//! stream's live ring with one [`Cursor`] and writes each batch of frames,
//! chunk-framed once, to every member's socket with one non-blocking
//! `write` each. So a delivery costs one syscall, not a task wake-up, a
//! buffer copy and a syscall.
//!
//! A subscriber that is not at the live edge is served by a task of its
//! own ([`drain`]) until it is: a new one while it sends its opening and
//! its replay, a slow one (a write that would block) while its kernel
//! buffer drains and it catches up from the ring or the store. Then it
//! joins its stream's group again. Several ready frames always go out in
//! one write.
//!
//! One task for all parked connections ([`watch`]) notices a client that
//! hangs up (its socket turns readable at EOF), at once rather than at the
//! next write: its place is given back (which a generation's no-listener
//! grace counts on) and its stream's writer drops it.
//!
//! Requests that are not event streams, HTTP/2 and TLS stay with hyper.

mod drain;
mod group;
mod uring;
mod watch;
pub mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::accept::FanoutWrites;
use super::listener::Connection;
use crate::hub::{Place, Subscription};
use crate::ids::StreamName;
use group::Group;

/// The parked subscribers of one server. Cheap to clone.
#[derive(Clone)]
pub struct Parking {
    inner: Arc<Inner>,
}

struct Inner {
    groups: Mutex<HashMap<StreamName, Arc<Group>>>,
    watcher: mpsc::UnboundedSender<Arc<ParkedConn>>,
    /// Parked connections open now.
    open: AtomicUsize,
    /// Woken when the last parked connection closes.
    all_closed: Notify,
    /// The `retry:` hint base, for the jittered one at shutdown.
    retry_ms: u64,
    /// How a group's writer writes a frame to its members.
    writes: FanoutWrites,
}

/// A parked connection: the socket, the subscriber's place, and when its
/// token expires.
pub(crate) struct ParkedConn {
    conn: Connection,
    gone: AtomicBool,
    place: Mutex<Option<Place>>,
    expires: Option<Instant>,
    group: Mutex<Weak<Group>>,
    inner: Arc<Inner>,
}

impl Parking {
    /// An empty parking, with its disconnect watcher running. `retry_ms` is
    /// the base of the jittered `retry:` sent at shutdown; `writes` says
    /// how a stream's writer writes to its members.
    pub fn new(retry_ms: u64, writes: FanoutWrites) -> Self {
        let (watcher, arrivals) = mpsc::unbounded_channel();
        tokio::spawn(watch::run(arrivals));
        Self {
            inner: Arc::new(Inner {
                groups: Mutex::new(HashMap::new()),
                watcher,
                open: AtomicUsize::new(0),
                all_closed: Notify::new(),
                retry_ms,
                writes,
            }),
        }
    }

    /// Takes over `conn`, whose response head (chunked) is written, to
    /// send `sub` on it until the stream ends, the client leaves or
    /// `expires` (its token's expiry) passes.
    pub fn park(&self, conn: Connection, sub: Subscription, expires: Option<Instant>) {
        let (cursor, place) = sub.into_parts();
        self.inner.open.fetch_add(1, Ordering::AcqRel);
        metrics::gauge!(crate::metrics::PARKED).increment(1.0);
        let parked = Arc::new(ParkedConn {
            conn,
            gone: AtomicBool::new(false),
            place: Mutex::new(Some(place)),
            expires,
            group: Mutex::new(Weak::new()),
            inner: self.inner.clone(),
        });
        // The watcher's end of the channel lives as long as the runtime.
        let _ = self.inner.watcher.send(parked.clone());
        tokio::spawn(drain::run(self.clone(), parked, cursor, None));
    }

    /// Parked connections open now.
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::Acquire)
    }

    /// Waits until no parked connection is open (at shutdown, after every
    /// stream was told to come back later).
    pub async fn closed(&self) {
        loop {
            let woken = self.inner.all_closed.notified();
            if self.open() == 0 {
                return;
            }
            woken.await;
        }
    }

    fn retry_ms(&self) -> u64 {
        self.inner.retry_ms
    }

    /// Whether large groups are written in io_uring batches (asked for,
    /// and io_uring has not turned out unavailable).
    fn batched_writes(&self) -> bool {
        self.inner.writes == FanoutWrites::Uring && uring::available()
    }
}

impl ParkedConn {
    fn tcp(&self) -> &tokio::net::TcpStream {
        self.conn.tcp()
    }

    fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// The client is gone, or its stream is over for it: gives its place
    /// back and tells its stream's writer, once.
    fn gone(&self) {
        if self.gone.swap(true, Ordering::AcqRel) {
            return;
        }
        drop(lock(&self.place).take());
        if let Some(group) = lock(&self.group).upgrade() {
            group.member_gone();
        }
    }

    /// Closes the connection without ending the response: the client sees
    /// the body cut off, reconnects and resumes from its last event id.
    fn abort(&self) {
        let _ = socket2::SockRef::from(self.tcp()).shutdown(std::net::Shutdown::Both);
        self.gone();
    }

    /// Ends the response: writes `tail` if the socket takes it now, the
    /// last chunk, and closes the connection (the watcher sees it close
    /// and lets go).
    fn finish(&self, tail: &[u8]) {
        let mut last = Vec::with_capacity(tail.len() + 16);
        last.extend_from_slice(&wire::chunk(tail));
        last.extend_from_slice(wire::LAST_CHUNK);
        let _ = self.tcp().try_write(&last);
        self.abort();
    }
}

impl Drop for ParkedConn {
    fn drop(&mut self) {
        metrics::gauge!(crate::metrics::PARKED).decrement(1.0);
        if self.inner.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.all_closed.notify_waiters();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
