//! What spans every partition of a Cluster layout: the limit on streams
//! and the list of streams.
//!
//! Each partition keeps its own name index (one hash slot each), so the
//! total is their sum. A new stream on a Cluster is admitted after the node
//! counts every partition; two nodes making new streams at the same moment
//! can both be admitted, so `--max-streams` may be passed by as many
//! streams as are made at once. On one server the append script counts
//! the one index itself, exactly.

use super::{timed, RedisStore, COMMAND_TIMEOUT};
use crate::ids::{wire_id, EventId, StreamName};
use crate::store::{StoreError, StreamInfo};

impl RedisStore {
    /// Counts the streams of every partition; fails with
    /// [`StoreError::TooManyStreams`] when there is no room for one more.
    pub(super) async fn admit(&self) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let mut total = 0usize;
        for p in 0..self.layout.partitions() {
            let mut call = self.scripts.count.prepare_invoke();
            call.key(self.layout.shared(p, "index"));
            let n: usize = timed(COMMAND_TIMEOUT, call.invoke_async(&mut c)).await?;
            total += n;
            if total >= self.max_streams {
                return Err(StoreError::TooManyStreams(self.max_streams));
            }
        }
        Ok(())
    }

    /// The streams of partition `p` that have not expired, unsorted.
    pub(super) async fn list_partition(&self, p: usize) -> Result<Vec<StreamInfo>, StoreError> {
        let mut c = self.conn().await?;
        let mut call = self.scripts.list.prepare_invoke();
        call.key(self.layout.shared(p, "index"));
        let names: Vec<String> = timed(COMMAND_TIMEOUT, call.invoke_async(&mut c)).await?;
        let names: Vec<StreamName> = names
            .into_iter()
            .filter_map(|n| StreamName::new(n).ok())
            .collect();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        // Every stream of a partition shares its slot: one pipeline.
        let mut pipe = redis::pipe();
        for n in &names {
            pipe.cmd("HMGET")
                .arg(self.key(n, "meta"))
                .arg(&["last", "fin", "prefix", "bytes"])
                .cmd("XLEN")
                .arg(self.key(n, "log"));
        }
        type Row = (
            (Option<u64>, Option<String>, Option<String>, Option<u64>),
            usize,
        );
        let rows: Vec<Row> = timed(COMMAND_TIMEOUT, pipe.query_async(&mut c)).await?;
        let mut out = Vec::new();
        for (name, ((last, fin, prefix, bytes), len)) in names.into_iter().zip(rows) {
            let Some(last) = last else {
                continue;
            };
            let prefix = prefix.filter(|p| !p.is_empty());
            out.push(StreamInfo {
                last_id: wire_id(prefix.as_deref(), EventId(last)),
                name: name.to_string(),
                retained_events: len,
                retained_bytes: bytes.unwrap_or(0) as usize,
                finished: fin.as_deref() == Some("1"),
                subscribers: 0,
            });
        }
        Ok(out)
    }
}
