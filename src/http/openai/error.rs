//! Errors in OpenAI's shape, so the official SDKs raise the exception class
//! a caller expects: `{"error": {"message", "type", "param", "code"}}`, with
//! the status that picks the class (`400` BadRequestError, `401`
//! AuthenticationError, `403` PermissionDeniedError, `404` NotFoundError,
//! `422` UnprocessableEntityError, `429` RateLimitError, `5xx`
//! InternalServerError).
//!
//! The SDKs retry `408`, `409`, `429` and `5xx` on their own, and send no
//! idempotency key: a retried start would start a second generation. So an
//! error after which a retry cannot help says `x-should-retry: false`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::generation::policy::PolicyError;
use crate::generation::StartError;
use crate::http::error::ApiError;
use crate::store::StoreError;

/// An error answer of an OpenAI-shaped route.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct OpenAiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// For people.
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `not_found_error`, ...
    pub kind: &'static str,
    /// The request field at fault.
    pub param: Option<String>,
    /// A stable code.
    pub code: Option<String>,
    /// Whether the SDK may retry (`None`: as it decides by status).
    pub retry: Option<bool>,
}

impl OpenAiError {
    /// A `400 invalid_request_error` about `param`.
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message).with_param(param)
    }

    /// A `404 not_found_error`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found_error", message).with_code("not_found")
    }

    /// An error of `status` and `kind`.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry: None,
        }
    }

    /// With `param`.
    pub fn with_param(mut self, param: Option<&str>) -> Self {
        self.param = param.map(str::to_owned);
        self
    }

    /// With `code`.
    pub fn with_code(mut self, code: &str) -> Self {
        self.code = Some(code.to_owned());
        self
    }

    /// Says the SDK must not retry.
    pub fn final_answer(mut self) -> Self {
        self.retry = Some(false);
        self
    }

    /// The `{"error": {...}}` body, also sent mid-stream.
    pub fn body(&self) -> Value {
        body(
            &self.message,
            self.kind,
            self.param.as_deref(),
            self.code.as_deref(),
        )
    }
}

/// OpenAI's error body.
pub fn body(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Value {
    json!({ "error": { "message": message, "type": kind, "param": param, "code": code } })
}

impl From<ApiError> for OpenAiError {
    fn from(e: ApiError) -> Self {
        let message = e.to_string();
        let (status, kind) = (e.status(), e.kind());
        let err = |t: &'static str| OpenAiError::new(status, t, message.clone()).with_code(kind);
        match e {
            // OpenAI answers an unknown or unavailable model with 404.
            ApiError::Policy(PolicyError::Model { .. }) => {
                OpenAiError::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
                    .with_param(Some("model"))
                    .with_code("model_not_found")
            }
            ApiError::Policy(PolicyError::Option { name, .. }) => {
                err("invalid_request_error").with_param(Some(&name))
            }
            ApiError::Policy(PolicyError::Choices) => {
                err("invalid_request_error").with_param(Some("n"))
            }
            ApiError::Policy(PolicyError::OutputTokens { name, .. }) => {
                err("invalid_request_error").with_param(Some(&name))
            }
            ApiError::TooMany(_) => OpenAiError::new(status, "rate_limit_error", message)
                .with_code("rate_limit_exceeded"),
            ApiError::NotFound(_) => err("not_found_error"),
            ApiError::Forbidden(_) => err("permission_error"),
            ApiError::Store(StoreError::KeyReused(_)) => err("invalid_request_error"),
            ApiError::Store(_) => err("server_error"),
            _ if status.is_server_error() => err("server_error"),
            _ => err("invalid_request_error"),
        }
    }
}

impl From<StartError> for OpenAiError {
    fn from(e: StartError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<StoreError> for OpenAiError {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let reason = self.code.clone().unwrap_or_else(|| self.kind.to_owned());
        metrics::counter!(crate::metrics::REJECTED, "reason" => reason).increment(1);
        let mut res = (self.status, Json(self.body())).into_response();
        let h = res.headers_mut();
        if matches!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if let Some(retry) = self.retry {
            let v = if retry { "true" } else { "false" };
            h.insert("x-should-retry", HeaderValue::from_static(v));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_errors_name_their_field() {
        let e: OpenAiError = ApiError::Policy(PolicyError::Model {
            model: "x".into(),
            allowed: "m".into(),
        })
        .into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert_eq!(e.body()["error"]["code"], "model_not_found");
        assert_eq!(e.body()["error"]["param"], "model");
        let e: OpenAiError = ApiError::Policy(PolicyError::Choices).into();
        assert_eq!(
            (e.status, e.param.as_deref()),
            (StatusCode::BAD_REQUEST, Some("n"))
        );
        let e: OpenAiError = ApiError::TooMany("busy".into()).into();
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.kind, "rate_limit_error");
    }
}
