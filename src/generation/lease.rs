//! Generations across nodes: the owner's lease and the orphan sweeper.
//!
//! With a shared store, the node running a generation holds a lease on its
//! stream in the store and renews it every [`renew_interval`]. Every node
//! runs a sweeper that ends generation streams whose lease has lapsed (their
//! node stopped or lost the store) with `event: error`
//! (`"error": "generation_lost"`); the store's atomic append makes that
//! happen exactly once. Subscribers on any node therefore learn of a lost
//! generation within about one lease plus one sweep.
//!
//! Renewing is also how other nodes speak to the owner: a cancel sent to
//! another node is recorded in the store, and every node marks the
//! generation streams it has listeners on as watched; the owner's next
//! renewal sees both. So the no-listener grace counts listeners on every
//! node, to within one renewal.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::Generations;
use crate::ids::StreamName;
use crate::metrics as m;
use crate::sse::EventType;
use crate::store::{Draft, Store};

/// How often the owner renews a lease of `ttl` (and so how soon it sees a
/// cancel from another node).
pub fn renew_interval(ttl: Duration) -> Duration {
    (ttl / 3).min(Duration::from_secs(1))
}

/// Renews the lease of `name` until the generation should stop, and says
/// why: `"request"` (another node asked to cancel) or `"no_listeners"`
/// (no node has had a listener for `grace`). A failed renewal is retried and
/// counts as neither: if the store stays away longer than `ttl`, another node
/// ends the stream and this node's next append is refused.
pub(super) async fn hold(
    store: &dyn Store,
    name: &StreamName,
    ttl: Duration,
    grace: Option<Duration>,
    local: watch::Receiver<usize>,
) -> &'static str {
    let mut ticks = tokio::time::interval(renew_interval(ttl));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unheard_since: Option<Instant> = None;
    loop {
        ticks.tick().await;
        let lease = match store.renew_lease(name, ttl).await {
            Ok(lease) => lease,
            Err(e) => {
                tracing::warn!(stream = %name, error = %e, "could not renew generation lease");
                continue;
            }
        };
        if lease.cancel {
            return "request";
        }
        if lease.watched || *local.borrow() > 0 {
            unheard_since = None;
            continue;
        }
        let since = *unheard_since.get_or_insert_with(Instant::now);
        if grace.is_some_and(|g| since.elapsed() >= g) {
            return "no_listeners";
        }
    }
}

/// The terminal event of a generation whose node is gone.
pub fn lost_event() -> Draft {
    let body = serde_json::json!({
        "error": "generation_lost",
        "message": "the node running this generation stopped before it finished",
        "upstream_status": null,
    });
    Draft {
        event_type: EventType::new("error").ok(),
        data: body.to_string(),
        terminal: true,
    }
}

impl Generations {
    /// Until shutdown, marks the generation streams this node has listeners
    /// on as watched, and ends orphaned generations of a shared store.
    pub async fn run_orphan_sweeper(self) {
        let every = renew_interval(self.config.lease);
        let shutdown = self.hub.shutdown().clone();
        let draft = lost_event();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.cancelled() => return,
            }
            let watched = self.hub.watched(super::GENERATION_PREFIX);
            if let Err(e) = self.hub.store().mark_watched(&watched, every * 3).await {
                tracing::debug!(error = %e, "could not mark watched generations");
            }
            match self.hub.store().end_orphans(&draft).await {
                Ok(ended) => {
                    for name in ended {
                        tracing::warn!(stream = %name, "generation lost its node; ended it");
                        metrics::counter!(m::GENERATIONS_LOST).increment(1);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "orphan sweep skipped"),
            }
        }
    }
}
