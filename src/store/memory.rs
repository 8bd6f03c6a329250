//! The embedded store: every stream is a ring of encoded events in memory.
//!
//! Streams sit in a map behind a read-write lock; each stream has its own
//! mutex, so publishers to different streams do not wait on each other.
//! Retention is enforced on every append (count, bytes) and by the hub's
//! periodic sweep (age), so memory stays bounded by the configured limits.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use async_trait::async_trait;

use super::{Draft, Record, Replay, Retention, Store, StoreError, StreamInfo};
use crate::ids::{wire_id, EventId, StreamName};

/// The in-memory [`Store`].
#[derive(Debug)]
pub struct MemoryStore {
    streams: RwLock<HashMap<StreamName, Arc<Mutex<Log>>>>,
    retention: Retention,
    max_streams: usize,
}

#[derive(Debug)]
struct Log {
    prefix: Option<String>,
    last: EventId,
    events: VecDeque<(Record, Instant)>,
    bytes: usize,
    finished: bool,
    touched: Instant,
}

impl Log {
    fn new(prefix: Option<String>) -> Self {
        Self {
            prefix,
            last: EventId::START,
            events: VecDeque::new(),
            bytes: 0,
            finished: false,
            touched: Instant::now(),
        }
    }

    fn first_retained(&self) -> EventId {
        self.events.front().map_or(self.last.next(), |(r, _)| r.id)
    }

    fn evict(&mut self, r: &Retention, now: Instant) {
        while let Some((front, at)) = self.events.front() {
            let over = self.events.len() > r.max_events
                || self.bytes > r.max_bytes
                || now.duration_since(*at) > r.max_age;
            if !over {
                break;
            }
            self.bytes -= front.frame.len();
            self.events.pop_front();
        }
    }
}

fn lock(log: &Mutex<Log>) -> std::sync::MutexGuard<'_, Log> {
    // A panic while holding a log's lock would be a bug in this file; the
    // log itself is still consistent, so keep serving it.
    log.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryStore {
    /// An empty store with the given retention and limit on streams.
    pub fn new(retention: Retention, max_streams: usize) -> Self {
        Self {
            streams: RwLock::new(HashMap::new()),
            retention,
            max_streams,
        }
    }

    fn get(&self, name: &StreamName) -> Option<Arc<Mutex<Log>>> {
        let map = self.streams.read().unwrap_or_else(|e| e.into_inner());
        map.get(name).cloned()
    }

    fn get_or_create(
        &self,
        name: &StreamName,
        prefix: Option<String>,
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
        let log = Arc::new(Mutex::new(Log::new(prefix)));
        map.insert(name.clone(), log.clone());
        Ok(log)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create(&self, name: &StreamName, prefix: Option<String>) -> Result<(), StoreError> {
        self.get_or_create(name, prefix, true).map(drop)
    }

    async fn append(&self, name: &StreamName, draft: &Draft) -> Result<Record, StoreError> {
        let log = self.get_or_create(name, None, false)?;
        let mut log = lock(&log);
        if log.finished {
            return Err(StoreError::Finished(name.clone()));
        }
        let id = log.last.next();
        let record = Record {
            id,
            frame: draft.encode(log.prefix.as_deref(), id),
            terminal: draft.terminal,
        };
        let now = Instant::now();
        log.last = id;
        log.finished = draft.terminal;
        log.touched = now;
        log.bytes += record.frame.len();
        log.events.push_back((record.clone(), now));
        log.evict(&self.retention, now);
        Ok(record)
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
        log.evict(&self.retention, Instant::now());
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
            prefix: log.prefix.clone(),
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
                    last_id: wire_id(log.prefix.as_deref(), log.last),
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
        let mut map = self.streams.write().unwrap_or_else(|e| e.into_inner());
        Ok(map.remove(name).map(|log| lock(&log).last))
    }

    async fn sweep(&self) {
        self.sweep_watched(&HashSet::new()).await
    }

    async fn sweep_watched(&self, watched: &HashSet<StreamName>) {
        let now = Instant::now();
        let mut map = self.streams.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|name, log| {
            let mut log = lock(log);
            log.evict(&self.retention, now);
            let idle =
                log.events.is_empty() && now.duration_since(log.touched) > self.retention.max_age;
            !idle || watched.contains(name)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn store(max_events: usize) -> MemoryStore {
        MemoryStore::new(
            Retention {
                max_events,
                max_bytes: usize::MAX,
                max_age: Duration::from_secs(3600),
            },
            10,
        )
    }

    fn name(s: &str) -> StreamName {
        StreamName::new(s).unwrap()
    }

    #[tokio::test]
    async fn ids_grow_and_replay_is_the_suffix() {
        let s = store(100);
        let n = name("a");
        for i in 1..=10u64 {
            let r = s.append(&n, &Draft::message(i.to_string())).await.unwrap();
            assert_eq!(r.id, EventId(i));
        }
        for after in 0..=10u64 {
            let got = s.read_after(&n, EventId(after), 100).await.unwrap();
            let ids: Vec<u64> = got.records.iter().map(|r| r.id.0).collect();
            assert_eq!(ids, ((after + 1)..=10).collect::<Vec<_>>());
        }
    }

    #[tokio::test]
    async fn retention_by_count_moves_first_retained() {
        let s = store(3);
        let n = name("a");
        for i in 0..10 {
            s.append(&n, &Draft::message(i.to_string())).await.unwrap();
        }
        let got = s.read_after(&n, EventId(0), 100).await.unwrap();
        assert_eq!(got.first_retained, EventId(8));
        assert_eq!(got.records.len(), 3);
        assert_eq!(got.last_id, EventId(10));
    }

    #[tokio::test]
    async fn finished_streams_refuse_appends_and_limits_hold() {
        let s = store(10);
        let n = name("a");
        let mut done = Draft::message("{}");
        done.terminal = true;
        s.append(&n, &done).await.unwrap();
        assert!(matches!(
            s.append(&n, &Draft::message("x")).await,
            Err(StoreError::Finished(_))
        ));
        for i in 0..9 {
            s.append(&name(&format!("s{i}")), &Draft::message("x"))
                .await
                .unwrap();
        }
        assert!(matches!(
            s.append(&name("one-too-many"), &Draft::message("x")).await,
            Err(StoreError::TooManyStreams(10))
        ));
    }
}
