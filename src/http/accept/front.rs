//! rill's own HTTP/1.1 front for the stream routes, on plain connections.
//!
//! Request heads are read into a small buffer and parsed with `httparse`.
//! Two kinds of request are answered here, for as long as a connection
//! sends only them:
//! - a subscription, `GET /v1/streams/{name}`, goes through the router
//!   with every layer (auth, CORS, tracing) as a `Request` built from the
//!   parsed head; if the answer is an event stream, rill writes the head
//!   itself and parks the connection ([`crate::http::park`]);
//! - a publish, `POST /v1/streams/{name}` with a `Content-Length` body,
//!   is answered directly ([`super::publish`]): the same auth decision
//!   ([`crate::http::auth::admit`]) and the same publish
//!   ([`crate::http::streams::publish_event`]) as through the router,
//!   without the router's per-request work, which was most of a publish's
//!   cost in user space (see `bench/RESULTS.md`, publish).
//!
//! Everything else (other routes, a body without `Content-Length`, HTTP/2's
//! preface, a head that does not parse, is ambiguous or too large, a
//! cross-origin publish when CORS is on) goes to hyper with the bytes
//! already read given back first ([`Prefixed`]), and hyper serves the rest
//! of the connection: so hyper refuses what it refused before (smuggling
//! attempts, oversized heads) exactly as it did.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Method, Request, StatusCode, Version};
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tower::ServiceExt;

use super::publish::Publish;
use super::Task;
use crate::http::auth::StreamExpiry;
use crate::http::listener::Connection;
use crate::http::park::wire;
use crate::http::sse::Parkable;
use crate::metrics as m;

/// Most headers a request read here may have; more go to hyper.
pub(super) const MAX_HEADERS: usize = 64;
/// Largest answer other than a stream written here (they are small: an
/// error, a `retry:` hint).
pub(super) const MAX_ANSWER: usize = 64 * 1024;

/// What the next bytes of a connection turned out to be.
enum Head {
    /// A subscription, for the router; its head was this many bytes.
    Subscribe(Box<Request<Body>>, usize),
    /// A publish, answered here.
    Publish(Box<Publish>, usize),
    /// Anything else, for hyper.
    Other,
    /// More bytes are needed.
    Partial,
}

/// How an answer given here left the connection.
pub(super) enum Answered {
    /// Parked: the stream is served from its writer.
    Parked,
    /// Answered; the connection may carry another request.
    Continue(Connection),
    /// Closed.
    Closed,
}

impl Task {
    /// Serves a plain connection: subscriptions and publishes here, the
    /// first other request and everything after it with hyper.
    pub(super) async fn plain_front(self, mut conn: Connection) {
        let mut buf = BytesMut::with_capacity(1024);
        // One timer for the connection's life, moved on at each request:
        // moving a registered timer later is one atomic store, where a
        // timer per request would be registered and removed each time.
        let idle = tokio::time::sleep(self.shared.idle);
        tokio::pin!(idle);
        loop {
            let deadline = Instant::now() + self.shared.idle;
            idle.as_mut().reset(deadline);
            let head = loop {
                let rules = self.shared.front.as_ref().map(|f| Rules {
                    cors: f.cors,
                    auth: f.guard.is_some(),
                });
                match parse(&buf, rules) {
                    Head::Partial if buf.len() < self.shared.max_header_bytes => {}
                    Head::Partial => break Head::Other,
                    head => break head,
                }
                let read = tokio::select! {
                    biased;
                    read = wire::read_some(conn.tcp(), &mut buf) => Ok(read),
                    () = &mut idle => Err(()),
                };
                match read {
                    Ok(Ok(n)) if n > 0 => {}
                    Ok(_) => return,
                    Err(()) => {
                        metrics::counter!(m::CONNECTIONS_DROPPED, "reason" => "header_timeout")
                            .increment(1);
                        return;
                    }
                }
            };
            let answered = match head {
                Head::Subscribe(req, used) => {
                    buf.advance(used);
                    self.answer(conn, *req).await
                }
                Head::Publish(publish, used) => {
                    buf.advance(used);
                    self.publish(conn, *publish, &mut buf).await
                }
                Head::Other | Head::Partial => {
                    self.serve(Prefixed::new(conn, buf.freeze()), deadline)
                        .await;
                    return;
                }
            };
            match answered {
                Answered::Parked | Answered::Closed => return,
                Answered::Continue(c) => conn = c,
            }
            if buf.capacity() > 4096 {
                // Give a large head's buffer back between requests.
                buf = BytesMut::from(&buf[..]);
            }
        }
    }

