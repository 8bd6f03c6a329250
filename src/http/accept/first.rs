//! The first request of a plain HTTP/1.1 connection, read by rill itself so
//! that an event stream can be parked ([`crate::http::park`]).
//!
//! The request head is read into a small buffer and parsed with `httparse`.
//! Only a plain subscription is answered here: `GET /v1/streams/{name}`
//! over HTTP/1.1, with no body, no `Transfer-Encoding`, no `Upgrade` or
//! `Expect`, and headers that parse cleanly. It still goes through the
//! router with every layer (auth, CORS, tracing), as a `Request` built from
//! the parsed head. If the answer is an event stream, rill writes the head
//! itself and parks the connection; any other answer (an error, `204`, a
//! `retry:` for an overloaded node) is written here too, and hyper takes
//! the connection for whatever request comes next.
//!
//! Everything else (other routes, HTTP/2's preface, a head that does not
//! parse, is ambiguous or too large) goes to hyper unchanged, with the
//! bytes already read given back first ([`Prefixed`]), so hyper refuses
//! what it refused before (smuggling attempts, oversized heads) exactly as
//! it did.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Method, Request, StatusCode, Version};
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tower::ServiceExt;

use super::Task;
use crate::http::auth::StreamExpiry;
use crate::http::listener::Connection;
use crate::http::park::wire;
use crate::http::sse::Parkable;
use crate::metrics as m;

/// Most headers a request read here may have; more go to hyper.
const MAX_HEADERS: usize = 64;
/// Largest answer other than a stream written here (they are small: an
/// error, a `retry:` hint).
const MAX_ANSWER: usize = 64 * 1024;

/// What the first bytes of a plain connection turned out to be.
enum Head {
    /// A subscription, for rill; its head was this many bytes.
    Subscribe(Box<Request<Body>>, usize),
    /// Anything else, for hyper.
    Other,
    /// More bytes are needed.
    Partial,
}

/// How an answer given here left the connection.
enum Answered {
    /// Parked: the stream is served from its writer.
    Parked,
    /// Answered; hyper serves what comes next.
    Continue(Connection),
    /// Closed.
    Closed,
}

