//! From a subscription to an HTTP response, and the request parts every
//! event-stream route reads: `Accept` and the resume position.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::error::ApiError;
use crate::hub::{Out, Reset, Resume, Subscribe, Subscription};
use crate::ids::WireId;
use crate::sse::{encode_event, encode_retry, EventType, KEEPALIVE};
use crate::store::StoreError;

/// The content type of every event stream. The charset is what the spec
/// requires anyway; saying it keeps clients that default to Latin-1 from
/// garbling text.
pub const EVENT_STREAM: &str = "text/event-stream; charset=utf-8";

/// The `lastEventId` query parameter of `uri`: the last one when it is
/// repeated (some reconnecting clients append one per attempt).
pub fn last_event_id_param(uri: &Uri) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .filter(|(k, _)| k == "lastEventId")
        .map(|(_, v)| v.into_owned())
        .last()
}

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

/// Sets the headers of an event stream. `no-transform` asks proxies and
/// CDNs not to compress or rewrite it: a compressor holds events back
/// until its block fills.
pub fn stream_headers(res: &mut Response) {
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(EVENT_STREAM));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

/// An event-stream response of `body` alone (a `retry:` and a close).
fn retry_only(body: Bytes) -> Response {
    let mut res = Response::new(Body::from(body));
    stream_headers(&mut res);
    res
}

/// The response for a subscribe outcome.
pub fn respond(outcome: Subscribe, retry_ms: u64) -> Response {
    match outcome {
        Subscribe::Stream(sub) => stream_response(*sub),
        // 204 is the one status that stops a browser's EventSource politely.
        Subscribe::FullyRead => StatusCode::NO_CONTENT.into_response(),
        // Any status but 200 would make EventSource give up for good; tell
        // it to come back later instead.
        Subscribe::Overloaded => overloaded(retry_ms),
    }
}

/// `200`, a long `retry:` and a close: the answer to a subscriber over a
/// limit.
pub fn overloaded(retry_ms: u64) -> Response {
    retry_only(encode_retry(retry_ms.max(1000) * 5))
}

/// The response when the store cannot be read: `200`, a jittered `retry:`
/// and a clean close, so a browser comes back and resumes rather than giving
/// up on a 5xx.
pub fn store_unavailable(retry_ms: u64) -> Response {
    use rand::Rng;
    let ms = rand::rng().random_range(retry_ms..=retry_ms.saturating_mul(2).max(retry_ms));
    retry_only(encode_retry(ms))
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

/// The bytes of one piece of a subscriber's response.
pub fn encode_out(out: Out) -> Bytes {
    match out {
        Out::Events { bytes, .. } => bytes,
        Out::KeepAlive => Bytes::from_static(KEEPALIVE),
        Out::Retry(ms) | Out::Close(ms) => encode_retry(ms),
        Out::Reset(reset) => encode_reset(&reset),
    }
}

/// `event: reset` with what was missed, as JSON.
pub fn encode_reset(reset: &Reset) -> Bytes {
    let body = serde_json::json!({
        "reason": reset.reason,
        "requested": reset.requested,
        "missed": reset.missed,
        "resume_from": reset.resume_from,
    });
    let kind = EventType::new("reset").ok();
    encode_event(Some(&reset.resume_from), kind.as_ref(), &body.to_string())
}

/// A subscription a response carries for the parked delivery path: it
/// takes the subscription out before the body is ever polled, writes the
/// response head itself and serves the stream from its own writer. Taken
/// by no one, the body streams it as usual (HTTP/2, TLS, the hyper path).
#[derive(Clone)]
pub struct Parkable(Arc<Mutex<Option<Subscription>>>);

impl Parkable {
    /// The subscription, unless the body has started streaming it.
    pub fn take(&self) -> Option<Subscription> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Streams a subscription as the response body (see [`Parkable`]).
pub fn stream_response(sub: Subscription) -> Response {
    let shared = Arc::new(Mutex::new(Some(sub)));
    let parkable = Parkable(shared.clone());
    let body = futures_util::stream::unfold(
        (Parkable(shared), None::<Subscription>),
        |(slot, sub)| async move {
            let mut sub = match sub {
                Some(sub) => sub,
                None => slot.take()?,
            };
            let out = sub.next().await?;
            Some((Ok::<_, Infallible>(encode_out(out)), (slot, Some(sub))))
        },
    );
    let mut res = Response::new(Body::from_stream(body));
    stream_headers(&mut res);
    res.extensions_mut().insert(parkable);
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
        let uri: Uri = "/s?lastEventId=1&x=y&lastEventId=a%2Eb.7".parse().unwrap();
        assert_eq!(last_event_id_param(&uri).as_deref(), Some("a.b.7"));
        let uri: Uri = "/s?x=1".parse().unwrap();
        assert_eq!(last_event_id_param(&uri), None);
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
