//! A publish answered by rill's own HTTP/1.1 front ([`super::front`]):
//! `POST /v1/streams/{name}` with a `Content-Length` body.
//!
//! It asks the same questions as the router's path, through the same
//! functions: the auth guard's decision ([`admit`]), then the one publish
//! ([`publish_event`]), whose errors become the same answers
//! ([`ApiError`]). What it leaves out is the router's per-request work
//! (boxed services, extractors, layers), and hyper's.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use bytes::{Buf, BufMut, BytesMut};
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::front::{wants_close, write_answer, Answered, MAX_ANSWER};
use super::Task;
use crate::http::auth::{admit, refuse, Guard};
use crate::http::error::ApiError;
use crate::http::listener::Connection;
use crate::http::park::wire;
use crate::http::streams::{publish_event, Published, IDEMPOTENCY_KEY};
use crate::http::AppState;
use crate::store::Appended;

/// What the front needs to answer publishes itself.
#[derive(Clone)]
pub struct Front {
    /// The application's state.
    pub state: AppState,
    /// The auth guard, when auth is on.
    pub guard: Option<Arc<Guard>>,
    /// Whether CORS is configured: a publish with an `Origin` then goes to
    /// the router, whose layer answers CORS.
    pub cors: bool,
    /// Largest publish body accepted on the wire.
    pub body_limit: usize,
}

/// A publish's head, as the front needs it.
pub(super) struct Publish {
    name: String,
    length: usize,
    content_type: Option<String>,
    key: Option<Vec<u8>>,
    close: bool,
    /// For the auth guard (it reads tokens from headers and the query).
    headers: HeaderMap,
    uri: Uri,
}

impl Publish {
    /// The publish in a parsed head, or `None` if the request is one for
    /// hyper: no single `Content-Length`, a chunked body, `Expect`, a
    /// percent-encoded name, or (with CORS on) an `Origin`.
    pub(super) fn read(
        path: &str,
        raw: &[httparse::Header<'_>],
        cors: bool,
        auth: bool,
    ) -> Option<Self> {
        let (route, _query) = path.split_once('?').unwrap_or((path, ""));
        let name = route.strip_prefix("/v1/streams/")?;
        if name.is_empty() || name.contains(['/', '%']) {
            return None;
        }
        let mut publish = Publish {
            name: name.to_owned(),
            length: 0,
            content_type: None,
            key: None,
            close: false,
            headers: HeaderMap::new(),
            uri: path.parse().ok()?,
        };
        let mut length = None;
        for h in raw {
            // Only the guard needs the headers as a map.
            if auth {
                let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
                let value = HeaderValue::from_bytes(h.value).ok()?;
                publish.headers.append(name, value);
            }
            let is = |name: &str| h.name.eq_ignore_ascii_case(name);
            if is("content-length") {
                if length.is_some() {
                    return None;
                }
                let v = std::str::from_utf8(h.value).ok()?;
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                length = Some(v.parse().ok()?);
            } else if ["transfer-encoding", "expect", "upgrade", "http2-settings"]
                .iter()
                .any(|n| is(n))
                || (cors && is("origin"))
            {
                return None;
            } else if is("content-type") {
                publish.content_type = Some(std::str::from_utf8(h.value).ok()?.to_owned());
            } else if is("connection") {
                publish.close |= wants_close(Some(h.value));
            } else if is(IDEMPOTENCY_KEY) {
                publish.key = Some(h.value.to_vec());
            }
        }
        publish.length = length?;
        Some(publish)
    }
}

impl Task {
    /// Reads the body of `publish` (after its head, in `buf` and then from
    /// the connection) and answers it.
    pub(super) async fn publish(
        &self,
        conn: Connection,
        publish: Publish,
        buf: &mut BytesMut,
    ) -> Answered {
        let Some(front) = self.shared.front.as_ref() else {
            return Answered::Closed;
        };
        let now = Instant::now();
        let write_by = now + self.shared.idle;
        if publish.length > front.body_limit {
            // The body is not read, so the connection cannot carry another
            // request.
            let refused = ApiError::TooLarge {
                size: publish.length,
                limit: front.state.max_event_bytes,
            };
            return answer_error(conn, refused, true, write_by).await;
        }
        let body_by = now + self.shared.body_read_timeout;
        while buf.len() < publish.length {
            buf.reserve(publish.length - buf.len());
            match tokio::time::timeout_at(body_by, wire::read_some(conn.tcp(), buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return Answered::Closed,
                Err(_) => {
                    let late = ApiError::BodyTimeout(self.shared.body_read_timeout);
                    return answer_error(conn, late, true, write_by).await;
                }
            }
        }
        let body = buf.split_to(publish.length);
        if let Some(guard) = &front.guard {
            let route = "/v1/streams/{name}";
            let name = Some(publish.name.as_str());
            let admitted = admit(
                guard,
                &Method::POST,
                route,
                name,
                &publish.headers,
                &publish.uri,
            );
            if let Err(e) = admitted {
                return answer(conn, refuse(e), publish.close, write_by).await;
            }
        }
        let published = publish_event(
            &front.state,
            publish.name,
            publish.content_type.as_deref(),
            publish.key.as_deref(),
            &body,
        )
        .await;
        match published {
            Ok(appended) => {
                let answer = created(&appended, publish.close);
                match wire::write_all_by(conn.tcp(), &answer, write_by).await {
                    Ok(()) if !publish.close => Answered::Continue(conn),
                    _ => Answered::Closed,
                }
            }
            Err(e) => answer_error(conn, e, publish.close, write_by).await,
        }
    }
}

/// The `201` of a publish, as bytes: what the router's handler answers,
/// written directly.
fn created(appended: &Appended, close: bool) -> BytesMut {
    let json = serde_json::to_vec(&Published {
        id: appended.wire_id(),
    })
    .unwrap_or_default();
    let mut out = BytesMut::with_capacity(160 + json.len());
    wire::status_line(&mut out, StatusCode::CREATED);
    out.put_slice(b"content-type: application/json\r\n");
    if appended.record.is_none() {
        out.put_slice(b"idempotent-replayed: true\r\n");
    }
    if close {
        out.put_slice(b"connection: close\r\n");
    }
    wire::end_head(&mut out, Some(json.len()));
    out.put_slice(&json);
    out
}

/// Writes an error's answer.
async fn answer_error(conn: Connection, e: ApiError, close: bool, write_by: Instant) -> Answered {
    answer(conn, e.into_response(), close, write_by).await
}

/// Writes a router-style response (a small body) whole.
async fn answer(
    conn: Connection,
    res: axum::response::Response,
    close: bool,
    write_by: Instant,
) -> Answered {
    let (parts, body) = res.into_parts();
    let close = close || parts.headers.contains_key(axum::http::header::CONNECTION);
    let Ok(Ok(body)) = tokio::time::timeout_at(
        write_by,
        http_body_util::Limited::new(body, MAX_ANSWER).collect(),
    )
    .await
    else {
        return Answered::Closed;
    };
    let body = body.to_bytes();
    let mut parts = parts;
    if close {
        parts.headers.insert(
            axum::http::header::CONNECTION,
            HeaderValue::from_static("close"),
        );
    }
    write_answer(conn, &parts, body.chunk(), close, write_by).await
}
