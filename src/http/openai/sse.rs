//! OpenAI's event-stream framing, which the official SDKs read more
//! strictly than a browser does.
//!
//! - One JSON document on one `data:` line per event (JSON text never holds
//!   a raw line break), each event ending in a blank line.
//! - Chat chunks are `data:` alone; Responses events carry `event: <type>`
//!   too, as OpenAI sends them. Chat ends with `data: [DONE]`.
//! - No `id:` and no `retry:` lines: the Python SDK keeps a last event id
//!   once it has seen one, and then takes any later blank line for an event
//!   with empty data, which it cannot parse. Resuming is done by
//!   `sequence_number` (Responses) or by reading the generation's own stream.
//! - Keep-alives are comment lines, never an `event:` without data.
//!
//! [`body`] drives a generation's [`Feed`] through a translation into such a
//! response body.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::stream;
use serde_json::Value;

use super::feed::{Feed, Read};
use crate::http::sse::EVENT_STREAM;
use crate::sse::KEEPALIVE;

/// The chat stream's last event.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// `data: <json>` and a blank line.
pub fn data(json: &Value) -> Bytes {
    let text = json.to_string();
    let mut buf = BytesMut::with_capacity(text.len() + 8);
    buf.extend_from_slice(b"data: ");
    buf.extend_from_slice(text.as_bytes());
    buf.extend_from_slice(b"\n\n");
    buf.freeze()
}

/// `event: <kind>`, `data: <json>` and a blank line. `kind` is one of the
/// fixed event names of the Responses API.
pub fn event(kind: &str, json: &Value) -> Bytes {
    let text = json.to_string();
    let mut buf = BytesMut::with_capacity(text.len() + kind.len() + 16);
    buf.extend_from_slice(b"event: ");
    buf.extend_from_slice(kind.as_bytes());
    buf.extend_from_slice(b"\ndata: ");
    buf.extend_from_slice(text.as_bytes());
    buf.extend_from_slice(b"\n\n");
    buf.freeze()
}

/// What a translation says about one thing read from the generation.
pub struct Step {
    /// Frames to send.
    pub frames: Vec<Bytes>,
    /// Whether the response is over after them.
    pub last: bool,
}

/// A streaming response: `opening`, then what `translate` makes of each
/// thing `feed` reads, until it says the response is over or the feed ends.
/// Frames of one read go out in one write.
pub fn body<F>(feed: Feed, opening: Vec<Bytes>, translate: F) -> Response
where
    F: FnMut(Read) -> Step + Send + 'static,
{
    struct State<F> {
        feed: Feed,
        queue: VecDeque<Bytes>,
        over: bool,
        translate: F,
    }
    let state = State {
        feed,
        queue: VecDeque::from(opening),
        over: false,
        translate,
    };
    let frames = stream::unfold(state, |mut s| async move {
        loop {
            if !s.queue.is_empty() {
                let mut joined = BytesMut::new();
                for frame in s.queue.drain(..) {
                    joined.extend_from_slice(&frame);
                }
                return Some((Ok::<_, Infallible>(joined.freeze()), s));
            }
            if s.over {
                return None;
            }
            let read = s.feed.next().await?;
            let step = match read {
                Read::KeepAlive => Step {
                    frames: vec![Bytes::from_static(KEEPALIVE)],
                    last: false,
                },
                other => (s.translate)(other),
            };
            s.queue.extend(step.frames);
            s.over = step.last;
        }
    });
    let mut res = Response::new(Body::from_stream(frames));
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(EVENT_STREAM));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_one_line_of_json() {
        let v = serde_json::json!({"delta": "a\nb\r\nc"});
        assert_eq!(&data(&v)[..], b"data: {\"delta\":\"a\\nb\\r\\nc\"}\n\n");
        let e = event("response.created", &serde_json::json!({"a": 1}));
        assert_eq!(&e[..], b"event: response.created\ndata: {\"a\":1}\n\n");
    }
}
