//! The Redis store's live side: the connections of the node's live readers
//! and the blocking `XREAD` they wait in.
//!
//! Each reader has its own connection, because a blocked `XREAD` holds its
//! connection until it returns; ordinary commands share the connection
//! manager. A reader's Redis client id is kept so that another task can cut
//! its block short with `CLIENT UNBLOCK` when it has a new stream to follow.
//!
//! Reader 0 also follows `Premoved`, the stream of removals, so that a
//! `DELETE` on one node ends the subscribers of that stream on every node.

use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamRangeReply, StreamReadReply};
use redis::AsyncConnectionConfig;

use super::entry::{record, removal};
use super::{timed, RedisStore, COMMAND_TIMEOUT, FOLLOW_BATCH};
use crate::store::{Follow, Followed, Record, StoreError};

impl RedisStore {
    async fn reader_conn(
        &self,
        reader: usize,
        wait: Duration,
    ) -> Result<MultiplexedConnection, StoreError> {
        let slot = self.reader_slot(reader)?;
        let mut slot = slot.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Duration::from_secs(1))
            .set_response_timeout(wait + COMMAND_TIMEOUT);
        let mut c = timed(
            COMMAND_TIMEOUT,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await?;
        let id: i64 = timed(
            COMMAND_TIMEOUT,
            redis::cmd("CLIENT").arg("ID").query_async(&mut c),
        )
        .await?;
        self.reader_ids[reader].store(id, Ordering::Relaxed);
        *slot = Some(c.clone());
        Ok(c)
    }

    fn reader_slot(
        &self,
        reader: usize,
    ) -> Result<&tokio::sync::Mutex<Option<MultiplexedConnection>>, StoreError> {
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
        // Reader 0 also follows the removals stream, from where it stood.
        let mut removals_seen = match reader {
            0 => Some(self.removals_seen.lock().await),
            _ => None,
        };
        if let Some(seen) = removals_seen.as_mut() {
            if seen.is_none() {
                **seen = Some(self.removals_tail(&mut c).await?);
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
        let removals = self.removals_key();
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
            let prefix = from[i].prefix.as_deref();
            let records: Vec<Record> = key.ids.iter().filter_map(|e| record(e, prefix)).collect();
            out.records.push((i, records));
        }
        Ok(out)
    }

    /// The id of the newest removal, where following the removals starts.
    async fn removals_tail(&self, c: &mut MultiplexedConnection) -> Result<String, StoreError> {
        let newest: StreamRangeReply = timed(
            COMMAND_TIMEOUT,
            redis::cmd("XREVRANGE")
                .arg(self.removals_key())
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
            let _: Result<i64, _> = timed(
                COMMAND_TIMEOUT,
                redis::cmd("CLIENT")
                    .arg("UNBLOCK")
                    .arg(id)
                    .query_async(&mut c),
            )
            .await;
        }
    }
}
