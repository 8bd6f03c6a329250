//! Request bodies must arrive within `--body-read-timeout-secs` of their
//! request head, or the request is answered `408` and its connection closed.
//!
//! hyper hands a request on as soon as its head is in, and a handler's body
//! extractor then waits for the body as long as the client takes. Without a
//! deadline, a client trickling a body up to the size limit holds that much
//! memory and its connection for as long as it likes, and a hundred of them
//! hold a hundred times that (docs/security.md). So this layer reads the
//! body under a deadline and hands the handler a body that is already
//! complete.
//!
//! The deadline is stamped on the request by the accept loop the moment the
//! head arrives ([`BodyDeadline`]), and only on requests that have a body:
//! event streams (`GET`) pass through untouched. The size limit stays where
//! it was, with axum's `DefaultBodyLimit` and the handler's extractor: this
//! layer stops reading one byte past `limit` and passes on what it read, so
//! an oversized body gets the same `413` as before, without rill reading the
//! rest of it.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Version};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures_util::StreamExt;
use tokio::time::Instant;

use super::error::ApiError;

/// When a request's body must be complete; set by the accept loop on every
/// request that has a body, read by [`read_within`].
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline {
    /// The moment the body must have arrived by.
    pub at: Instant,
    /// The timeout it was computed from, for the error message.
    pub timeout: Duration,
}

impl BodyDeadline {
    /// A deadline `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        Self {
            at: Instant::now() + timeout,
            timeout,
        }
    }
}

/// Middleware (`axum::middleware::from_fn_with_state(limit, read_within)`):
/// reads the body of a request that carries a [`BodyDeadline`] into memory,
/// at most `limit + 1` bytes, before the handler runs.
pub async fn read_within(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let Some(deadline) = req.extensions().get::<BodyDeadline>().copied() else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    match read(body, limit, deadline.at).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(Unread::TimedOut) => {
            let mut res = ApiError::BodyTimeout(deadline.timeout).into_response();
            // The rest of the body may still be on its way; HTTP/1.1 cannot
            // tell it from the next request, so the connection must go.
            // (HTTP/2 ends just this stream; hyper resets it.)
            if parts.version <= Version::HTTP_11 {
                res.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            res
        }
        Err(Unread::Broken(e)) => {
            ApiError::BadRequest(format!("the request body could not be read: {e}")).into_response()
        }
    }
}

/// Why a body was not read.
enum Unread {
    /// The deadline passed first.
    TimedOut,
    /// The client went away or broke the framing.
    Broken(axum::Error),
}

/// The body's bytes, read by `deadline`: all of them, or the first chunks
/// that add up to more than `limit` (the handler refuses those).
async fn read(body: Body, limit: usize, deadline: Instant) -> Result<Bytes, Unread> {
    // Data frames only: trailers are dropped, as no route reads them.
    let mut data = body.into_data_stream();
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    while len <= limit {
        match tokio::time::timeout_at(deadline, data.next()).await {
            Err(_) => return Err(Unread::TimedOut),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(Unread::Broken(e)),
            Ok(Some(Ok(chunk))) => {
                len = len.saturating_add(chunk.len());
                chunks.push(chunk);
            }
        }
    }
    Ok(concat(chunks, len))
}

/// One buffer of `chunks`; a body that came in one chunk (most small
/// publishes) is passed on without a copy.
fn concat(mut chunks: Vec<Bytes>, len: usize) -> Bytes {
    if chunks.len() <= 1 {
        return chunks.pop().unwrap_or_default();
    }
    let mut all = BytesMut::with_capacity(len);
    for c in &chunks {
        all.extend_from_slice(c);
    }
    all.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(parts: &[&'static str]) -> Body {
        let chunks = parts
            .iter()
            .map(|p| Ok::<_, std::io::Error>(Bytes::from(*p)));
        Body::from_stream(futures_util::stream::iter(chunks.collect::<Vec<_>>()))
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn a_whole_body_is_read_into_one_buffer() {
        let got = read(chunked(&["ab", "cd", "e"]), 100, soon()).await;
        assert_eq!(got.ok().as_deref(), Some(&b"abcde"[..]));
    }

    #[tokio::test]
    async fn reading_stops_past_the_limit() {
        let got = read(chunked(&["abc", "def", "ghi", "jkl"]), 4, soon()).await;
        // More than the limit, so the extractor refuses it; not all of it.
        assert_eq!(got.ok().as_deref(), Some(&b"abcdef"[..]));
    }

    #[tokio::test]
    async fn a_body_that_never_ends_times_out() {
        let never = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
        let deadline = Instant::now() + Duration::from_millis(50);
        let got = read(Body::from_stream(never), 100, deadline).await;
        assert!(matches!(got, Err(Unread::TimedOut)));
    }
}
