//! Generations across nodes: the owner's lease, who listens, and the
//! orphan sweeper.
//!
//! With a shared store, the node running a generation holds a lease on its
//! stream in the store and renews it every [`renew_interval`]. Every node
//! runs a sweeper that ends generation streams whose lease has lapsed (their
//! node stopped or lost the store) with `event: failed`
//! (`"error": "generation_lost"`); the store's atomic append makes that
//! happen exactly once. Subscribers on any node therefore learn of a lost
//! generation within about one lease plus one sweep.
//!
//! Renewing is also how other nodes speak to the owner: a cancel sent to
//! another node is recorded in the store, and every node records which
//! generation streams it listens to, and the moment its last listener of
//! one left ([`run_marker`](Generations::run_marker), every [`MARK_EVERY`]).
//! The owner's renewal reads both, so the no-listener grace counts from
//! the moment the last listener on any node left: a generation nobody
//! hears is cancelled within grace + [`MARK_EVERY`] + one renewal.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::run::{failed_event, StopReason};
use super::Generations;
use crate::ids::StreamName;
use crate::metrics as m;
use crate::store::{Draft, Leases};

/// How often each node records which generation streams it listens to.
pub const MARK_EVERY: Duration = Duration::from_millis(250);
/// How long a "this node listens" mark lasts unrenewed (a node that dies
/// while listening stops counting after this).
const MARK_TTL: Duration = Duration::from_secs(3);

/// How often the owner renews a lease of `ttl` (and so how soon it sees a
/// cancel, or that nobody listens, from another node).
pub fn renew_interval(ttl: Duration) -> Duration {
    (ttl / 3).min(Duration::from_millis(500))
}

/// Renews the lease of `name` until the generation should stop, and says
/// why: [`StopReason::Request`] (another node asked to cancel) or
/// [`StopReason::NoListeners`] (no node has had a listener for `grace`). A
/// failed renewal is retried and counts as neither: if the store stays away
/// longer than `ttl`, another node ends the stream and this node's next
/// append is refused.
pub(super) async fn hold(
    leases: &dyn Leases,
    name: &StreamName,
    ttl: Duration,
    grace: Option<Duration>,
    mut local: watch::Receiver<usize>,
) -> StopReason {
    let mut ticks = tokio::time::interval(renew_interval(ttl));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Heard at the start: a generation nobody ever listens to lives for
    // one grace period.
    let mut heard_here = Instant::now();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            changed = local.changed() => {
                if changed.is_ok() && *local.borrow() == 0 {
                    heard_here = Instant::now();
                }
                continue;
            }
        }
        let lease = match leases.renew_lease(name, ttl).await {
            Ok(lease) => lease,
            Err(e) => {
                tracing::warn!(stream = %name, error = %e, "could not renew generation lease");
                continue;
            }
        };
        if lease.cancel {
            return StopReason::Request;
        }
        let now = Instant::now();
        if *local.borrow() > 0 {
            heard_here = now;
        }
        if lease.watched || *local.borrow() > 0 {
            continue;
        }
        let heard_elsewhere = lease.unheard_for.and_then(|d| now.checked_sub(d));
        let heard = heard_elsewhere.map_or(heard_here, |t| t.max(heard_here));
        if grace.is_some_and(|g| now.duration_since(heard) >= g) {
            return StopReason::NoListeners;
        }
    }
}

/// The terminal event of a generation whose node is gone.
pub fn lost_event() -> Draft {
    failed_event(
        "generation_lost",
        "the node running this generation stopped before it finished",
        None,
    )
}

impl Generations {
    /// Until shutdown: records which generation streams this node listens
    /// to (and when it stopped), and ends orphaned generations of a shared
    /// store.
    pub async fn run_marker(self) {
        let Some(leases) = self.hub.store().leases.clone() else {
            return;
        };
        let sweep_every = renew_interval(self.config.lease).max(MARK_EVERY);
        let refresh_every = MARK_TTL / 3;
        let shutdown = self.hub.shutdown().clone();
        let draft = lost_event();
        let mut marked: HashSet<StreamName> = HashSet::new();
        let (mut last_sweep, mut last_refresh) = (Instant::now(), Instant::now());
        loop {
            tokio::select! {
                _ = tokio::time::sleep(MARK_EVERY) => {}
                _ = shutdown.cancelled() => return,
            }
            let now: HashSet<StreamName> = self
                .hub
                .watched(super::GENERATION_PREFIX)
                .into_iter()
                .collect();
            let left: Vec<StreamName> = marked.difference(&now).cloned().collect();
            let refresh = last_refresh.elapsed() >= refresh_every;
            let watching: Vec<StreamName> = if refresh {
                now.iter().cloned().collect()
            } else {
                now.difference(&marked).cloned().collect()
            };
            match leases.mark_watched(&watching, &left, MARK_TTL).await {
                Ok(()) => {
                    marked = now;
                    if refresh {
                        last_refresh = Instant::now();
                    }
                }
                Err(e) => tracing::debug!(error = %e, "could not mark watched generations"),
            }
            if last_sweep.elapsed() < sweep_every {
                continue;
            }
            last_sweep = Instant::now();
            match leases.end_orphans(&draft).await {
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
