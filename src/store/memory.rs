//! The embedded store: every stream is a ring of encoded events in memory.
//!
//! Streams sit in a map behind a read-write lock; each stream has its own
//! mutex, so publishers to different streams do not wait on each other.
//! Retention is enforced on every append (count, bytes) and by the hub's
//! periodic sweep (age). Memory is bounded by settings, not by what clients
//! send: every stream by its retention, and the node by one byte budget
//! (`--max-store-bytes`) over all streams' events and idempotency keys. A
//! publish past the budget is refused; nothing acknowledged is dropped
//! early to make room.

mod keys;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{
    new_epoch, Appended, Claim, Draft, IdempotencyKey, Log as LogTrait, Record, Replay, Retention,
    StoreError, StreamInfo, StreamSpec,
};
use crate::ids::{wire_id, EventId, StreamName};
use keys::{Claims, Keys};

/// The in-memory store.
#[derive(Debug)]
pub struct MemoryStore {
    streams: RwLock<HashMap<StreamName, Arc<Mutex<Log>>>>,
    retention: Retention,
    max_streams: usize,
    /// Most bytes of events and keys held, all streams.
    budget: usize,
    used: AtomicUsize,
    claims: Mutex<Claims>,
    attrs: Mutex<HashMap<StreamName, String>>,
}

#[derive(Debug)]
struct Log {
    prefix: String,
    owner: Option<String>,
    last: EventId,
    events: VecDeque<(Record, Instant)>,
    bytes: usize,
    finished: bool,
    touched: Instant,
    keys: Keys,
}

impl Log {
    fn new(spec: StreamSpec) -> Self {
        Self {
            prefix: spec.prefix,
            owner: spec.owner,
            last: EventId::START,
            events: VecDeque::new(),
            bytes: 0,
            finished: false,
            touched: Instant::now(),
            keys: Keys::default(),
        }
    }

    fn first_retained(&self) -> EventId {
        self.events.front().map_or(self.last.next(), |(r, _)| r.id)
    }

    /// Drops events past retention; returns the bytes freed.
    fn evict(&mut self, r: &Retention, now: Instant) -> usize {
        let mut freed = 0;
        while let Some((front, at)) = self.events.front() {
            let over = self.events.len() > r.max_events
                || self.bytes > r.max_bytes
                || now.duration_since(*at) > r.max_age;
            if !over {
                break;
            }
            freed += front.frame.len();
            self.bytes -= front.frame.len();
            self.events.pop_front();
        }
        freed + self.keys.expire(r, now)
    }

    /// Bytes that appending an event of `len` bytes would evict by count
    /// and size.
    fn would_free(&self, len: usize, r: &Retention) -> usize {
        let (mut count, mut bytes, mut freed) = (self.events.len() + 1, self.bytes + len, 0);
        for (rec, _) in &self.events {
            if count <= r.max_events && bytes <= r.max_bytes {
                break;
            }
            count -= 1;
            bytes -= rec.frame.len();
            freed += rec.frame.len();
        }
        freed
    }

