//! The Redis store's part in generations across nodes: the owner's lease,
//! cancel requests and listener marks from other nodes, and ending the
//! streams of lost owners.
//!
//! All three are scripts (see `scripts.rs`), so a lease check and the append
//! of the terminal event are one atomic step: however many nodes sweep at
//! once, a lost generation gets exactly one `event: failed`.

use std::time::Duration;

use super::{timed, Conn, RedisStore, COMMAND_TIMEOUT};
use crate::ids::StreamName;
use crate::store::{Draft, Lease, StoreError};

impl RedisStore {
    pub(super) async fn renew(
        &self,
        name: &StreamName,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let mut c = self.conn().await?;
        let mut call = self.scripts.renew.prepare_invoke();
        call.key(self.key(name, "lease"))
            .key(self.key(name, "cancel"))
            .key(self.generations_key(name))
            .key(self.key(name, "watched"))
            .arg(name.as_str())
            .arg(ttl.as_millis().max(1) as u64);
        let (cancel, watched, unheard_ms): (i64, i64, i64) =
            timed(COMMAND_TIMEOUT, call.invoke_async(&mut c)).await?;
        Ok(Lease {
            cancel: cancel == 1,
            watched: watched == 1,
            unheard_for: (watched == 0 && unheard_ms >= 0)
                .then(|| Duration::from_millis(unheard_ms as u64)),
        })
    }

    pub(super) async fn mark(
        &self,
        watching: &[StreamName],
        left: &[StreamName],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        if watching.is_empty() && left.is_empty() {
            return Ok(());
        }
        let mut c = self.conn().await?;
        // One script call per stream: each stream's keys share a hash slot,
        // different streams need not; on a Cluster a pipeline must keep to
        // one slot, so there is one per partition.
        let mut pipes: Vec<Option<redis::Pipeline>> = vec![None; self.layout.partitions()];
        let flagged = watching
            .iter()
            .map(|n| (n, "1"))
            .chain(left.iter().map(|n| (n, "0")));
        for (name, flag) in flagged {
            let Some(pipe) = pipes.get_mut(self.layout.partition_of(name)) else {
                continue;
            };
            pipe.get_or_insert_with(redis::pipe)
                .cmd("EVALSHA")
                .arg(self.scripts.mark.get_hash())
                .arg(1)
                .arg(self.key(name, "watched"))
                .arg(&self.node)
                .arg(ttl.as_millis().max(1) as u64)
                .arg(flag)
                .ignore();
        }
        for pipe in pipes.iter().flatten() {
            run_marks(&mut c, pipe).await?;
        }
        Ok(())
    }

    pub(super) async fn ask_cancel(&self, name: &StreamName) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let mut call = self.scripts.cancel.prepare_invoke();
        call.key(self.key(name, "lease"))
            .key(self.key(name, "cancel"))
            .arg(60_000);
        let held: i64 = timed(COMMAND_TIMEOUT, call.invoke_async(&mut c)).await?;
        Ok(held == 1)
    }

    pub(super) async fn reap(&self, draft: &Draft) -> Result<Vec<StreamName>, StoreError> {
        let mut c = self.conn().await?;
        let mut names: Vec<String> = Vec::new();
        for p in 0..self.layout.partitions() {
            let some: Vec<String> = timed(
                COMMAND_TIMEOUT,
                redis::cmd("SMEMBERS")
                    .arg(self.layout.shared(p, "generations"))
                    .query_async(&mut c),
            )
            .await?;
            names.extend(some);
        }
        let mut ended = Vec::new();
        for name in names.into_iter().filter_map(|n| StreamName::new(n).ok()) {
            if self
                .append_as(&name, draft, None, "orphan")
                .await?
                .is_some()
            {
                ended.push(name);
            }
        }
        Ok(ended)
    }
}

/// Runs a pipeline of `MARK_WATCHED` calls, loading the script first where
/// Redis does not know it yet (first use, or after a restart).
async fn run_marks(c: &mut Conn, pipe: &redis::Pipeline) -> Result<(), StoreError> {
    match timed(COMMAND_TIMEOUT, pipe.query_async::<()>(c)).await {
        Err(StoreError::Unavailable(e)) if e.to_ascii_lowercase().contains("noscript") => {
            let _: String = timed(
                COMMAND_TIMEOUT,
                redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(super::scripts::MARK_WATCHED)
                    .query_async(c),
            )
            .await?;
            timed(COMMAND_TIMEOUT, pipe.query_async::<()>(c)).await
        }
        other => other,
    }
}
