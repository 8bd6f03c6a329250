//! HTTP: the routes, the shared state they read, and the server loop.
//!
//! One file per route group: [`demo`] (the seed's page and `/sse`),
//! [`streams`] (publish, subscribe, list, delete), [`generations`] (model
//! back-ends), [`openai`] (the OpenAI-compatible views of generations),
//! [`durable`] (the Durable Streams protocol at `/v1/stream/{name}`),
//! [`ops`] (health, metrics, OpenAPI), [`client`] (the browser module
//! `/rill.js`), [`probe`] (a known schedule of events for `rill probe`).
//! [`sse`] turns a subscription into a response; [`error`] maps every
//! error to a status in one place (the OpenAI routes map it once more, to
//! OpenAI's shape).
//!
//! Two routers: [`router`] for the public listener, and [`admin_router`]
//! for the operators' listener (`--admin-listen`), which serves the ops
//! routes and the dashboard without auth.

pub mod accept;
pub mod auth;
pub mod body;
pub mod client;
pub mod cors;
pub mod demo;
pub mod durable;
pub mod error;
pub mod generations;
pub mod listener;
pub mod openai;
pub mod ops;
pub mod park;
pub mod probe;
pub mod sse;
pub mod streams;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::{Extension, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

use crate::backend::Backend;
use crate::generation::policy::Policy;
use crate::generation::Generations;
use crate::hub::Hub;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Streams and fan-out.
    pub hub: Hub,
    /// Running generations.
    pub generations: Generations,
    /// The back-end of `POST /v1/generations`.
    pub backend: Arc<dyn Backend>,
    /// What requests may ask of the model.
    pub policy: Arc<Policy>,
    /// The seed's recorded answer, for `/sse`.
    pub seed: Arc<demo::SeedAnswer>,
    /// Largest event data accepted, in bytes.
    pub max_event_bytes: usize,
    /// The Prometheus recorder, if one could be installed.
    pub metrics: Option<PrometheusHandle>,
    /// The Durable Streams routes' locks and timings.
    pub durable: Arc<durable::DurableState>,
}

/// The public listener's routes; `view` says what its ops routes tell and
/// whether it serves `/metrics` and `/dashboard` (answered `404` when the
/// admin listener has them).
pub fn router(state: AppState, view: ops::OpsView) -> Router {
    let body_limit = body_limit(state.max_event_bytes);
    // Event streams (`GET`) run in a span that names the stream for as long
    // as they stream; other requests run in none: a span per request, even
    // a disabled one, and the layer's per-request bookkeeping cost a fifth
    // of a publish (see bench/RESULTS.md, publish).
    let traced = || TraceLayer::new_for_http().make_span_with(request_span);
    // Only the ops routes read the view: a layer on every route would cost
    // every request an extension insert.
    let viewed = || Extension(view);
    let mut app = Router::new();
    if view.operator_routes {
        app = app
            .route("/dashboard", get(demo::dashboard))
            .route("/metrics", get(ops::metrics).layer(viewed()));
    }
    app.route("/", get(demo::index))
        .route("/sse", get(demo::sse).layer(traced()))
        .route("/rill.js", get(client::script))
        .route("/rill.d.ts", get(client::types))
        .route("/v1/probe", get(probe::probe).layer(traced()))
        .route("/v1/streams", get(streams::list))
        .route(
            "/v1/streams/{name}",
            get(streams::subscribe)
                .layer(traced())
                .post(streams::publish)
                .delete(streams::remove),
        )
        .route(
            "/v1/stream/{name}",
            get(durable::read::get)
                .head(durable::read::head)
                .put(durable::write::create)
                .post(durable::write::append)
                .delete(durable::write::remove)
                .layer(axum::middleware::map_response(durable::protect)),
        )
        .route("/v1/generations", post(generations::create))
        .route("/v1/generations/{id}/cancel", post(generations::cancel))
        .route("/v1/chat/completions", post(openai::chat::create))
        .route("/v1/responses", post(openai::responses::create))
        .route("/v1/responses/{id}", get(openai::responses::retrieve))
        .route("/v1/responses/{id}/cancel", post(openai::responses::cancel))
        .route("/v1/models", get(openai::models::list))
        .route("/healthz", get(ops::healthz).layer(viewed()))
        .route("/openapi.json", get(ops::openapi).layer(viewed()))
        // Innermost, so auth (a route layer added later) refuses a request
        // before its body is read. It reads a body in full under the
        // --body-read-timeout-secs deadline, and at most one byte past
        // `body_limit`, leaving the 413 to the handler's extractor.
        .layer(axum::middleware::from_fn_with_state(
            body_limit,
            body::read_within,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The largest request body accepted on the wire. Bodies may be
/// JSON-escaped (up to 6 bytes per byte of data), so it is wider than the
/// limit on data (`max_event_bytes`), which the handler checks exactly and
/// answers with 413.
pub fn body_limit(max_event_bytes: usize) -> usize {
    max_event_bytes.saturating_mul(6).saturating_add(64 * 1024)
}

/// The admin listener's routes: `/metrics` with per-stream series,
/// `/healthz` with the store's error, `/dashboard` and its stream
/// `GET /v1/streams/_dashboard`, all without auth, and nothing else. Bind
/// it to loopback or a private network.
pub fn admin_router(state: AppState) -> Router {
    let dashboard = format!("/v1/streams/{}", crate::dashboard::DASHBOARD_STREAM);
    Router::new()
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .route("/dashboard", get(demo::dashboard))
        .route(&dashboard, get(ops::dashboard_stream))
        .layer(Extension(ops::OpsView::ADMIN))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}

/// Every request runs in a span; stream routes fill in `stream` and
/// `subscribers`, so any line logged while serving names them.
///
/// Event-stream requests (`GET`) get an `info` span: one per connection,
/// however long it streams. Other requests get a `debug` span, off at the
/// default level: an enabled span cost 8 µs of the 42 µs of server CPU per
/// publish (publish benchmark, 16 connections, release build), and a
/// publish that fails says its stream in its own error.
fn request_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    macro_rules! span {
        ($level:ident) => {
            tracing::$level!(
                "request",
                method = %req.method(),
                path = %req.uri().path(),
                stream = tracing::field::Empty,
                subscribers = tracing::field::Empty,
            )
        };
    }
    if req.method() == axum::http::Method::GET {
        span!(info_span)
    } else {
        span!(debug_span)
    }
}

/// Records the stream and its subscriber count on the current request span;
/// `subscribers` is only asked for when the span is on.
pub fn record_stream(stream: &str, subscribers: impl FnOnce() -> usize) {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return;
    }
    span.record("stream", stream);
    span.record("subscribers", subscribers());
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then waits up to
/// `drain` for open responses to end (open streams end themselves with a
/// jittered `retry:` when they see the shutdown). Plain HTTP with default
/// limits; [`accept::serve_with`] takes TLS and limits.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: CancellationToken,
    drain: Duration,
) -> std::io::Result<()> {
    accept::serve_with(listener, app, shutdown, accept::ServeOptions::plain(drain)).await
}
