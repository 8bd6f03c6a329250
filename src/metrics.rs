//! Metric names, in one place, and the Prometheus recorder.
//!
//! Code records with the `metrics` macros and these names; `GET /metrics`
//! renders the recorder installed by [`install`].

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Open HTTP connections.
pub const CONNECTIONS: &str = "rill_connections";
/// Connections closed by rill before a request, by reason (`limit`,
/// `per_ip`, `header_timeout`, `tls`).
pub const CONNECTIONS_DROPPED: &str = "rill_connections_dropped_total";
/// Subscribers streaming now, all streams.
pub const SUBSCRIBERS: &str = "rill_subscribers";
/// Of those, the ones on parked HTTP/1.1 connections (rill's own delivery
/// path), and not on a task of hyper's.
pub const PARKED: &str = "rill_parked_subscribers";
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
/// Live reads from a shared store that failed (each closes the followed
/// streams' local subscribers with `retry:`).
pub const LIVE_FEED_ERRORS: &str = "rill_live_feed_errors_total";
/// Generations ended by this node's sweeper because their node was gone.
pub const GENERATIONS_LOST: &str = "rill_generations_lost_total";
/// Subscribers on this node, per stream (label `stream`; only streams with
/// subscribers). Rendered from the hub's state when `/metrics` is read, so
/// a stream that goes away leaves no stale series behind.
pub const STREAM_SUBSCRIBERS: &str = "rill_stream_subscribers";

/// Label values known in advance, so their series read 0 before the first
/// occurrence instead of being absent.
const KNOWN_LABELS: [(&str, &str, &[&str]); 5] = [
    (
        CONNECTIONS_DROPPED,
        "reason",
        &["limit", "per_ip", "header_timeout", "tls"],
    ),
    (RESETS, "reason", &["unknown", "expired", "lagged"]),
    (
        REJECTED,
        "reason",
        &[
            "subscriber_limit",
            "bad_request",
            "bad_name",
            "bad_field",
            "not_acceptable",
            "too_large",
            "not_found",
            "too_many_streams",
            "conflict",
            "store_unavailable",
            "store_full",
            "forbidden",
            "unsupported_media_type",
            "model_not_allowed",
            "option_not_allowed",
            "one_choice_only",
            "output_tokens",
            "too_many_generations",
            "idempotency_key_reused",
            "body_timeout",
        ],
    ),
    (
        GENERATIONS_STARTED,
        "backend",
        &["mock", "ollama", "openai"],
    ),
    (
        UPSTREAM_ERRORS,
        "kind",
        &["connect", "status", "protocol", "timeout", "truncated"],
    ),
];

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
                .inspect(|_| register())
        })
        .clone()
}

/// Describes every metric and makes each appear (at 0) from the start, so
/// dashboards and alerts see a series before the first event.
fn register() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(CONNECTIONS, "Open HTTP connections");
    describe_counter!(
        CONNECTIONS_DROPPED,
        "Connections closed by rill before a request, by reason"
    );
    describe_gauge!(SUBSCRIBERS, "Subscribers streaming now, all streams");
    describe_gauge!(
        PARKED,
        "Subscribers on parked HTTP/1.1 connections (rill's own delivery path)"
    );
    describe_counter!(EVENTS_PUBLISHED, "Events appended to streams");
    describe_counter!(EVENTS_DELIVERED, "Events written to subscribers");
    describe_counter!(RESUMES, "Subscriptions that resumed after an id");
    describe_counter!(RESETS, "event: reset sent, by reason");
    describe_counter!(SLOW_CATCHUPS, "Slow subscribers caught up from the store");
    describe_counter!(
        SLOW_DROPS,
        "Slow subscribers whose missed events had expired"
    );
    describe_counter!(REJECTED, "Requests refused, by reason");
    describe_counter!(GENERATIONS_STARTED, "Generations started");
    describe_counter!(GENERATIONS_ENDED, "Generations ended, by outcome");
    describe_gauge!(GENERATIONS_ACTIVE, "Generations running now");
    describe_histogram!(TIME_TO_FIRST_TOKEN, "Seconds to a generation's first token");
    describe_histogram!(INTER_TOKEN, "Seconds between tokens of a generation");
    describe_counter!(UPSTREAM_ERRORS, "Upstream model errors, by kind");
    describe_counter!(
        LIVE_FEED_ERRORS,
        "Live reads from a shared store that failed"
    );
    describe_counter!(
        GENERATIONS_LOST,
        "Generations ended by this node because their node was gone"
    );
    for name in [CONNECTIONS, SUBSCRIBERS, PARKED, GENERATIONS_ACTIVE] {
        metrics::gauge!(name).increment(0.0);
    }
    for name in [
        EVENTS_PUBLISHED,
        EVENTS_DELIVERED,
        RESUMES,
        SLOW_CATCHUPS,
        SLOW_DROPS,
        LIVE_FEED_ERRORS,
        GENERATIONS_LOST,
    ] {
        metrics::counter!(name).increment(0);
    }
    for (name, label, values) in KNOWN_LABELS {
        for value in values {
            metrics::counter!(name, label => *value).increment(0);
        }
    }
}
