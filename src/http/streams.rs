//! `/v1/streams`: publish to, subscribe to, list and end named streams.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::sse::{last_event_id_param, negotiate, respond, resume_from, retry_if_unavailable};
use super::AppState;
use crate::auth::{Grant, Right};
use crate::generation::{Generations, GENERATION_PREFIX};
use crate::ids::{EventId, StreamName};
use crate::sse::EventType;
use crate::store::{Appended, Draft, IdempotencyKey, StreamInfo};

/// Event types rill itself sends, and `error`, which `EventSource` fires
/// for its own connection failures: publishers cannot use them.
pub const RESERVED_EVENT_TYPES: [&str; 3] = ["reset", "end", "error"];

/// The header that makes a publish or a generation start safe to retry.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The `lastEventId` query parameter.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ResumeQuery {
    /// Resume after this id (for a first connection; `Last-Event-ID` wins).
    /// `0` replays everything retained.
    #[serde(rename = "lastEventId")]
    pub last_event_id: Option<String>,
}

/// A JSON publish body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    /// The event data: a string is sent as it is; any other JSON value is
    /// sent as its JSON text.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// The event type (`message` when absent).
    #[schema(min_length = 1)]
    pub event: Option<String>,
}

/// The answer to a publish.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Published {
    /// The event's id, as subscribers see it in `id:`: the stream's
    /// incarnation and the event's number, `<epoch>.<n>`.
    pub id: String,
}

/// The stream list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StreamList {
    /// All streams, by name.
    pub streams: Vec<StreamInfo>,
}

fn stream_name(name: String) -> Result<StreamName, ApiError> {
    Ok(StreamName::new(name)?)
}

/// `GET /v1/streams/{name}`: subscribe (SSE).
#[utoipa::path(get, path = "/v1/streams/{name}", tag = "streams",
    params(("name" = String, Path, description = "Stream name"), ResumeQuery),
    responses(
        (status = 200, description = "Replay after the id, then live events. Over a subscriber limit, or with the store unreachable: only a `retry:` hint, then a clean close.", content_type = "text/event-stream"),
        (status = 204, description = "The stream has ended and the client has read its end"),
        (status = 400, description = "Bad stream name"),
        (status = 403, description = "With auth on: a generation's stream that belongs to another subject"),
        (status = 404, description = "A `gen-*` stream that does not exist (generations create them)"),
        (status = 406, description = "Accept admits no event stream"),
    ))]
pub async fn subscribe(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    grant: Option<Extension<Grant>>,
) -> Result<Response, ApiError> {
    negotiate(&headers)?;
    let name = stream_name(name)?;
    let query = last_event_id_param(&uri);
    let resume = resume_from(&headers, query.as_deref());
    let retry = st.hub.config().retry_ms;
    let answer = async {
        if Generations::id_of(&name).is_some() {
            check_generation(&st, &name, grant.as_deref(), Right::Subscribe).await?;
        }
        let outcome = st.hub.subscribe(&name, &resume).await?;
        super::record_stream(name.as_str(), || {
            st.hub
                .existing_channel(&name)
                .map_or(0, |c| c.subscriber_count())
        });
        tracing::debug!("subscribed");
        Ok(respond(outcome, retry))
    }
    .await;
    retry_if_unavailable(answer, retry)
}

/// `POST /v1/streams/{name}`: publish one event.
#[utoipa::path(post, path = "/v1/streams/{name}", tag = "streams",
    params(("name" = String, Path, description = "Stream name")),
    request_body(content = PublishBody, description = "JSON `{data, event}`, or any UTF-8 text body as the data"),
    responses(
        (status = 201, body = Published),
        (status = 400, description = "Bad name, event type or body; `gen-*` and `_*` streams are written by rill only"),
        (status = 409, description = "The stream has ended"),
        (status = 413, description = "Event larger than --max-event-bytes"),
        (status = 422, description = "The Idempotency-Key was already used for a different event"),
        (status = 503, description = "Too many streams, the store's memory budget is spent, or the store is unavailable; see Retry-After"),
    ))]
pub async fn publish(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let key = headers.get(IDEMPOTENCY_KEY).map(HeaderValue::as_bytes);
    let appended = publish_event(&st, name, content_type, key, &body).await?;
    let mut res = (
        StatusCode::CREATED,
        Json(Published {
            id: appended.wire_id(),
        }),
    )
        .into_response();
    if appended.record.is_none() {
        res.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(res)
}

/// A publish, from what the request says: the stream's name as routed, its
/// content type, its `Idempotency-Key` header, and its body. The one
/// publish, whichever HTTP path the request came by.
pub async fn publish_event(
    st: &AppState,
    name: String,
    content_type: Option<&str>,
    key: Option<&[u8]>,
    body: &[u8],
) -> Result<Appended, ApiError> {
    let name = stream_name(name)?;
    let draft = draft_from_body(content_type, body)?;
    if draft.data.len() > st.max_event_bytes {
        return Err(ApiError::TooLarge {
            size: draft.data.len(),
            limit: st.max_event_bytes,
        });
    }
    if name.as_str().starts_with(GENERATION_PREFIX) || name.as_str().starts_with('_') {
        return Err(ApiError::BadRequest(format!(
            "streams named {GENERATION_PREFIX}* belong to generations and _* to rill; publish elsewhere"
        )));
    }
    super::record_stream(name.as_str(), || {
        st.hub
            .existing_channel(&name)
            .map_or(0, |c| c.subscriber_count())
    });
    let key = match key {
        None => None,
        Some(raw) => Some(checked_key(raw, draft.fingerprint())?),
    };
    Ok(st.hub.publish(&name, &draft, key.as_ref()).await?)
}

/// An `Idempotency-Key` header's value, checked.
fn checked_key(raw: &[u8], fingerprint: u64) -> Result<IdempotencyKey, ApiError> {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|k| IdempotencyKey::new(k, fingerprint))
        .ok_or_else(|| {
            ApiError::BadRequest(
                "Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID is a good choice)"
                    .into(),
            )
        })
}

