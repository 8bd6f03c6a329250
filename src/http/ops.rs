//! Operations: liveness, metrics, and the OpenAPI document.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa::OpenApi;

use super::AppState;

/// The OpenAPI document, generated from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "rill",
        description = "Server-Sent Events for LLM output and live events"
    ),
    paths(
        super::demo::index,
        super::demo::dashboard,
        super::demo::sse,
        super::streams::subscribe,
        super::streams::publish,
        super::streams::list,
        super::streams::remove,
        super::generations::create,
        super::generations::cancel,
        healthz,
        metrics,
        openapi,
    ),
    components(schemas(
        super::streams::PublishBody,
        super::streams::Published,
        super::streams::StreamList,
        crate::store::StreamInfo,
        super::generations::CreateGeneration,
        super::generations::Cancelled,
        crate::generation::Started,
        crate::backend::Message,
    ))
)]
pub struct ApiDoc;

/// `GET /healthz`: whether the server and its store are up.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "Up"), (status = 503, description = "The store is unreachable")))]
pub async fn healthz(State(st): State<AppState>) -> Response {
    match st.hub.store().log.healthy().await {
        Ok(()) => Json(serde_json::json!({ "status": "ok", "store": "ok" })).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "degraded", "store": e.to_string() })),
        )
            .into_response(),
    }
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, content_type = "text/plain", description = "Prometheus metrics")))]
pub async fn metrics(State(st): State<AppState>) -> Response {
    match &st.metrics {
        Some(h) => {
            // Counted once, in the hub, on the hot path; copied here.
            let (published, delivered) = st.hub.totals();
            metrics::counter!(crate::metrics::EVENTS_PUBLISHED).absolute(published);
            metrics::counter!(crate::metrics::EVENTS_DELIVERED).absolute(delivered);
            let mut text = h.render();
            stream_subscribers(&mut text, &st.hub.subscribers_per_stream());
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable",
        )
            .into_response(),
    }
}

/// Appends the per-stream subscriber gauge. Stream names cannot hold `"`,
/// `\\` or a line break (see the name grammar), so they need no escaping.
fn stream_subscribers(text: &mut String, streams: &[(crate::ids::StreamName, usize)]) {
    use std::fmt::Write;
    let name = crate::metrics::STREAM_SUBSCRIBERS;
    let _ = writeln!(text, "# HELP {name} Subscribers on this node, per stream");
    let _ = writeln!(text, "# TYPE {name} gauge");
    for (stream, n) in streams {
        let _ = writeln!(text, "{name}{{stream=\"{stream}\"}} {n}");
    }
}

/// `GET /openapi.json`: this document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops",
    responses((status = 200, content_type = "application/json", description = "The OpenAPI document of rill's HTTP API")))]
pub async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}
