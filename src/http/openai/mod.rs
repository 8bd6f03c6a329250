//! The OpenAI-compatible routes: `POST /v1/chat/completions` ([`chat`]),
//! the Responses API under `/v1/responses` ([`responses`]) and
//! `GET /v1/models` ([`models`]), so the official SDKs and the apps built on
//! them work against rill unchanged.
//!
//! Each route is a view of an ordinary generation: it starts one with
//! [`Generations::start`](crate::generation::Generations::start) (the same
//! caps, policy, ownership and `Idempotency-Key`), then reads the
//! generation's stream back as typed events ([`feed`]) and writes them in
//! its own wire shape ([`sse`], [`error`]). Nothing about a generation lives
//! in these views: resuming, cancelling, other readers and many nodes all
//! come from the stream. The response names the generation in
//! `x-generation-id`, so its plain event stream stays readable at
//! `/v1/streams/gen-<id>`.

pub mod chat;
pub mod error;
pub mod feed;
pub mod models;
pub mod responses;
pub mod sse;

use std::net::SocketAddr;

use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;

use self::error::OpenAiError;
use super::generations::{is_json, starter};
use super::streams::idempotency_key;
use super::AppState;
use crate::auth::Grant;
use crate::backend::GenerateRequest;
use crate::generation::{Lifetime, Started};
use crate::store::Fnv;

/// Whether route `path` (as routed) answers in OpenAI's shapes, errors
/// from the auth guard included.
pub fn speaks_openai(path: &str) -> bool {
    path == "/v1/chat/completions" || path == "/v1/models" || path.starts_with("/v1/responses")
}

/// What a start needs from the request.
pub struct Call<'a> {
    /// The route, so that one idempotency key cannot start two kinds of
    /// answer.
    pub route: &'static str,
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// The caller's token, with auth on.
    pub grant: Option<&'a Grant>,
    /// The caller's address.
    pub peer: Option<SocketAddr>,
    /// The request body.
    pub body: &'a [u8],
}

impl<'a> Call<'a> {
    /// A request to `route`, from the handler's extractors.
    pub fn new(
        route: &'static str,
        headers: &'a HeaderMap,
        grant: &'a Option<axum::Extension<Grant>>,
        peer: Option<axum::Extension<axum::extract::ConnectInfo<SocketAddr>>>,
        body: &'a [u8],
    ) -> Self {
        Call {
            route,
            headers,
            grant: grant.as_deref(),
            peer: peer.map(|axum::Extension(axum::extract::ConnectInfo(a))| a),
            body,
        }
    }

    /// The body, read as JSON of type `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, OpenAiError> {
        if !is_json(self.headers) {
            return Err(OpenAiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request_error",
                "send the request as JSON, with `Content-Type: application/json`",
            ));
        }
        serde_json::from_slice(self.body)
            .map_err(|e| OpenAiError::invalid(format!("the request body is not valid: {e}"), None))
    }
}

/// An answer, or the error in OpenAI's shape.
pub fn answered(answer: Result<axum::response::Response, OpenAiError>) -> axum::response::Response {
    answer.unwrap_or_else(axum::response::IntoResponse::into_response)
}

/// Checks `request` against the policy and starts it.
pub async fn start(
    st: &AppState,
    mut request: GenerateRequest,
    call: &Call<'_>,
    lifetime: Lifetime,
) -> Result<Started, OpenAiError> {
    st.policy
        .apply(&mut request, &st.backend.default_model())
        .map_err(super::error::ApiError::from)?;
    let starter = starter(call.grant, call.peer);
    let mut fingerprint = Fnv::default();
    fingerprint.write(call.route.as_bytes());
    fingerprint.write(&[0xff]);
    fingerprint.write(call.body);
    let key = idempotency_key(call.headers, || fingerprint.0)?;
    Ok(st
        .generations
        .start(
            st.backend.clone(),
            request,
            &starter,
            key.as_ref(),
            lifetime,
        )
        .await?)
}

/// Names the generation behind `res`: `x-generation-id`, and
/// `idempotent-replayed` when an idempotency key found an earlier start.
pub fn name_generation(res: &mut Response, started: &Started) {
    if let Ok(v) = HeaderValue::from_str(&started.id) {
        res.headers_mut().insert("x-generation-id", v);
    }
    if !started.fresh {
        res.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