impl Task {
    /// Serves a plain connection: the first request here if it is a
    /// subscription, the rest with hyper.
    pub(super) async fn plain_first(self, mut conn: Connection) {
        let deadline = Instant::now() + self.shared.idle;
        let mut buf = BytesMut::with_capacity(1024);
        let head = loop {
            match parse(&buf) {
                Head::Partial if buf.len() < self.shared.max_header_bytes => {}
                Head::Partial => break Head::Other,
                head => break head,
            }
            match tokio::time::timeout_at(deadline, conn.read_buf(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return,
                Err(_) => {
                    metrics::counter!(m::CONNECTIONS_DROPPED, "reason" => "header_timeout")
                        .increment(1);
                    return;
                }
            }
        };
        match head {
            Head::Subscribe(req, used) => {
                let rest = buf.split_off(used).freeze();
                drop(buf);
                match self.answer(conn, *req).await {
                    Answered::Parked | Answered::Closed => {}
                    Answered::Continue(conn) => {
                        let next = Instant::now() + self.shared.idle;
                        self.serve(Prefixed::new(conn, rest), next).await;
                    }
                }
            }
            _ => {
                self.serve(Prefixed::new(conn, buf.freeze()), deadline)
                    .await
            }
        }
    }

    /// Runs `req` through the router and writes the answer: the head of an
    /// event stream, then parks it; or a whole small answer.
    async fn answer(&self, conn: Connection, mut req: Request<Body>) -> Answered {
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let close = req
            .headers()
            .get(header::CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let Ok(res) = self.shared.app.clone().oneshot(req).await;
        let (mut parts, body) = res.into_parts();
        let write_by = Instant::now() + self.shared.idle;
        if let (Some(parking), Some(sub)) = (
            self.shared.parking.as_ref(),
            parts.extensions.remove::<Parkable>().and_then(|p| p.take()),
        ) {
            drop(body);
            let expires = parts.extensions.get::<StreamExpiry>().map(|e| e.0);
            let head = wire::head(&parts, None);
            let wrote = tokio::time::timeout_at(write_by, wire::write_all(conn.tcp(), &head)).await;
            if !matches!(wrote, Ok(Ok(()))) {
                return Answered::Closed;
            }
            parking.park(conn, sub, expires);
            return Answered::Parked;
        }
        let collected = tokio::time::timeout_at(
            write_by,
            http_body_util::Limited::new(body, MAX_ANSWER).collect(),
        )
        .await;
        let Ok(Ok(body)) = collected else {
            return Answered::Closed;
        };
        let body = body.to_bytes();
        let bodyless = parts.status == StatusCode::NO_CONTENT || parts.status.is_informational();
        let mut out = BytesMut::from(&wire::head(&parts, (!bodyless).then_some(body.len()))[..]);
        if !bodyless {
            out.extend_from_slice(&body);
        }
        let wrote = tokio::time::timeout_at(write_by, wire::write_all(conn.tcp(), &out)).await;
        match wrote {
            Ok(Ok(())) if !close => Answered::Continue(conn),
            _ => Answered::Closed,
        }
    }
}

/// Parses what has arrived of the first request head.
fn parse(buf: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Other,
    };
    let (Some("GET"), Some(path), Some(1)) = (req.method, req.path, req.version) else {
        return Head::Other;
    };
    if !path.starts_with("/v1/streams/") {
        return Head::Other;
    }
    let mut builder = Request::builder()
        .method(Method::GET)
        .uri(path)
        .version(Version::HTTP_11);
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let refused = match name.as_str() {
            "content-length" => h.value != b"0",
            "transfer-encoding" | "upgrade" | "expect" | "http2-settings" => true,
            _ => false,
        };
        if refused {
            return Head::Other;
        }
        builder = builder.header(h.name, h.value);
    }
    match builder.body(Body::empty()) {
        Ok(req) => Head::Subscribe(Box::new(req), used),
        Err(_) => Head::Other,
    }
}

/// A connection with bytes already read from it, given back first.
pub(super) struct Prefixed {
    first: Bytes,
    conn: Connection,
}

impl Prefixed {
    pub(super) fn new(conn: Connection, first: Bytes) -> Self {
        Self { first, conn }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.first.is_empty() {
            let n = self.first.len().min(buf.remaining());
            buf.put_slice(&self.first[..n]);
            self.first.advance(n);
            if self.first.is_empty() {
                // Give the buffer back rather than keep it for the
                // connection's life.
                self.first = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.conn).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.conn).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.conn).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.conn.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.conn).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.conn).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(raw: &str) -> &'static str {
        match parse(raw.as_bytes()) {
            Head::Subscribe(..) => "subscribe",
            Head::Other => "other",
            Head::Partial => "partial",
        }
    }

    #[test]
    fn only_plain_subscriptions_are_read_here() {
        let ok = "GET /v1/streams/news?lastEventId=0 HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n";
        assert_eq!(kind(ok), "subscribe");
        match parse(ok.as_bytes()) {
            Head::Subscribe(req, used) => {
                assert_eq!(used, ok.len());
                assert_eq!(req.uri().query(), Some("lastEventId=0"));
                assert_eq!(req.headers()["accept"], "text/event-stream");
            }
            _ => unreachable!(),
        }
        assert_eq!(
            kind("GET /v1/streams/news HTTP/1.1\r\nHost: x\r\n"),
            "partial"
        );
        for other in [
            "POST /v1/streams/news HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /sse HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /v1/streams/news HTTP/1.0\r\n\r\n",
            "GET /v1/streams/news HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            "GET /v1/streams/news HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /v1/streams/news HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
            "GET /v1/streams/news HTTP/1.1\r\nBad Header: x\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET http://evil/v1/streams/x HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(kind(other), "other", "{other:?}");
        }
    }
}
