//! `/v1/generations`: start and cancel model generations.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::sse::{accepts_event_stream, respond};
use super::streams::{check_generation, idempotency_key};
use super::AppState;
use crate::auth::{Grant, Right};
use crate::backend::chat::ToolSpec;
use crate::backend::{GenerateRequest, Message, Tool, ToolChoice};
use crate::generation::{Generations, Lifetime, Started, Starter};
use crate::hub::Resume;
use crate::store::Fnv;

/// A generation request: a `prompt` or `messages`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGeneration {
    /// A plain prompt.
    pub prompt: Option<String>,
    /// A conversation: `system`, `user` and `assistant` turns (an assistant
    /// turn may carry the `tool_calls` it made), and `tool` results naming
    /// the call they answer in `tool_call_id`.
    pub messages: Option<Vec<Message>>,
    /// Functions the model may call, as OpenAI's chat API writes them:
    /// `{"type": "function", "function": {"name", "description", "parameters"}}`.
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    /// `auto` (the default), `none`, `required`, or
    /// `{"type": "function", "function": {"name": ...}}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub tool_choice: Option<serde_json::Value>,
    /// The model; the server's `--model` when absent.
    pub model: Option<String>,
    /// Sampling options (`temperature`, `top_p`, `max_tokens`, ...), passed
    /// to the model server.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

/// The answer to a cancel.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Cancelled {
    /// The generation.
    pub id: String,
    /// Always true: the generation was running and is stopping.
    pub cancelled: bool,
}

/// `POST /v1/generations`: start a generation.
#[utoipa::path(post, path = "/v1/generations", tag = "generations",
    request_body = CreateGeneration,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry: a retry with the same key (within retention) gets the generation the first attempt started")),
    responses(
        (status = 201, body = Started, description = "Started; read its stream at `stream`"),
        (status = 200, content_type = "text/event-stream", description = "With `Accept: text/event-stream`: the generation's stream itself; its id is in the `x-generation-id` header"),
        (status = 400, description = "Neither prompt nor messages, a bad body, or a model, option or output length the server does not allow"),
        (status = 415, description = "The body is not JSON"),
        (status = 422, description = "The Idempotency-Key was already used for a different request"),
        (status = 429, description = "Too many generations running, on this node or for this subject; see Retry-After"),
        (status = 503, description = "Too many streams, or the store is unavailable"),
    ))]
pub async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
    grant: Option<Extension<Grant>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !is_json(&headers) {
        return Err(ApiError::UnsupportedMediaType(
            "send the generation request as JSON, with `Content-Type: application/json`".into(),
        ));
    }
    let req: CreateGeneration = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "expected JSON {{\"prompt\": \"...\"}} or {{\"messages\": [...]}}: {e}"
        ))
    })?;
    let has_prompt = req.prompt.as_deref().is_some_and(|p| !p.trim().is_empty());
    let has_messages = req.messages.as_ref().is_some_and(|m| !m.is_empty());
    if !has_prompt && !has_messages {
        return Err(ApiError::BadRequest(
            "give a non-empty `prompt` or `messages`".into(),
        ));
    }
    let tools = req
        .tools
        .into_iter()
        .map(Tool::try_from)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let tool_choice = match req.tool_choice {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(ToolChoice::parse(&v).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "`tool_choice` must be \"auto\", \"none\", \"required\" or {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}, not {v}"
            ))
        })?),
    };
    let mut request = GenerateRequest {
        prompt: req.prompt.filter(|_| !has_messages),
        messages: req.messages.filter(|_| has_messages),
        model: req.model,
        options: req.options,
        max_output_tokens: None,
        tools,
        tool_choice,
    };
    st.policy.apply(&mut request, &st.backend.default_model())?;
    let starter = starter(grant.as_deref(), peer.map(|Extension(ConnectInfo(a))| a));
    let key = idempotency_key(&headers, || {
        let mut fingerprint = Fnv::default();
        fingerprint.write(&body);
        fingerprint.0
    })?;
    let started = st
        .generations
        .start(
            st.backend.clone(),
            request,
            &starter,
            key.as_ref(),
            Lifetime::Listened,
        )
        .await?;
    let wants_stream = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream") && accepts_event_stream(a));
    let mut res = if wants_stream {
        let sub = st
            .hub
            .subscribe(&started.stream_name, &Resume::Beginning)
            .await?;
        let mut res = respond(sub, st.hub.config().retry_ms);
        if let Ok(v) = HeaderValue::from_str(&started.id) {
            res.headers_mut().insert("x-generation-id", v);
        }
        res
    } else {
        (StatusCode::CREATED, Json(started.clone())).into_response()
    };
    if !started.fresh {
        res.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(res)
}

/// Whether the request says its body is JSON.
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || m.ends_with("+json")
        })
}

/// Who starts a generation: the token's subject, or without auth the
/// client's address (for the per-starter cap only).
pub fn starter(grant: Option<&Grant>, peer: Option<SocketAddr>) -> Starter {
    match grant.and_then(|g| g.claims.sub.clone()) {
        Some(sub) => Starter {
            key: format!("sub:{sub}"),
            sub: Some(sub),
        },
        None => Starter {
            sub: None,
            key: peer.map_or_else(|| "-".to_owned(), |a| format!("ip:{}", a.ip())),
        },
    }
}

/// `POST /v1/generations/{id}/cancel`: stop a generation now.
#[utoipa::path(post, path = "/v1/generations/{id}/cancel", tag = "generations",
    params(("id" = String, Path, description = "Generation id")),
    responses(
        (status = 202, body = Cancelled, description = "Stopping; the stream ends with `done` (`done_reason: cancelled`)"),
        (status = 403, description = "With auth on: the generation belongs to another subject"),
        (status = 404, description = "No running generation with that id (on this node, or with a shared store on any node)"),
    ))]
pub async fn cancel(
    State(st): State<AppState>,
    Path(id): Path<String>,
    grant: Option<Extension<Grant>>,
) -> Result<Response, ApiError> {
    let name = Generations::stream_of(&id)
        .map_err(|_| ApiError::NotFound(format!("no running generation {id}")))?;
    check_generation(&st, &name, grant.as_deref(), Right::Publish).await?;
    if st.generations.cancel_anywhere(&id).await? {
        Ok((
            StatusCode::ACCEPTED,
            Json(Cancelled {
                id,
                cancelled: true,
            }),
        )
            .into_response())
    } else {
        Err(ApiError::NotFound(format!("no running generation {id}")))
    }
}
