//! The Redis store's live side: the connections of the node's live readers
//! and the blocking `XREAD` they wait in.
//!
//! Each reader has its own connection, because a blocked `XREAD` holds its
//! connection until it returns; ordinary commands share the connection
//! manager. A reader's Redis client id is kept so that another task can cut
//! its block short with `CLIENT UNBLOCK` when it has a new stream to follow.

use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use redis::AsyncConnectionConfig;

use super::{record, timed, RedisStore, COMMAND_TIMEOUT, FOLLOW_BATCH};
use crate::store::{Follow, Record, StoreError};

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
    ) -> Result<Vec<(usize, Vec<Record>)>, StoreError> {
        let mut c = self.reader_conn(reader, wait).await?;
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(FOLLOW_BATCH)
            .arg("BLOCK")
            .arg(wait.as_millis().max(1) as u64)
            .arg("STREAMS");
        for f in from {
            cmd.arg(self.key(&f.name, "log"));
        }
        for f in from {
            cmd.arg(format!("0-{}", f.after.0));
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
        let mut out = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            let Some(i) = from
                .iter()
                .position(|f| self.key(&f.name, "log") == key.key)
            else {
                continue;
            };
            let prefix = from[i].prefix.as_deref();
            let records: Vec<Record> = key.ids.iter().filter_map(|e| record(e, prefix)).collect();
            out.push((i, records));
        }
        Ok(out)
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
