//! Every error a request can meet, and the one place it becomes a status.
//!
//! Bodies are JSON: `{"error": "<kind>", "message": "<what to do>"}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::generation::policy::PolicyError;
use crate::generation::StartError;
use crate::ids::NameError;
use crate::sse::FieldError;
use crate::store::StoreError;

/// An error answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// A name or id does not follow its grammar.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A field value would break the event framing.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// `Accept` admits no event stream.
    #[error("this route answers text/event-stream; send `Accept: text/event-stream` (or */*)")]
    NotAcceptable,
    /// The event is larger than the limit.
    #[error("event data is {size} bytes; the limit is {limit} (--max-event-bytes)")]
    TooLarge {
        /// Bytes sent.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Nothing by that name.
    #[error("{0}")]
    NotFound(String),
    /// The store said no.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request conflicts with the state of what it names.
    #[error("{0}")]
    Conflict(String),
    /// The body's media type is not one this route reads.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The caller may not do this to what it names.
    #[error("{0}")]
    Forbidden(String),
    /// The request asks the model for more than the operator allows.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A cap on running generations is reached; retry later.
    #[error("{0}")]
    TooMany(String),
    /// The request body did not arrive in full within the timeout.
    #[error("the request body did not arrive within {} s (--body-read-timeout-secs)", .0.as_secs())]
    BodyTimeout(std::time::Duration),
}

impl From<StartError> for ApiError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::Store(e) => ApiError::Store(e),
            e @ StartError::TooMany { .. } => ApiError::TooMany(e.to_string()),
        }
    }
}

impl ApiError {
    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Name(_) | ApiError::Field(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Policy(_) => StatusCode::BAD_REQUEST,
            ApiError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Store(StoreError::KeyReused(_)) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Store(StoreError::Full { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Store(StoreError::Finished(_)) => StatusCode::CONFLICT,
            ApiError::Store(StoreError::Exists(_)) => StatusCode::CONFLICT,
            ApiError::Store(StoreError::TooManyStreams(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(StoreError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A short name for the error, in bodies and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Name(_) => "bad_name",
            ApiError::Field(_) => "bad_field",
            ApiError::NotAcceptable => "not_acceptable",
            ApiError::TooLarge { .. } => "too_large",
            ApiError::NotFound(_) => "not_found",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Conflict(_) => "conflict",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Policy(PolicyError::Model { .. }) => "model_not_allowed",
            ApiError::Policy(PolicyError::Option { .. }) => "option_not_allowed",
            ApiError::Policy(PolicyError::Choices) => "one_choice_only",
            ApiError::Policy(PolicyError::OutputTokens { .. }) => "output_tokens",
            ApiError::TooMany(_) => "too_many_generations",
            ApiError::Store(StoreError::KeyReused(_)) => "idempotency_key_reused",
            ApiError::Store(StoreError::Full { .. }) => "store_full",
            ApiError::BodyTimeout(_) => "body_timeout",
            ApiError::Store(StoreError::Finished(_)) => "stream_finished",
            ApiError::Store(StoreError::Exists(_)) => "exists",
            ApiError::Store(StoreError::TooManyStreams(_)) => "too_many_streams",
            ApiError::Store(StoreError::Unavailable(_)) => "store_unavailable",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        metrics::counter!(crate::metrics::REJECTED, "reason" => self.kind()).increment(1);
        let body = serde_json::json!({ "error": self.kind(), "message": self.to_string() });
        let mut res = (status, Json(body)).into_response();
        if matches!(
            status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        res
    }
}
