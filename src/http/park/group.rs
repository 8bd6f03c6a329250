//! A stream's parked subscribers at the live edge, and the one writer task
//! that serves them all.
//!
//! The writer follows the stream with one [`Cursor`]. For each piece it
//! gets (a batch of events, a keep-alive, a reset, "come back later") it
//! frames the bytes once and writes them to every member with one
//! non-blocking `write`. A member whose write would block (or takes only
//! part of the bytes) leaves the group with what is left to write, for a
//! drain task of its own ([`super::drain`]); it comes back when it is at
//! the live edge again.
//!
//! Joining is exact: a subscriber joins only when its position equals the
//! writer's, which the writer moves forward under the same lock as it
//! takes the members for a write. So no member misses a batch or gets one
//! twice. The writer stops when its last member is gone; the next
//! subscriber at the live edge starts another.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{drain, lock, uring, wire, ParkedConn, Parking};
use crate::http::sse::encode_out;
use crate::hub::{shutdown_retry, Cursor, Out};
use crate::ids::{EventId, StreamName};
use crate::sse::encode_retry;

/// One stream's group: its members and where its writer stands.
pub(super) struct Group {
    name: StreamName,
    state: Mutex<State>,
    /// A member is gone: the writer drops those that are.
    gone: Notify,
    /// The writer moved on (a subscriber ahead of it waits for this).
    progress: Notify,
}

struct State {
    members: Vec<Arc<ParkedConn>>,
    /// The last event id written to every member.
    at: EventId,
    /// Whether a writer task runs.
    running: bool,
    /// The earliest token expiry among the members.
    next_expiry: Option<Instant>,
}

/// What a subscriber at the live edge finds when it tries to join.
pub(super) enum Join {
    /// It is a member now.
    Joined,
    /// The writer is ahead: there is more to send before it can join.
    Behind,
    /// The writer has not reached it yet: wait for its progress.
    Ahead(Arc<Group>),
}

impl Group {
    pub(super) fn member_gone(&self) {
        self.gone.notify_one();
    }

    /// Waits until the writer has moved on.
    pub(super) async fn progressed(&self) {
        self.progress.notified().await;
    }
}

impl Parking {
    /// Adds `conn`, whose subscription `cursor` is at the live edge, to its
    /// stream's group, starting the group's writer if none runs.
    pub(super) fn join(&self, conn: &Arc<ParkedConn>, cursor: &Cursor) -> Join {
        let mut groups = lock(&self.inner.groups);
        let group = groups
            .entry(cursor.stream().clone())
            .or_insert_with(|| {
                Arc::new(Group {
                    name: cursor.stream().clone(),
                    state: Mutex::new(State {
                        members: Vec::new(),
                        at: cursor.last(),
                        running: false,
                        next_expiry: None,
                    }),
                    gone: Notify::new(),
                    progress: Notify::new(),
                })
            })
            .clone();
        let mut state = lock(&group.state);
        if !state.running {
            state.running = true;
            state.at = cursor.last();
            tokio::spawn(write(self.clone(), group.clone(), cursor.at(cursor.last())));
        } else if state.at > cursor.last() {
            return Join::Behind;
        } else if state.at < cursor.last() {
            drop(state);
            return Join::Ahead(group);
        }
        state.members.push(conn.clone());
        if let Some(t) = conn.expires {
            state.next_expiry = Some(state.next_expiry.map_or(t, |e| e.min(t)));
        }
        *lock(&conn.group) = Arc::downgrade(&group);
        Join::Joined
    }

    /// Stops `group`'s writer if it has no member left; true when stopped.
    fn stop_if_empty(&self, group: &Arc<Group>) -> bool {
        let mut groups = lock(&self.inner.groups);
        let mut state = lock(&group.state);
        if !state.members.is_empty() {
            return false;
        }
        state.running = false;
        if groups
            .get(&group.name)
            .is_some_and(|g| Arc::ptr_eq(g, group))
        {
            groups.remove(&group.name);
        }
        true
    }
}

/// The writer of `group`: see the module docs.
async fn write(parking: Parking, group: Arc<Group>, mut cursor: Cursor) {
    loop {
        let expiry = lock(&group.state).next_expiry;
        let out = tokio::select! {
            out = cursor.next() => out,
            _ = group.gone.notified() => {
                lock(&group.state).members.retain(|m| !m.is_gone());
                if parking.stop_if_empty(&group) {
                    return;
                }
                continue;
            }
            _ = sleep_until(expiry) => {
                expire(&group);
                if parking.stop_if_empty(&group) {
                    return;
                }
                continue;
            }
        };
        let Some(out) = out else {
            // The stream is over (its end was written to every member).
            let members = std::mem::take(&mut lock(&group.state).members);
            for m in members {
                m.finish(b"");
            }
            if parking.stop_if_empty(&group) {
                return;
            }
            continue;
        };
        let members = {
            let mut state = lock(&group.state);
            state.at = cursor.last();
            std::mem::take(&mut state.members)
        };
        let (kept, kept_expiry) = send(&parking, &cursor, out, members);
        {
            let mut state = lock(&group.state);
            let joined = std::mem::replace(&mut state.members, kept);
            // Only the few who joined meanwhile are looked at again: the
            // send loop has the others' expiry already.
            let joined_expiry = joined.iter().filter_map(|m| m.expires).min();
            state.members.extend(joined);
            state.next_expiry = [kept_expiry, joined_expiry].into_iter().flatten().min();
        }
        group.progress.notify_waiters();
        if parking.stop_if_empty(&group) {
            return;
        }
    }
}

