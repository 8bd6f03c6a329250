//! The Redis store's live side: the connections of the node's live readers
//! and the blocking `XREAD` they wait in.
//!
//! Each reader has its own connection, because a blocked `XREAD` holds its
//! connection until it returns; ordinary commands share another. A reader's
//! Redis client id is kept so that another task can cut its block short
//! with `CLIENT UNBLOCK` (on the same server) when it has a new stream to
//! follow. On a Cluster there is one reader per partition, and its `XREAD`
//! goes to the master of the partition's slot.
//!
//! Readers also follow the stream of removals (reader 0 on one server; each
//! reader its partition's on a Cluster), so that a `DELETE` on one node ends
//! the subscribers of that stream on every node.
//!
//! An entry under another wire prefix than the one a stream is followed
//! with means the stream was fenced by a failover (or made anew): the
//! stream is reported broken, and its subscribers are told to come back.

use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::streams::{StreamRangeReply, StreamReadReply};

use super::connect::Conn;
use super::entry::{field, record, removal};
use super::{timed, RedisStore, COMMAND_TIMEOUT, FOLLOW_BATCH};
use crate::store::{Follow, Followed, Record, StoreError};

impl RedisStore {
    /// The slot a reader's commands go to (on a Cluster, its partition's).
    fn reader_home(&self, reader: usize) -> u16 {
        if self.layout.is_partitioned() {
            self.layout.slot(reader)
        } else {
            0
        }
    }

    async fn reader_conn(&self, reader: usize, wait: Duration) -> Result<Conn, StoreError> {
        let slot = self.reader_slot(reader)?;
        let mut slot = slot.lock().await;
        if let Some((c, made)) = slot.as_ref() {
            if *made == self.conns.generation() {
                return Ok(c.clone());
            }
        }
        let made = self.conns.generation();
        let mut c = self.conns.reader(wait).await?;
        let id: i64 = c
            .on_slot(
                &redis::cmd("CLIENT").arg("ID").clone(),
                self.reader_home(reader),
            )
            .await?;
        self.reader_ids[reader].store(id, Ordering::Relaxed);
        *slot = Some((c.clone(), made));
        Ok(c)
    }

    fn reader_slot(&self, reader: usize) -> Result<&ReaderSlot, StoreError> {
        self.readers
            .get(reader)
            .ok_or_else(|| StoreError::Unavailable(format!("no live reader {reader}")))
    }

    pub(super) async fn read_live(
        &self,
        reader: usize,
        from: &[Follow],
        wait: Duration,
    ) -> Result<Followed, StoreError> {
        let mut c = self.reader_conn(reader, wait).await?;
        // A reader that follows removals reads them from where it stood.
        let mut removals_seen = match self.removals_seen.get(reader) {
            Some(seen) => Some(seen.lock().await),
            None => None,
        };
        let removals = self.removals_key(reader);
        if let Some(seen) = removals_seen.as_mut() {
            if seen.is_none() {
                **seen = Some(self.removals_tail(&mut c, &removals).await?);
            }
        }
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(FOLLOW_BATCH)
            .arg("BLOCK")
            .arg(wait.as_millis().max(1) as u64)
            .arg("STREAMS");
        for f in from {
            cmd.arg(self.key(&f.name, "log"));
        }
        if removals_seen.is_some() {
            cmd.arg(&removals);
        }
        for f in from {
            cmd.arg(format!("0-{}", f.after.0));
        }
        if let Some(Some(seen)) = removals_seen.as_deref() {
            cmd.arg(seen);
        }
        let reply: Result<Option<StreamReadReply>, StoreError> =
            timed(wait + COMMAND_TIMEOUT, cmd.query_async(&mut c)).await;
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                // Start over on a fresh connection next time.
                if let Ok(slot) = self.reader_slot(reader) {
                    *slot.lock().await = None;
                }
                return Err(e);
            }
        };
        let mut out = Followed::default();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            if key.key == removals {
                if let (Some(seen), Some(last)) = (removals_seen.as_mut(), key.ids.last()) {
                    **seen = Some(last.id.clone());
                }
                out.removed.extend(key.ids.iter().filter_map(removal));
                continue;
            }
            let Some(i) = from
                .iter()
                .position(|f| self.key(&f.name, "log") == key.key)
            else {
                continue;
            };
            let prefix = from[i].prefix.as_deref().filter(|p| !p.is_empty());
            let mut records: Vec<Record> = Vec::new();
            for e in &key.ids {
                let own = field(e, "p").filter(|p| !p.is_empty());
                if let (Some(mine), Some(own)) = (prefix, own.as_deref()) {
                    if mine != own {
                        // Fenced by a failover, or made anew: the ids that
                        // follow are not the ones the subscribers count.
                        out.broken.push(i);
                        break;
                    }
                }
                records.extend(record(e, prefix));
            }
            if !records.is_empty() {
                out.records.push((i, records));
            }
        }
        Ok(out)
    }

    /// The id of the newest removal, where following the removals starts.
    async fn removals_tail(&self, c: &mut Conn, removals: &str) -> Result<String, StoreError> {
        let newest: StreamRangeReply = timed(
            COMMAND_TIMEOUT,
            redis::cmd("XREVRANGE")
                .arg(removals)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query_async(c),
        )
        .await?;
        Ok(newest
            .ids
            .first()
            .map_or_else(|| "0-0".to_owned(), |e| e.id.clone()))
    }

    pub(super) async fn unblock(&self, reader: usize) {
        let Some(id) = self
            .reader_ids
            .get(reader)
            .map(|a| a.load(Ordering::Relaxed))
        else {
            return;
        };
        if id == 0 {
            return;
        }
        if let Ok(mut c) = self.conn().await {
            let _: Result<i64, _> = c
                .on_slot(
                    redis::cmd("CLIENT").arg("UNBLOCK").arg(id),
                    self.reader_home(reader),
                )
                .await;
        }
    }
}

/// A live reader's connection and the connector generation it was made in.
pub(super) type ReaderSlot = tokio::sync::Mutex<Option<(Conn, u64)>>;
