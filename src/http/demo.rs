//! The seed's demo: the page at `/` and its stream at `/sse`.
//!
//! `/sse` starts a generation of the recorded `llama3.1` answer for each new
//! visitor. Its event ids carry the generation's id (`<gen>.<n>`), so a
//! browser that reconnects with `Last-Event-ID` resumes the same answer,
//! and one that has seen `done` gets `204` and stops.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Response};

use super::error::ApiError;
use super::sse::{negotiate, respond, resume_from, retry_if_unavailable};
use super::streams::ResumeQuery;
use super::AppState;
use crate::backend::GenerateRequest;
use crate::generation::Generations;
use crate::hub::{Resume, Subscribe};
use crate::ids::EventId;

const INDEX_HTML: &str = include_str!("../../static/index.html");
const DASHBOARD_HTML: &str = include_str!("../../static/dashboard.html");

/// `GET /`: the page.
#[utoipa::path(get, path = "/", tag = "demo",
    responses((status = 200, content_type = "text/html", description = "The demo page, which follows `/sse`")))]
pub async fn index() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-cache")], Html(INDEX_HTML))
}

/// `GET /dashboard`: the live dashboard page; its data is the stream
/// `_dashboard`.
#[utoipa::path(get, path = "/dashboard", tag = "ops",
    responses((status = 200, content_type = "text/html", description = "The live dashboard, which follows the stream `_dashboard`")))]
pub async fn dashboard() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-cache")], Html(DASHBOARD_HTML))
}

/// `GET /sse`: the recorded answer, one token per event, then `done`.
#[utoipa::path(get, path = "/sse", tag = "demo",
    params(("lastEventId" = Option<String>, Query, description = "Resume after this id (the Last-Event-ID header wins)")),
    responses(
        (status = 200, description = "The seed's answer as an event stream", content_type = "text/event-stream"),
        (status = 204, description = "The answer was read to its end"),
        (status = 406, description = "Accept admits no event stream"),
    ))]
pub async fn sse(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ResumeQuery>,
) -> Result<Response, ApiError> {
    negotiate(&headers)?;
    let retry = st.hub.config().retry_ms;
    retry_if_unavailable(answer(&st, &headers, q).await, retry)
}

async fn answer(st: &AppState, headers: &HeaderMap, q: ResumeQuery) -> Result<Response, ApiError> {
    let retry = st.hub.config().retry_ms;
    let resume = resume_from(headers, q.last_event_id.as_deref());
    if let Resume::From(w) = &resume {
        if let Some(gen) = &w.prefix {
            if let Ok(name) = Generations::stream_of(gen) {
                let head = st.hub.store().read_after(&name, EventId::START, 0).await?;
                if head.prefix.as_deref() == Some(gen.as_str()) {
                    return Ok(respond(st.hub.subscribe(&name, &resume).await?, retry));
                }
            }
        }
    }
    // Over the subscriber limit: turn the visitor away before any work starts.
    if !st.hub.has_room() {
        metrics::counter!(crate::metrics::REJECTED, "reason" => "subscriber_limit").increment(1);
        return Ok(respond(Subscribe::Overloaded, retry));
    }
    // A new visitor, or one whose answer is gone: a new answer. A client that
    // sent an id gets `event: reset` before it, so it can clear what it shows.
    let started = st
        .generations
        .start(st.demo.clone(), GenerateRequest::default())
        .await?;
    let from = match resume.raw() {
        None => Resume::Beginning,
        Some(raw) => Resume::Invalid(raw),
    };
    Ok(respond(
        st.hub.subscribe(&started.stream_name, &from).await?,
        retry,
    ))
}