    /// Runs `req` through the router and writes the answer: the head of an
    /// event stream, then parks it; or a whole small answer.
    async fn answer(&self, conn: Connection, mut req: Request<Body>) -> Answered {
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let close = wants_close(req.headers().get(header::CONNECTION).map(|v| v.as_bytes()));
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
            let wrote = wire::write_all_by(conn.tcp(), &head, write_by).await;
            if wrote.is_err() {
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
        write_answer(conn, &parts, &body, close, write_by).await
    }
}

/// Writes a whole answer (head and body) and says what is left of the
/// connection.
pub(super) async fn write_answer(
    conn: Connection,
    parts: &axum::http::response::Parts,
    body: &[u8],
    close: bool,
    write_by: Instant,
) -> Answered {
    let bodyless = parts.status == StatusCode::NO_CONTENT || parts.status.is_informational();
    let mut out = BytesMut::from(&wire::head(parts, (!bodyless).then_some(body.len()))[..]);
    if !bodyless {
        out.extend_from_slice(body);
    }
    let wrote = wire::write_all_by(conn.tcp(), &out, write_by).await;
    match wrote {
        Ok(()) if !close => Answered::Continue(conn),
        _ => Answered::Closed,
    }
}

/// Whether a `Connection` header value asks to close after this request.
pub(super) fn wants_close(value: Option<&[u8]>) -> bool {
    value.is_some_and(|v| {
        v.split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

/// What decides whether a publish is read here.
#[derive(Debug, Clone, Copy)]
struct Rules {
    /// CORS is configured: a publish with an `Origin` goes to the router,
    /// whose layer answers CORS.
    cors: bool,
    /// Auth is on: the guard needs the headers as a map.
    auth: bool,
}

/// Parses what has arrived of the next request head. Publishes are read
/// here only under `rules` (when there is a front to answer them).
fn parse(buf: &[u8], rules: Option<Rules>) -> Head {
    if buf.is_empty() {
        return Head::Partial;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Other,
    };
    let (Some(method), Some(path), Some(1)) = (req.method, req.path, req.version) else {
        return Head::Other;
    };
    if !path.starts_with("/v1/streams/") {
        return Head::Other;
    }
    match method {
        "GET" => {
            subscribe(path, req.headers).map_or(Head::Other, |r| Head::Subscribe(Box::new(r), used))
        }
        "POST" => rules
            .and_then(|r| Publish::read(path, req.headers, r.cors, r.auth))
            .map_or(Head::Other, |p| Head::Publish(Box::new(p), used)),
        _ => Head::Other,
    }
}

/// A subscription request from its parsed head, or `None` if it is one
/// for hyper.
fn subscribe(path: &str, headers: &[httparse::Header<'_>]) -> Option<Request<Body>> {
    let mut builder = Request::builder()
        .method(Method::GET)
        .uri(path)
        .version(Version::HTTP_11);
    for h in headers {
        let refused = match h.name.to_ascii_lowercase().as_str() {
            "content-length" => h.value != b"0",
            "transfer-encoding" | "upgrade" | "expect" | "http2-settings" => true,
            _ => false,
        };
        if refused {
            return None;
        }
        builder = builder.header(h.name, h.value);
    }
    builder.body(Body::empty()).ok()
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
        let rules = Rules {
            cors: false,
            auth: false,
        };
        match parse(raw.as_bytes(), Some(rules)) {
            Head::Subscribe(..) => "subscribe",
            Head::Publish(..) => "publish",
            Head::Other => "other",
            Head::Partial => "partial",
        }
    }

    #[test]
    fn only_plain_subscriptions_and_publishes_are_read_here() {
        let ok = "GET /v1/streams/news?lastEventId=0 HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n";
        assert_eq!(kind(ok), "subscribe");
        let rules = Rules {
            cors: false,
            auth: false,
        };
        match parse(ok.as_bytes(), Some(rules)) {
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
        assert_eq!(
            kind("POST /v1/streams/news HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"),
            "publish"
        );
        for other in [
            "POST /v1/streams/news HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /v1/streams/news HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /v1/streams/news HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            "POST /v1/streams/a%2Db HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            "POST /v1/streams/news HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
            "DELETE /v1/streams/news HTTP/1.1\r\nHost: x\r\n\r\n",
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
        let cross = "POST /v1/streams/news HTTP/1.1\r\nOrigin: https://a.example\r\nContent-Length: 1\r\n\r\n";
        assert_eq!(kind(cross), "publish", "CORS off: nothing to add");
        let cors = Rules {
            cors: true,
            auth: false,
        };
        assert!(matches!(parse(cross.as_bytes(), Some(cors)), Head::Other));
    }

    #[test]
    fn connection_close_is_read_in_any_case_and_list() {
        assert!(wants_close(Some(b"close")));
        assert!(wants_close(Some(b"keep-alive, Close")));
        assert!(!wants_close(Some(b"keep-alive")));
        assert!(!wants_close(None));
    }
}
