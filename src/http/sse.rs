//! From a subscription to an HTTP response, and the request parts every
//! event-stream route reads: `Accept` and the resume position.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::hub::{Resume, Subscribe, Subscription};
use crate::ids::WireId;
use crate::sse::encode_retry;
use crate::store::StoreError;

/// Reads where the client resumes: `Last-Event-ID` (a reconnecting browser
/// sends it), else the `lastEventId` query parameter (a first connection).
pub fn resume_from(headers: &HeaderMap, query: Option<&str>) -> Resume {
    let raw = headers
        .get("last-event-id")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .or_else(|| query.map(str::to_owned));
    match raw {
        None => Resume::Live,
        Some(s) if s.trim().is_empty() => Resume::Live,
        Some(s) => match s.parse::<WireId>() {
            Ok(w) => Resume::From(w),
            Err(_) => Resume::Invalid(s),
        },
    }
}

/// Refuses requests whose `Accept` admits neither `text/event-stream` nor a
/// wildcard that covers it.
pub fn negotiate(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(accept) = headers.get(header::ACCEPT) else {
        return Ok(());
    };
    let accept = String::from_utf8_lossy(accept.as_bytes());
    if accept.trim().is_empty() || accepts_event_stream(&accept) {
        Ok(())
    } else {
        Err(ApiError::NotAcceptable)
    }
}

/// Whether an `Accept` value admits `text/event-stream` with q > 0.
pub fn accepts_event_stream(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q_zero = parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .or_else(|| p.strip_prefix("Q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        !q_zero && matches!(media.as_str(), "text/event-stream" | "text/*" | "*/*")
    })
}

fn stream_headers(res: &mut Response) {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

/// The response for a subscribe outcome.
pub fn respond(outcome: Subscribe, retry_ms: u64) -> Response {
    match outcome {
        Subscribe::Stream(sub) => stream_response(*sub),
        // 204 is the one status that stops a browser's EventSource politely.
        Subscribe::FullyRead => StatusCode::NO_CONTENT.into_response(),
        // Any status but 200 would make EventSource give up for good; tell
        // it to come back later instead.
        Subscribe::Overloaded => {
            let mut res = Response::new(Body::from(encode_retry(retry_ms.max(1000) * 5)));
            stream_headers(&mut res);
            res
        }
    }
}

/// The response when the store cannot be read: `200`, a jittered `retry:`
/// and a clean close, so a browser comes back and resumes rather than giving
/// up on a 5xx.
pub fn store_unavailable(retry_ms: u64) -> Response {
    use rand::Rng;
    let ms = rand::rng().random_range(retry_ms..=retry_ms.saturating_mul(2).max(retry_ms));
    let mut res = Response::new(Body::from(encode_retry(ms)));
    stream_headers(&mut res);
    res
}

/// Turns "the store is unavailable" into [`store_unavailable`]'s answer
/// for routes a browser's `EventSource` opens; other errors pass.
pub fn retry_if_unavailable(
    answer: Result<Response, ApiError>,
    retry_ms: u64,
) -> Result<Response, ApiError> {
    match answer {
        Err(ApiError::Store(StoreError::Unavailable(e))) => {
            tracing::warn!(error = %e, "store unavailable; asking the client to retry");
            Ok(store_unavailable(retry_ms))
        }
        other => other,
    }
}

/// Streams a subscription as the response body.
pub fn stream_response(sub: Subscription) -> Response {
    let body = futures_util::stream::unfold(sub, |mut sub| async move {
        let chunk = sub.next_chunk().await?;
        Some((Ok::<_, Infallible>(chunk), sub))
    });
    let mut res = Response::new(Body::from_stream(body));
    stream_headers(&mut res);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        for ok in [
            "text/event-stream",
            "*/*",
            "text/*",
            "text/html, */*;q=0.1",
            "TEXT/EVENT-STREAM",
            "application/json, text/event-stream;q=0.5",
        ] {
            assert!(accepts_event_stream(ok), "{ok}");
        }
        for bad in [
            "application/json",
            "text/html",
            "text/event-stream;q=0",
            "*/*;q=0.0",
        ] {
            assert!(!accepts_event_stream(bad), "{bad}");
        }
    }

    #[test]
    fn resume_prefers_the_header() {
        let mut h = HeaderMap::new();
        assert_eq!(resume_from(&h, None), Resume::Live);
        assert!(matches!(resume_from(&h, Some("4")), Resume::From(_)));
        h.insert("last-event-id", HeaderValue::from_static("abc.7"));
        let r = resume_from(&h, Some("4"));
        assert_eq!(r.raw().as_deref(), Some("abc.7"));
        h.insert("last-event-id", HeaderValue::from_static("nope"));
        assert_eq!(resume_from(&h, None), Resume::Invalid("nope".into()));
    }
}