/// The request's `Idempotency-Key`, with the fingerprint of what it asks.
pub fn idempotency_key(
    headers: &HeaderMap,
    fingerprint: impl FnOnce() -> u64,
) -> Result<Option<IdempotencyKey>, ApiError> {
    match headers.get(IDEMPOTENCY_KEY) {
        None => Ok(None),
        Some(raw) => checked_key(raw.as_bytes(), fingerprint()).map(Some),
    }
}

/// Checks that a generation's stream exists and that `grant` (with auth
/// on) may reach it with `right`: a generation belongs to the `sub` that
/// started it, and otherwise only to tokens granted it by a pattern that
/// names generation streams.
pub async fn check_generation(
    st: &AppState,
    name: &StreamName,
    grant: Option<&Grant>,
    right: Right,
) -> Result<(), ApiError> {
    // Only generations create these streams, so one that does not exist
    // never will: say so instead of waiting forever.
    let head = st
        .hub
        .store()
        .log
        .read_after(name, EventId::START, 0)
        .await?;
    if !head.exists() {
        return Err(ApiError::NotFound(format!(
            "no generation stream {name}: it never existed or has expired"
        )));
    }
    let Some(grant) = grant else {
        return Ok(());
    };
    let owner = head.owner.as_deref();
    if grant.allows(right, name.as_str())
        || (owner.is_some() && grant.claims.sub.as_deref() == owner)
    {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "generation stream {name} belongs to another subject"
    )))
}

/// Reads a publish body: JSON when the content type says so, else text.
pub fn draft_from_body(content_type: Option<&str>, body: &[u8]) -> Result<Draft, ApiError> {
    let is_json = content_type
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || m.ends_with("+json")
        });
    if !is_json {
        let data = std::str::from_utf8(body)
            .map_err(|_| ApiError::BadRequest("the body is not UTF-8 text".into()))?;
        return Ok(Draft::message(data));
    }
    let parsed: PublishBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "expected JSON {{\"data\": ..., \"event\": \"optional-type\"}}: {e}"
        ))
    })?;
    let data = match parsed.data {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    };
    let event_type = match parsed.event {
        None => None,
        Some(t) if t == "error" => {
            return Err(ApiError::BadRequest(
                "event type `error` is what EventSource fires for its own connection failures, so readers would mistake one for the other; name it something else (rill uses `failed`)".into(),
            ))
        }
        Some(t) if RESERVED_EVENT_TYPES.contains(&t.as_str()) => {
            return Err(ApiError::BadRequest(format!(
                "event type `{t}` is reserved for rill ({})",
                RESERVED_EVENT_TYPES.join(", ")
            )))
        }
        Some(t) => Some(EventType::new(t)?),
    };
    Ok(Draft {
        event_type,
        data,
        terminal: false,
    })
}

/// `GET /v1/streams`: list streams.
#[utoipa::path(get, path = "/v1/streams", tag = "streams",
    responses((status = 200, body = StreamList)))]
pub async fn list(
    State(st): State<AppState>,
    grant: Option<Extension<Grant>>,
) -> Result<Json<StreamList>, ApiError> {
    let mut streams = st.hub.list().await?;
    // With auth on, a token sees only the streams it may subscribe to.
    if let Some(Extension(grant)) = grant {
        streams.retain(|s| grant.allows(Right::Subscribe, s.name.as_str()));
    }
    Ok(Json(StreamList { streams }))
}

/// `DELETE /v1/streams/{name}`: end a stream and drop its events.
#[utoipa::path(delete, path = "/v1/streams/{name}", tag = "streams",
    params(("name" = String, Path, description = "Stream name")),
    responses(
        (status = 204, description = "Ended; live subscribers got `event: end` and were closed"),
        (status = 400, description = "Bad stream name"),
        (status = 403, description = "With auth on: a generation's stream that belongs to another subject"),
        (status = 404, description = "No such stream"),
        (status = 409, description = "A generation is still writing the stream; cancel it first"),
    ))]
pub async fn remove(
    State(st): State<AppState>,
    Path(name): Path<String>,
    grant: Option<Extension<Grant>>,
) -> Result<StatusCode, ApiError> {
    let name = stream_name(name)?;
    // Removing it under a running generation would let the generation's
    // next event create a new stream of that name, without its id prefix.
    if let Some(id) = Generations::id_of(&name) {
        check_generation(&st, &name, grant.as_deref(), Right::Publish).await?;
        if st.generations.is_running(id) {
            return Err(ApiError::Conflict(format!(
                "generation {id} is still running; POST /v1/generations/{id}/cancel first"
            )));
        }
    }
    if st.hub.remove(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no stream named {name}")))
    }
}
