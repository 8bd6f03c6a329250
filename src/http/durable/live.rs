//! `GET /v1/stream/{name}?live=sse`: the protocol's server-sent events.
//!
//! Each batch of events the hub hands this reader becomes one `data` event
//! (text for `text/*` and JSON streams, base64 for the rest) and a
//! `control` event with the offset to resume from. The stream follows the
//! hub like any rill subscriber: replay from the offset, then live. The
//! response ends when the stream closes, and otherwise after
//! [`DurableState::sse_lifetime`](super::DurableState) so that caches in
//! front can collapse readers; the client goes on from its last offset.

use std::convert::Infallible;

use axum::body::{Body as HttpBody, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{answer, set, Stream, SSE_ENCODING};
use crate::durable::message::{decode_event, Body, View, MAX_LINE};
use crate::durable::now_ms;
use crate::durable::offset;
use crate::http::AppState;
use crate::hub::{Out, Resume, Subscribe};
use crate::ids::{EventId, WireId};
use crate::sse::Parser;

/// Drains the events `frames` has parsed into a body, as `view` reads
/// them; returns it with the id of the last event (or `after` if none).
pub fn pieces(view: View, frames: &mut Parser, after: EventId) -> (Body, EventId) {
    let mut body = Body::default();
    let mut next = after;
    while let Some(ev) = frames.next_event() {
        if let Ok(w) = ev.last_event_id.parse::<WireId>() {
            next = next.max(w.id);
        }
        body.push(decode_event(view, ev));
    }
    (body, next)
}

/// Answers with the SSE stream of `s` after `after`.
pub fn serve(st: AppState, s: Stream, after: EventId, cursor: Option<String>) -> Response {
    let base64 = s.attrs.as_ref().is_some_and(|a| !a.sse_text());
    let mut h = HeaderMap::new();
    set(&mut h, header::CONTENT_TYPE, "text/event-stream");
    set(&mut h, header::CACHE_CONTROL, "no-cache");
    if base64 {
        set(&mut h, SSE_ENCODING, "base64");
    }
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    tokio::spawn(async move {
        let mut tail = Tail {
            st,
            s,
            last: after,
            cursor,
            base64,
            tx,
        };
        tail.run().await;
    });
    let body = HttpBody::from_stream(ReceiverStream::new(rx).map(Ok::<_, Infallible>));
    answer(StatusCode::OK, h, body)
}

/// One SSE reader.
struct Tail {
    st: AppState,
    s: Stream,
    last: EventId,
    cursor: Option<String>,
    base64: bool,
    tx: mpsc::Sender<Bytes>,
}

impl Tail {
    async fn run(&mut self) {
        let s = &self.s;
        if s.closed() && self.last >= s.tail() {
            self.control(true, true).await;
            return;
        }
        let resume = Resume::From(WireId {
            prefix: s.head.prefix.clone(),
            id: self.last,
        });
        let mut sub = match self.st.hub.subscribe(&s.name, &resume).await {
            Ok(Subscribe::Stream(sub)) => sub,
            Ok(Subscribe::FullyRead) => {
                self.control(true, true).await;
                return;
            }
            // The client comes back from its offset.
            Ok(Subscribe::Overloaded) | Err(_) => return,
        };
        if self.last >= s.tail() && !self.control(true, false).await {
            return;
        }
        let view = s.view();
        let deadline = tokio::time::Instant::now() + self.st.durable.sse_lifetime;
        let mut frames = Parser::new(MAX_LINE);
        loop {
            let Ok(out) = tokio::time::timeout_at(deadline, sub.next()).await else {
                return;
            };
            match out {
                Some(Out::Events { bytes, .. }) => {
                    let _ = frames.feed(&bytes);
                    let (body, next) = pieces(view, &mut frames, self.last);
                    self.last = next;
                    let (up_to_date, closed) = self.state().await;
                    // Data and its control go out in one write: a reader
                    // that stops at a control event sees both.
                    let mut out = Vec::new();
                    if !body.is_empty() {
                        out.extend_from_slice(&data_event(&body.finish(view), self.base64));
                    }
                    out.extend_from_slice(&self.control_event(up_to_date, closed));
                    if self.tx.send(Bytes::from(out)).await.is_err() || closed {
                        return;
                    }
                }
                Some(Out::KeepAlive) => {
                    if self
                        .tx
                        .send(Bytes::from_static(b": keep-alive\n\n"))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Some(Out::Retry(_)) => {}
                None => {
                    // The stream ended: say so if it closed.
                    let (up_to_date, closed) = self.state().await;
                    if closed {
                        self.control(up_to_date, true).await;
                    }
                    return;
                }
                Some(Out::Reset(_) | Out::Close(_)) => return,
            }
        }
    }

    /// Whether this reader has everything now, and whether the stream is
    /// closed with nothing left to read.
    async fn state(&self) -> (bool, bool) {
        let log = &self.st.hub.store().log;
        match log.read_after(&self.s.name, EventId::START, 0).await {
            Ok(head) => {
                let up_to_date = self.last >= head.last_id;
                (up_to_date, up_to_date && head.finished)
            }
            Err(_) => (false, false),
        }
    }

    /// Sends a `control` event; false when the client is gone.
    async fn control(&self, up_to_date: bool, closed: bool) -> bool {
        let event = self.control_event(up_to_date, closed);
        self.tx.send(event).await.is_ok()
    }

    /// A `control` event: where to resume, and whether caught up or closed.
    fn control_event(&self, up_to_date: bool, closed: bool) -> Bytes {
        let mut c = serde_json::Map::new();
        c.insert("streamNextOffset".into(), offset::format(self.last).into());
        if closed {
            c.insert("streamClosed".into(), true.into());
        } else {
            let cursor = offset::cursor(now_ms(), self.cursor.as_deref());
            c.insert("streamCursor".into(), cursor.into());
        }
        if up_to_date {
            c.insert("upToDate".into(), true.into());
        }
        let text = serde_json::Value::Object(c).to_string();
        Bytes::from(format!("event: control\ndata:{text}\n\n"))
    }
}

/// A `data` event carrying `body`: its text, line by line, or its base64.
fn data_event(body: &[u8], base64: bool) -> Bytes {
    let mut out = String::with_capacity(body.len() + 32);
    out.push_str("event: data\n");
    if base64 {
        out.push_str("data:");
        out.push_str(&base64::engine::general_purpose::STANDARD.encode(body));
        out.push('\n');
    } else {
        let text = String::from_utf8_lossy(body);
        for line in text.split("\r\n").flat_map(|l| l.split(['\n', '\r'])) {
            // A reader strips one space after the colon: keep a line's own.
            out.push_str(if line.starts_with(' ') {
                "data: "
            } else {
                "data:"
            });
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push('\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_events_keep_every_line() {
        let e = data_event(b"a\n b\n", false);
        assert_eq!(&e[..], b"event: data\ndata:a\ndata:  b\ndata:\n\n");
        let e = data_event(&[0xff, 0], true);
        assert_eq!(&e[..], b"event: data\ndata:/wA=\n\n");
    }
}
