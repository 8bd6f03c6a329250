//! The HTTP side shared by the model-server back-ends.
//!
//! Both `ollama` and `openai` POST a JSON body and read a streamed answer.
//! What they share lives here: checking the configured base URL once at
//! start-up, sending the request and turning every way it can fail before
//! the first byte (refused connection, error status) into a
//! [`BackendError`], and reading the body as a stream of bytes whose read
//! errors are errors too. Dropping the returned body stream drops the
//! upstream connection, which is how cancellation reaches the model server.

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use reqwest::{Client, RequestBuilder, Url};

use super::BackendError;

/// Most bytes of an error body kept for the error message.
const ERROR_BODY_LIMIT: usize = 512;

/// The configured base URL is not usable.
#[derive(Debug, thiserror::Error)]
#[error("--backend-url `{url}` is not a usable http(s) URL: {reason}")]
pub struct BadUrl {
    url: String,
    reason: String,
}

/// A model server's base URL, checked: `http` or `https`, with a host, and
/// without a trailing slash so paths can be appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl(String);

impl BaseUrl {
    /// Checks `url`.
    pub fn parse(url: &str) -> Result<Self, BadUrl> {
        let bad = |reason: &str| BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let parsed = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad("the scheme must be http or https"));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(bad("it has no host"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(bad("it must not have a query or fragment"));
        }
        Ok(Self(parsed.as_str().trim_end_matches('/').to_owned()))
    }

    /// The URL of `path` (which starts with `/`) under this base.
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

/// The HTTP client the back-ends share: connection set-up bounded by
/// `connect_timeout`; the generation runner bounds silence after that.
pub fn client(connect_timeout: std::time::Duration) -> Result<Client, BackendError> {
    Client::builder()
        .connect_timeout(connect_timeout)
        .build()
        .map_err(|e| BackendError::Connect(format!("cannot build the HTTP client: {e}")))
}

/// Sends `request`; an error status becomes [`BackendError::Status`] with
/// the start of the body. With `stream_only`, an `application/json` answer
/// (one document where an event stream was asked for) is a
/// [`BackendError::Protocol`]. Returns the body as a stream of bytes.
pub async fn send(
    request: RequestBuilder,
    stream_only: bool,
) -> Result<impl Stream<Item = Result<Bytes, BackendError>> + Send + 'static, BackendError> {
    let response = request.send().await.map_err(|e| {
        if e.is_timeout() {
            BackendError::Connect(format!("timed out connecting: {}", chain(&e)))
        } else {
            BackendError::Connect(chain(&e))
        }
    })?;
    let status = response.status();
    if !status.is_success() {
        let body = error_body(response).await;
        return Err(BackendError::Status {
            status: status.as_u16(),
            body,
        });
    }
    // A server that ignored `stream: true` answers one JSON document; say
    // so instead of reporting a stream that ended early.
    let is_json = stream_only
        && response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if is_json {
        let body = error_body(response).await;
        return Err(BackendError::Protocol(format!(
            "expected a streamed answer, got one JSON document: {body}"
        )));
    }
    Ok(response
        .bytes_stream()
        .map_err(|e| BackendError::Interrupted(chain(&e))))
}

/// Up to [`ERROR_BODY_LIMIT`] bytes of an error answer, as text.
async fn error_body(response: reqwest::Response) -> String {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(Ok(chunk)) = chunks.next().await {
        body.extend_from_slice(&chunk);
        if body.len() >= ERROR_BODY_LIMIT {
            break;
        }
    }
    body.truncate(ERROR_BODY_LIMIT);
    String::from_utf8_lossy(&body).trim().to_owned()
}

/// An error with its causes, since reqwest's own message is often just
/// "error sending request".
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_joined() {
        let u = BaseUrl::parse("http://127.0.0.1:11434/").unwrap();
        assert_eq!(u.join("/api/chat"), "http://127.0.0.1:11434/api/chat");
        let u = BaseUrl::parse("https://api.openai.com/v1").unwrap();
        assert_eq!(
            u.join("/chat/completions"),
            "https://api.openai.com/v1/chat/completions"
        );
        for bad in ["", "localhost:11434", "ftp://x", "http://", "http://h/?a=1"] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
