//! Operations: liveness, metrics, the OpenAPI document, and the admin
//! listener's view of the dashboard stream.
//!
//! The same handlers serve two audiences. On the admin listener
//! (`--admin-listen`), or the public one with auth off, the reader is an
//! operator: `/metrics` has per-stream series and `/healthz` the store's
//! error. On the public listener with auth on the reader may be anyone, and
//! stream names are what tokens guard (a generation's name is its id), so
//! both say aggregates only. The router sets which with an [`OpsView`].

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use utoipa::OpenApi;

use super::error::ApiError;
use super::AppState;

/// How much the ops routes tell their reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Per-stream series and the store's error text: for operators.
    Full,
    /// Aggregates only, no error text: for anyone, with auth on.
    Redacted,
}

/// What one listener's ops routes tell, and which of them it serves; put
/// in the router's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpsView {
    /// How much `/metrics` and `/healthz` say.
    pub detail: Detail,
    /// Whether this listener serves `/metrics` and `/dashboard` (not when
    /// the admin listener has them).
    pub operator_routes: bool,
}

impl OpsView {
    /// The admin listener's: everything.
    pub const ADMIN: OpsView = OpsView {
        detail: Detail::Full,
        operator_routes: true,
    };

    /// The view a missing extension stands for: the least one.
    fn or_least(view: Option<Extension<OpsView>>) -> OpsView {
        view.map_or(
            OpsView {
                detail: Detail::Redacted,
                operator_routes: false,
            },
            |Extension(v)| v,
        )
    }
}

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
        super::client::script,
        super::client::types,
        super::probe::probe,
        super::streams::subscribe,
        super::streams::publish,
        super::streams::list,
        super::streams::remove,
        super::durable::write::create,
        super::durable::write::append,
        super::durable::write::remove,
        super::durable::read::head,
        super::durable::read::get,
        super::generations::create,
        super::generations::cancel,
        super::openai::chat::create,
        super::openai::responses::create,
        super::openai::responses::retrieve,
        super::openai::responses::cancel,
        super::openai::models::list,
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
        super::probe::Plan,
        crate::backend::ToolCall,
        crate::backend::chat::ToolSpec,
        crate::backend::chat::FunctionSpec,
    ))
)]
pub struct ApiDoc;

/// `GET /healthz`: whether the server and its store are up.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "Up"), (status = 503, description = "The store is unreachable (the reason only on the admin listener, or with auth off)")))]
pub async fn healthz(State(st): State<AppState>, view: Option<Extension<OpsView>>) -> Response {
    let (status, body) = health(
        st.hub.store().log.healthy().await,
        OpsView::or_least(view).detail,
    );
    (status, Json(body)).into_response()
}

/// The health answer for the store's `result`. Redacted, the store's error
/// goes to the log only: its text can name hosts and, in a key, streams.
fn health<E: std::fmt::Display>(
    result: Result<(), E>,
    detail: Detail,
) -> (StatusCode, serde_json::Value) {
    let store = match (result, detail) {
        (Ok(()), _) => {
            return (
                StatusCode::OK,
                serde_json::json!({ "status": "ok", "store": "ok" }),
            )
        }
        (Err(e), Detail::Full) => e.to_string(),
        (Err(e), Detail::Redacted) => {
            tracing::warn!(error = %e, "health check: the store is unavailable");
            "unavailable".to_owned()
        }
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        serde_json::json!({ "status": "degraded", "store": store }),
    )
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, content_type = "text/plain", description = "Prometheus metrics; per-stream series only on the admin listener, or with auth off")))]
pub async fn metrics(State(st): State<AppState>, view: Option<Extension<OpsView>>) -> Response {
    match &st.metrics {
        Some(h) => {
            // Counted once, in the hub, on the hot path; copied here.
            let (published, delivered) = st.hub.totals();
            metrics::counter!(crate::metrics::EVENTS_PUBLISHED).absolute(published);
            metrics::counter!(crate::metrics::EVENTS_DELIVERED).absolute(delivered);
            let mut text = h.render();
            match OpsView::or_least(view).detail {
                Detail::Full => stream_subscribers(&mut text, &st.hub.subscribers_per_stream()),
                Detail::Redacted => text = without_stream_labels(&text),
            }
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

/// The recorder's text without any sample labelled with a stream. None
/// is today (the per-stream gauge is appended by [`stream_subscribers`]
/// for operators only); this keeps a series added later from naming
/// streams to anyone.
fn without_stream_labels(text: &str) -> String {
    text.lines()
        .filter(|l| l.starts_with('#') || !(l.contains("{stream=\"") || l.contains(",stream=\"")))
        .flat_map(|l| [l, "\n"])
        .collect()
}

/// `GET /openapi.json`: this document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops",
    responses((status = 200, content_type = "application/json", description = "The OpenAPI document of rill's HTTP API")))]
pub async fn openapi(view: Option<Extension<OpsView>>) -> impl IntoResponse {
    let mut doc = ApiDoc::openapi();
    if !OpsView::or_least(view).operator_routes {
        // Served by the admin listener: not part of this one's API.
        doc.paths.paths.remove("/metrics");
        doc.paths.paths.remove("/dashboard");
    }
    Json(doc)
}

/// `GET /v1/streams/_dashboard` on the admin listener: the dashboard's
/// data, without a token. The only stream the admin listener serves.
pub async fn dashboard_stream(
    st: State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let name = Path(crate::dashboard::DASHBOARD_STREAM.to_owned());
    super::streams::subscribe(st, name, headers, uri, None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_health_names_no_store_detail() {
        let err = || Err::<(), _>("store unavailable: redis://10.0.0.5: stream gen-42 unreadable");
        let (status, body) = health(err(), Detail::Redacted);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            serde_json::json!({"status": "degraded", "store": "unavailable"})
        );
        let (status, body) = health(err(), Detail::Full);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body["store"].as_str().unwrap().contains("gen-42"));
        for detail in [Detail::Full, Detail::Redacted] {
            let (status, body) = health(Ok::<(), &str>(()), detail);
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body, serde_json::json!({"status": "ok", "store": "ok"}));
        }
    }

    #[test]
    fn redacted_metrics_keep_aggregates_and_drop_stream_labels() {
        let mut text = "# TYPE rill_subscribers gauge\nrill_subscribers 3\nrill_rejected_total{reason=\"csrf\"} 1\n".to_owned();
        stream_subscribers(
            &mut text,
            &[(crate::ids::StreamName::new("gen-42").unwrap(), 2)],
        );
        text.push_str("x_total{node=\"a\",stream=\"chat\"} 1\n");
        assert!(text.contains("gen-42") && text.contains("\"chat\""));
        let shown = without_stream_labels(&text);
        assert!(shown.contains("rill_subscribers 3\n"), "{shown}");
        assert!(
            shown.contains("rill_rejected_total{reason=\"csrf\"} 1\n"),
            "{shown}"
        );
        assert!(
            !shown.contains("gen-42") && !shown.contains("\"chat\""),
            "{shown}"
        );
    }

    #[test]
    fn a_router_without_a_view_gets_the_least_one() {
        assert_eq!(OpsView::or_least(None).detail, Detail::Redacted);
        assert!(!OpsView::or_least(None).operator_routes);
    }
}
