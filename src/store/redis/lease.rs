//! The Redis store's part in generations across nodes: the owner's lease,
//! cancel requests and listener marks from other nodes, and ending the
//! streams of lost owners.
//!
//! All three are scripts (see `scripts.rs`), so a lease check and the append
//! of the terminal event are one atomic step: however many nodes sweep at
//! once, a lost generation gets exactly one `event: error`.

use std::time::Duration;

use super::{timed, RedisStore, COMMAND_TIMEOUT};
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
            .key(self.generations_key())
            .key(self.key(name, "watched"))
            .arg(name.as_str())
            .arg(ttl.as_millis().max(1) as u64);
        let (cancel, watched): (i64, i64) =
            timed(COMMAND_TIMEOUT, call.invoke_async(&mut c)).await?;
        Ok(Lease {
            cancel: cancel == 1,
            watched: watched == 1,
        })
    }

    pub(super) async fn mark(&self, names: &[StreamName], ttl: Duration) -> Result<(), StoreError> {
        if names.is_empty() {
            return Ok(());
        }
        let mut c = self.conn().await?;
        let mut pipe = redis::pipe();
        for n in names {
            pipe.cmd("SET")
                .arg(self.key(n, "watched"))
                .arg(1)
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64)
                .ignore();
        }
        timed(COMMAND_TIMEOUT, pipe.query_async::<()>(&mut c)).await
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
        let names: Vec<String> = timed(
            COMMAND_TIMEOUT,
            redis::cmd("SMEMBERS")
                .arg(self.generations_key())
                .query_async(&mut c),
        )
        .await?;
        let mut ended = Vec::new();
        for name in names.into_iter().filter_map(|n| StreamName::new(n).ok()) {
            if self.append_as(&name, draft, "orphan").await?.is_some() {
                ended.push(name);
            }
        }
        Ok(ended)
    }
}
