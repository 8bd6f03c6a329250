//! Metric names, in one place, and the Prometheus recorder.
//!
//! Code records with the `metrics` macros and these names; `GET /metrics`
//! renders the recorder installed by [`install`].

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Open HTTP connections.
pub const CONNECTIONS: &str = "rill_connections";
/// Connections closed by rill before a request, by reason (`limit`,
/// `header_timeout`, `tls`).
pub const CONNECTIONS_DROPPED: &str = "rill_connections_dropped_total";
/// Subscribers streaming now, all streams.
pub const SUBSCRIBERS: &str = "rill_subscribers";
/// Events appended to streams.
pub const EVENTS_PUBLISHED: &str = "rill_events_published_total";
/// Events written to subscribers (replayed or live).
pub const EVENTS_DELIVERED: &str = "rill_events_delivered_total";
/// Subscriptions that resumed after an id.
pub const RESUMES: &str = "rill_resumes_total";
/// `event: reset` sent, by reason.
pub const RESETS: &str = "rill_resets_total";
/// Subscribers that fell behind the live ring and were caught up from the store.
pub const SLOW_CATCHUPS: &str = "rill_slow_consumer_catchups_total";
/// Slow subscribers whose missed events had already left the store.
pub const SLOW_DROPS: &str = "rill_slow_consumer_drops_total";
/// Requests refused, by reason.
pub const REJECTED: &str = "rill_rejected_total";
/// Generations started.
pub const GENERATIONS_STARTED: &str = "rill_generations_started_total";
/// Generations ended, by outcome (`finished`, `cancelled`, `failed`).
pub const GENERATIONS_ENDED: &str = "rill_generations_ended_total";
/// Generations running now.
pub const GENERATIONS_ACTIVE: &str = "rill_generations_active";
/// Seconds from a generation's start to its first token.
pub const TIME_TO_FIRST_TOKEN: &str = "rill_time_to_first_token_seconds";
/// Seconds between consecutive tokens of a generation.
pub const INTER_TOKEN: &str = "rill_inter_token_seconds";
/// Upstream model errors, by kind.
pub const UPSTREAM_ERRORS: &str = "rill_upstream_errors_total";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once) and returns its handle.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ];
            PrometheusBuilder::new()
                .set_buckets(&buckets)
                .ok()?
                .install_recorder()
                .ok()
        })
        .clone()
}