/// Writes `out` to `members`; returns those still at the writer's
/// position, and the earliest token expiry among them.
///
/// Each write is a plain non-blocking `send` on the socket (`socket2`),
/// not tokio's `try_write`: that one also reads and updates the socket's
/// readiness in the I/O driver, one more object per member to bring into
/// the cache, 10,000 times per event in the fan-out benchmark (see
/// bench/RESULTS.md, fan-out). With `--fanout-writes uring`, a large
/// group's sends go to the kernel in io_uring batches instead
/// ([`uring`]): the same writes, without one system call each. A write
/// that would block hands the member to a drain task, whose first wait for
/// writability finds out for itself.
fn send(
    parking: &Parking,
    cursor: &Cursor,
    out: Out,
    members: Vec<Arc<ParkedConn>>,
) -> (Vec<Arc<ParkedConn>>, Option<Instant>) {
    if let Out::Close(_) = out {
        // Come back later, each after its own jittered pause.
        for m in members {
            m.finish(&encode_retry(shutdown_retry(parking.retry_ms())));
        }
        return (Vec::new(), None);
    }
    let count = match &out {
        Out::Events { count, .. } => *count,
        _ => 0,
    };
    let frame = wire::chunk(&encode_out(out));
    let mut tally = Tally {
        parking,
        cursor,
        frame: &frame,
        kept: Vec::with_capacity(members.len()),
        expiry: None,
        written: 0,
    };
    let members: Vec<_> = members.into_iter().filter(|m| !m.is_gone()).collect();
    if parking.batched_writes() && members.len() >= uring::MIN_BATCH {
        let mut slots: Vec<Option<Arc<ParkedConn>>> = members.into_iter().map(Some).collect();
        let fds: Vec<_> = slots
            .iter()
            .flatten()
            .map(|m| m.tcp().as_raw_fd())
            .collect();
        let sent = uring::send_each(&fds, &frame, |i, result| {
            if let Some(m) = slots.get_mut(i).and_then(Option::take) {
                tally.record(m, result);
            }
        });
        let left = slots.into_iter().flatten();
        match sent {
            Ok(()) => {}
            Err(uring::Refused::Unavailable) => left.for_each(|m| tally.send(m)),
            // Whether these got the frame, or part of it, is unknown:
            // they are closed, and resume from their last event id.
            Err(uring::Refused::Broken) => left.for_each(|m| m.abort()),
        }
    } else {
        members.into_iter().for_each(|m| tally.send(m));
    }
    cursor.count(count * tally.written);
    (tally.kept, tally.expiry)
}

/// The outcome of one frame's writes to a group.
struct Tally<'a> {
    parking: &'a Parking,
    cursor: &'a Cursor,
    frame: &'a Bytes,
    /// Members that took the whole frame.
    kept: Vec<Arc<ParkedConn>>,
    /// The earliest token expiry among `kept`.
    expiry: Option<Instant>,
    /// Members the frame went to (whole, or partly for a drain to finish).
    written: u64,
}

impl Tally<'_> {
    /// Writes the frame to `m` with one `send`.
    fn send(&mut self, m: Arc<ParkedConn>) {
        let result = socket2::SockRef::from(m.tcp()).send(self.frame);
        self.record(m, result);
    }

    /// Files `m` by what its write did.
    fn record(&mut self, m: Arc<ParkedConn>, result: std::io::Result<usize>) {
        match result {
            Ok(n) if n == self.frame.len() => {
                self.written += 1;
                self.expiry = [self.expiry, m.expires].into_iter().flatten().min();
                self.kept.push(m);
            }
            Ok(n) => {
                self.written += 1;
                slow(self.parking, m, self.cursor, self.frame.slice(n..));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.written += 1;
                slow(self.parking, m, self.cursor, self.frame.clone());
            }
            Err(_) => m.gone(),
        }
    }
}

/// Hands a member whose socket is full to a drain task of its own, with
/// `pending` still to write.
fn slow(parking: &Parking, member: Arc<ParkedConn>, cursor: &Cursor, pending: Bytes) {
    *lock(&member.group) = std::sync::Weak::new();
    let at = cursor.at(cursor.last());
    tokio::spawn(drain::run(parking.clone(), member, at, Some(pending)));
}

/// Ends the streams of members whose token has expired: a comment saying
/// why and a `retry:`, so the client comes back with a fresh token.
fn expire(group: &Group) {
    let now = Instant::now();
    let mut state = lock(&group.state);
    let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut state.members)
        .into_iter()
        .partition(|m| m.expires.is_some_and(|t| t <= now));
    state.members = kept;
    state.next_expiry = state.members.iter().filter_map(|m| m.expires).min();
    drop(state);
    for m in gone {
        m.finish(&expired_tail(m.inner.retry_ms));
    }
}

/// What a stream whose token expired ends with.
pub(super) fn expired_tail(retry_ms: u64) -> Vec<u8> {
    let mut tail = b": token expired\n".to_vec();
    tail.extend_from_slice(&encode_retry(retry_ms));
    tail
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
