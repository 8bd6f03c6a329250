//! `POST /v1/chat/completions`: OpenAI's Chat Completions over a rill
//! generation.
//!
//! With `"stream": true` the answer is the chunk stream of [`wire`], read
//! live from the generation's stream; without, one `chat.completion` object
//! once the generation has ended. Either way the generation is an ordinary
//! one, named in `x-generation-id`: another viewer can read it at
//! `/v1/streams/gen-<id>`, and a client that goes away leaves it to the
//! usual grace period rather than killing it at once.

pub mod request;
pub mod wire;

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::error::OpenAiError;
use super::feed::{Feed, Read};
use super::sse::{self, Step};
use super::{answered, name_generation, now_secs, start, Call};
use crate::auth::Grant;
use crate::generation::Lifetime;
use crate::http::AppState;
use request::ChatRequest;
use wire::{Chunks, Completion, Ids};

/// `POST /v1/chat/completions`.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai",
    request_body(content = Object, description = "OpenAI's Chat Completions request: `model`, `messages` (with tool calls and `tool` results), `tools`, `tool_choice`, `stream`, `stream_options.include_usage`, and sampling fields the server allows (see docs/openai-chat.md)"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry: a retry with the same key gets the generation the first attempt started")),
    responses(
        (status = 200, description = "`chat.completion` JSON, or with `stream: true` the `chat.completion.chunk` event stream ending in `data: [DONE]`; the generation's id is in `x-generation-id`"),
        (status = 400, description = "A malformed request, or an option or output length the server does not allow (OpenAI's error shape)"),
        (status = 401, description = "With auth on: no valid token (`Authorization: Bearer`, where the SDKs put their API key)"),
        (status = 403, description = "With auth on: the token may not start generations"),
        (status = 404, description = "The model is not allowed here (`model_not_found`)"),
        (status = 409, description = "Without `stream`: the generation was cancelled before it finished"),
        (status = 429, description = "Too many generations running; see Retry-After"),
        (status = 502, description = "Without `stream`: the model server failed"),
    ))]
pub async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
    grant: Option<Extension<Grant>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Response {
    let call = Call::new("/v1/chat/completions", &headers, &grant, peer, &body);
    answered(answer(&st, &call).await)
}

async fn answer(st: &AppState, call: &Call<'_>) -> Result<Response, OpenAiError> {
    let req: ChatRequest = call.json()?;
    let (request, delivery) = req.into_generation()?;
    let model = st.backend.model_for(&request);
    let started = start(st, request, call, Lifetime::Listened).await?;
    let ids = Ids {
        id: format!("chatcmpl-{}", started.id),
        created: now_secs(),
        model,
        generation: started.id.clone(),
    };
    let mut feed = Feed::open(st, &started.stream_name).await?;
    let mut res = if delivery.stream {
        let mut chunks = Chunks::new(ids, delivery.include_usage);
        let opening = vec![chunks.opening()];
        sse::body(feed, opening, move |read| match read {
            Read::Event(e) => chunks.on(e),
            Read::Lost(why) => chunks.lost(&why),
            Read::KeepAlive => Step {
                frames: Vec::new(),
                last: false,
            },
        })
    } else {
        let mut completion = Completion::default();
        while let Some(read) = feed.next().await {
            match read {
                Read::Event(e) => completion.add(e),
                Read::KeepAlive => {}
                Read::Lost(_) => break,
            }
        }
        // The error of a failed generation names it too.
        match completion.finish(&ids) {
            Ok(v) => Json(v).into_response(),
            Err(e) => e.into_response(),
        }
    };
    name_generation(&mut res, &started);
    Ok(res)
}
