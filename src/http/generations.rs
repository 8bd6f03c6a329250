//! `/v1/generations`: start and cancel model generations.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::sse::{accepts_event_stream, respond};
use super::AppState;
use crate::backend::{GenerateRequest, Message};
use crate::generation::Started;
use crate::hub::Resume;

/// A generation request: a `prompt` or `messages`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGeneration {
    /// A plain prompt.
    pub prompt: Option<String>,
    /// A conversation.
    pub messages: Option<Vec<Message>>,
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
    responses(
        (status = 201, body = Started, description = "Started; read its stream at `stream`"),
        (status = 200, content_type = "text/event-stream", description = "With `Accept: text/event-stream`: the generation's stream itself; its id is in the `x-generation-id` header"),
        (status = 400, description = "Neither prompt nor messages, or a bad body"),
        (status = 503, description = "Too many streams"),
    ))]
pub async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
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
    let request = GenerateRequest {
        prompt: req.prompt.filter(|_| !has_messages),
        messages: req.messages.filter(|_| has_messages),
        model: req.model,
        options: req.options,
    };
    let started = st.generations.start(st.backend.clone(), request).await?;
    let wants_stream = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream") && accepts_event_stream(a));
    if wants_stream {
        let sub = st
            .hub
            .subscribe(&started.stream_name, &Resume::Beginning)
            .await?;
        let mut res = respond(sub, st.hub.config().retry_ms);
        if let Ok(v) = HeaderValue::from_str(&started.id) {
            res.headers_mut().insert("x-generation-id", v);
        }
        return Ok(res);
    }
    Ok((StatusCode::CREATED, Json(started)).into_response())
}

/// `POST /v1/generations/{id}/cancel`: stop a generation now.
#[utoipa::path(post, path = "/v1/generations/{id}/cancel", tag = "generations",
    params(("id" = String, Path, description = "Generation id")),
    responses(
        (status = 202, body = Cancelled, description = "Stopping; the stream ends with `done` (`done_reason: cancelled`)"),
        (status = 404, description = "No running generation with that id (on this node, or with a shared store on any node)"),
    ))]
pub async fn cancel(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
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