    fn held(&self) -> usize {
        self.bytes + self.keys.bytes()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a lock would be a bug in this file; the data
    // itself is still consistent, so keep serving it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryStore {
    /// An empty store with the given retention, limit on streams and byte
    /// budget.
    pub fn new(retention: Retention, max_streams: usize, budget: usize) -> Self {
        Self {
            streams: RwLock::new(HashMap::new()),
            retention,
            max_streams,
            budget,
            used: AtomicUsize::new(0),
            claims: Mutex::new(Claims::default()),
            attrs: Mutex::new(HashMap::new()),
        }
    }

    /// Bytes of events and keys held now.
    pub fn used_bytes(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn get(&self, name: &StreamName) -> Option<Arc<Mutex<Log>>> {
        let map = self.streams.read().unwrap_or_else(|e| e.into_inner());
        map.get(name).cloned()
    }

    fn get_or_create(
        &self,
        name: &StreamName,
        spec: impl FnOnce() -> StreamSpec,
        must_be_new: bool,
    ) -> Result<Arc<Mutex<Log>>, StoreError> {
        if !must_be_new {
            if let Some(log) = self.get(name) {
                return Ok(log);
            }
        }
        let mut map = self.streams.write().unwrap_or_else(|e| e.into_inner());
        if let Some(log) = map.get(name) {
            if must_be_new {
                return Err(StoreError::Exists(name.clone()));
            }
            return Ok(log.clone());
        }
        if map.len() >= self.max_streams {
            return Err(StoreError::TooManyStreams(self.max_streams));
        }
        let log = Arc::new(Mutex::new(Log::new(spec())));
        map.insert(name.clone(), log.clone());
        Ok(log)
    }

    fn release(&self, bytes: usize) {
        if bytes > 0 {
            self.used.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// Takes `bytes` of the budget after `freed` bytes leave, or says the
    /// budget is spent.
    fn reserve(&self, bytes: usize, freed: usize) -> Result<(), StoreError> {
        let full = StoreError::Full {
            budget: self.budget,
        };
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                let after = used.saturating_sub(freed) + bytes;
                (after <= self.budget).then_some(used + bytes)
            })
            .map(drop)
            .map_err(|_| full)
    }
}

#[async_trait]
impl LogTrait for MemoryStore {
    async fn create(&self, name: &StreamName, spec: StreamSpec) -> Result<(), StoreError> {
        self.get_or_create(name, || spec, true).map(drop)
    }

    async fn append(
        &self,
        name: &StreamName,
        draft: &Draft,
        key: Option<&IdempotencyKey>,
    ) -> Result<Appended, StoreError> {
        // Refuse before a new stream is made for a publish that cannot fit.
        if self.used_bytes() + draft.data.len() > self.budget && self.get(name).is_none() {
            return Err(StoreError::Full {
                budget: self.budget,
            });
        }
        let spec = || StreamSpec {
            prefix: new_epoch(),
            owner: None,
        };
        let log = self.get_or_create(name, spec, false)?;
        let mut log = lock(&log);
        let now = Instant::now();
        if let Some(key) = key {
            if let Some(id) = log.keys.seen(key)? {
                return Ok(Appended {
                    id,
                    prefix: Some(log.prefix.clone()),
                    record: None,
                });
            }
        }
        if log.finished {
            return Err(StoreError::Finished(name.clone()));
        }
        let id = log.last.next();
        let frame = draft.encode(Some(&log.prefix), id);
        let key_bytes = key.map_or(0, Keys::cost);
        self.reserve(
            frame.len() + key_bytes,
            log.would_free(frame.len(), &self.retention.for_stream(name)),
        )?;
        let record = Record {
            id,
            frame,
            terminal: draft.terminal,
        };
        log.last = id;
        log.finished = draft.terminal;
        log.touched = now;
        log.bytes += record.frame.len();
        log.events.push_back((record.clone(), now));
        if let Some(key) = key {
            log.keys.remember(key, id, now);
        }
        let freed = log.evict(&self.retention.for_stream(name), now);
        self.release(freed);
        Ok(Appended {
            id,
            prefix: Some(log.prefix.clone()),
            record: Some(record),
        })
    }

    async fn read_after(
        &self,
        name: &StreamName,
        after: EventId,
        limit: usize,
    ) -> Result<Replay, StoreError> {
        let Some(log) = self.get(name) else {
            return Ok(Replay {
                first_retained: EventId(1),
                ..Replay::default()
            });
        };
        let mut log = lock(&log);
        let freed = log.evict(&self.retention.for_stream(name), Instant::now());
        self.release(freed);
        let first = log.first_retained();
        // Ids in the ring are consecutive, so the start is found by arithmetic.
        let skip = after.0.saturating_sub(first.0.saturating_sub(1)) as usize;
        let records = log
            .events
            .iter()
            .skip(skip)
            .take(limit)
            .map(|(r, _)| r.clone())
            .collect();
        Ok(Replay {
            records,
            first_retained: first,
            last_id: log.last,
            finished: log.finished,
            prefix: Some(log.prefix.clone()),
            owner: log.owner.clone(),
            fenced_from: None,
        })
    }

    async fn list(&self) -> Result<Vec<StreamInfo>, StoreError> {
        let map = self.streams.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<StreamInfo> = map
            .iter()
            .map(|(name, log)| {
                let log = lock(log);
                StreamInfo {
                    name: name.to_string(),
                    last_id: wire_id(Some(&log.prefix), log.last),
                    retained_events: log.events.len(),
                    retained_bytes: log.bytes,
                    finished: log.finished,
                    subscribers: 0,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn remove(&self, name: &StreamName) -> Result<Option<EventId>, StoreError> {
        let removed = {
            let mut map = self.streams.write().unwrap_or_else(|e| e.into_inner());
            map.remove(name)
        };
        lock(&self.attrs).remove(name);
        Ok(removed.map(|log| {
            let log = lock(&log);
            self.release(log.held());
            log.last
        }))
    }

    async fn sweep(&self, watched: &HashSet<StreamName>) {
        let now = Instant::now();
        let mut freed = 0;
        let mut dropped = Vec::new();
        {
            let mut map = self.streams.write().unwrap_or_else(|e| e.into_inner());
            map.retain(|name, log| {
                let mut log = lock(log);
                freed += log.evict(&self.retention.for_stream(name), now);
                let idle = log.events.is_empty()
                    && now.duration_since(log.touched) > self.retention.max_age;
                if idle && !watched.contains(name) {
                    freed += log.held();
                    dropped.push(name.clone());
                    return false;
                }
                true
            });
        }
        let mut attrs = lock(&self.attrs);
        for name in &dropped {
            attrs.remove(name);
        }
        drop(attrs);
        self.release(freed);
        lock(&self.claims).expire(now);
    }

    async fn healthy(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn claim(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        value: &str,
        ttl: Duration,
    ) -> Result<Claim, StoreError> {
        let mut claims = lock(&self.claims);
        claims.claim(scope, key, value, Instant::now() + ttl, self.max_streams)
    }

    async fn attrs(&self, name: &StreamName) -> Result<Option<String>, StoreError> {
        Ok(lock(&self.attrs).get(name).cloned())
    }

    async fn set_attrs(&self, name: &StreamName, attrs: Option<&str>) -> Result<(), StoreError> {
        let mut map = lock(&self.attrs);
        Self::put_attrs(&mut map, name, attrs, self.max_streams)
    }

    async fn swap_attrs(
        &self,
        name: &StreamName,
        expected: Option<&str>,
        attrs: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut map = lock(&self.attrs);
        if map.get(name).map(String::as_str) != expected {
            return Ok(false);
        }
        Self::put_attrs(&mut map, name, attrs, self.max_streams).map(|()| true)
    }
}

impl MemoryStore {
    fn put_attrs(
        map: &mut HashMap<StreamName, String>,
        name: &StreamName,
        attrs: Option<&str>,
        max_streams: usize,
    ) -> Result<(), StoreError> {
        match attrs {
            Some(a) => {
                if !map.contains_key(name) && map.len() >= max_streams {
                    return Err(StoreError::TooManyStreams(max_streams));
                }
                map.insert(name.clone(), a.to_owned());
            }
            None => {
                map.remove(name);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
