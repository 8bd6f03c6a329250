//! `HEAD` and `GET` on `/v1/stream/{name}`: metadata, catch-up reads and
//! long-polls (SSE is [`super::live`]).
//!
//! A catch-up read answers up to [`PAGE_BYTES`] of data after the offset;
//! a long-poll at the tail waits for the next append on the stream's hub
//! channel, as any rill subscriber does.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::Extension;

use super::UP_TO_DATE;
use super::{answer, checked_name, set, DsError, Stream, CLOSED, CURSOR, EXPIRES_AT, TTL};
use crate::auth::{Grant, Right};
use crate::durable::message::{decode, Body, MAX_LINE};
use crate::durable::now_ms;
use crate::durable::offset::{self, Offset};
use crate::http::AppState;
use crate::hub::{Out, Resume, Subscribe};
use crate::ids::{EventId, WireId};

/// Most data bytes one catch-up answer carries; a reader asks again from
/// the offset it was given.
pub const PAGE_BYTES: usize = 1024 * 1024;

/// Events read from the store at a time.
const PAGE_EVENTS: usize = 256;

/// How a `GET` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Live {
    /// What there is now.
    CatchUp,
    /// Wait for data at the tail.
    LongPoll,
    /// Server-sent events.
    Sse,
}

/// A `GET`'s query.
#[derive(Debug, Clone)]
pub struct Query {
    /// Where to read from (the start when absent).
    pub offset: Option<Offset>,
    /// How.
    pub live: Live,
    /// The client's `cursor`.
    pub cursor: Option<String>,
}

impl Query {
    /// Parses the query string.
    pub fn parse(uri: &Uri) -> Result<Query, DsError> {
        let mut offset = None;
        let mut live = Live::CatchUp;
        let mut cursor = None;
        let mut offsets = 0;
        for (k, v) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
            match &*k {
                "offset" => {
                    offsets += 1;
                    offset = Some(Offset::parse(&v).ok_or_else(|| {
                        DsError::bad(format!("offset `{v}` is not one this server gave"))
                    })?);
                }
                "live" => {
                    live = match &*v {
                        "long-poll" => Live::LongPoll,
                        "sse" => Live::Sse,
                        other => {
                            return Err(DsError::bad(format!(
                                "live is `long-poll` or `sse`, not `{other}`"
                            )))
                        }
                    }
                }
                "cursor" => cursor = Some(v.into_owned()),
                _ => {}
            }
        }
        if offsets > 1 {
            return Err(DsError::bad("send one offset"));
        }
        if live != Live::CatchUp && offset.is_none() {
            return Err(DsError::bad(
                "live reads need an offset (`-1` for the start)",
            ));
        }
        Ok(Query {
            offset,
            live,
            cursor,
        })
    }
}

/// `HEAD /v1/stream/{name}`: the stream's metadata.
#[utoipa::path(head, path = "/v1/stream/{name}", tag = "durable-streams",
    params(("name" = String, Path, description = "Stream name")),
    responses(
        (status = 200, description = "Its content type, tail (`Stream-Next-Offset`), closure, TTL and expiry, in headers"),
        (status = 404, description = "No such stream"),
        (status = 410, description = "Deleted, forks of it remain"),
    ))]
pub async fn head(
    State(st): State<AppState>,
    Path(name): Path<String>,
    grant: Option<Extension<Grant>>,
) -> Result<Response, DsError> {
    let name = checked_name(&st, name, grant.as_deref(), Right::Subscribe).await?;
    let Some(s) = Stream::find(&st, &name).await? else {
        return Err(DsError::not_found(&name));
    };
    s.refuse_gone()?;
    let mut h = s.headers(s.tail());
    set(&mut h, header::CACHE_CONTROL, "no-store");
    if s.closed() {
        set(&mut h, CLOSED, "true");
    }
    if let Some(a) = &s.attrs {
        if let Some(ttl) = a.ttl {
            set(&mut h, TTL, ttl);
        }
        if let Some(at) = &a.expires_at {
            set(&mut h, EXPIRES_AT, at);
        }
    }
    set(&mut h, header::ETAG, etag(&s, EventId::START, s.tail()));
    Ok(answer(StatusCode::OK, h, ()))
}

/// The entity tag of the data between two offsets: it changes when the
/// stream closes, so a cached answer never hides the close.
fn etag(s: &Stream, from: EventId, to: EventId) -> String {
    let closed = if s.closed() && to >= s.tail() {
        ":c"
    } else {
        ""
    };
    format!(
        "\"{}:{}:{}:{}{closed}\"",
        s.name,
        s.head.prefix.as_deref().unwrap_or_default(),
        from.0,
        to.0
    )
}

/// Where a read starts: after this id. `410` when the events after it are
/// no longer retained, `400` past the tail.
pub fn start(s: &Stream, offset: Option<Offset>) -> Result<EventId, DsError> {
    match offset.unwrap_or(Offset::After(EventId::START)) {
        Offset::Now => Ok(s.tail()),
        Offset::After(id) if id > s.tail() => Err(DsError::bad(format!(
            "offset {} is past the stream's tail {}",
            offset::format(id),
            offset::format(s.tail())
        ))),
        Offset::After(id) if id.0.saturating_add(1) < s.head.first_retained.0 && id < s.tail() => {
            Err(DsError::new(
                StatusCode::GONE,
                format!(
                    "the data after offset {} is no longer retained; the oldest offset readable is {}",
                    offset::format(id),
                    offset::format(EventId(s.head.first_retained.0.saturating_sub(1)))
                ),
            ))
        }
        Offset::After(id) => Ok(id),
    }
}

/// What a catch-up read found.
struct Page {
    body: Body,
    /// The offset after the last event read.
    next: EventId,
}

/// Reads up to a page of data after `after`.
async fn page(st: &AppState, s: &Stream, after: EventId) -> Result<Page, DsError> {
    let log = &st.hub.store().log;
    let view = s.view();
    let mut body = Body::default();
    let mut next = after;
    while next < s.tail() && body.len() < PAGE_BYTES {
        let replay = log.read_after(&s.name, next, PAGE_EVENTS).await?;
        if replay.records.is_empty() {
            break;
        }
        for r in &replay.records {
            if r.id > s.tail() || body.len() >= PAGE_BYTES {
                break;
            }
            body.push(decode(view, r));
            next = r.id;
        }
    }
    Ok(Page { body, next })
}

/// `GET /v1/stream/{name}`: read from an offset, now, by long-poll, or as
/// server-sent events.
#[utoipa::path(get, path = "/v1/stream/{name}", tag = "durable-streams",
    params(("name" = String, Path, description = "Stream name"),
        ("offset" = Option<String>, Query, description = "Read after this offset: one this server gave, `-1` (the start) or `now` (the tail)"),
        ("live" = Option<String>, Query, description = "`long-poll` or `sse`"),
        ("cursor" = Option<String>, Query, description = "The last Stream-Cursor, for caches")),
    responses(
        (status = 200, description = "Data after the offset (bytes, or a JSON array for JSON streams), or the SSE stream"),
        (status = 204, description = "Long-poll: nothing came in time, or the stream is closed"),
        (status = 304, description = "If-None-Match matched"),
        (status = 400, description = "A malformed or unknown offset, or a live read without one"),
        (status = 404, description = "No such stream"),
        (status = 410, description = "The data after the offset is no longer retained, or the stream was deleted (forks of it remain)"),
    ))]
pub async fn get(
    State(st): State<AppState>,
    Path(name): Path<String>,
    grant: Option<Extension<Grant>>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, DsError> {
    let name = checked_name(&st, name, grant.as_deref(), Right::Subscribe).await?;
    let query = Query::parse(&uri)?;
    let Some(mut s) = Stream::find(&st, &name).await? else {
        return Err(DsError::not_found(&name));
    };
    s.refuse_gone()?;
    s.touch(&st).await?;
    let after = start(&s, query.offset)?;
    if query.live == Live::Sse {
        return Ok(super::live::serve(st, s, after, query.cursor));
    }
    let view = s.view();
    if query.offset == Some(Offset::Now) && query.live == Live::CatchUp {
        let mut h = s.headers(s.tail());
        set(&mut h, UP_TO_DATE, "true");
        set(&mut h, header::CACHE_CONTROL, "no-store");
        if s.closed() {
            set(&mut h, CLOSED, "true");
        }
        return Ok(answer(StatusCode::OK, h, Body::default().finish(view)));
    }
    if query.live == Live::LongPoll && after >= s.tail() {
        return long_poll(&st, s, after, query.cursor.as_deref()).await;
    }
    let page = page(&st, &s, after).await?;
    let tag = etag(&s, after, page.next);
    let mut h = s.headers(page.next);
    let at_tail = page.next >= s.tail();
    if at_tail {
        set(&mut h, UP_TO_DATE, "true");
        if s.closed() {
            set(&mut h, CLOSED, "true");
        }
    }
    if query.live == Live::LongPoll {
        set(
            &mut h,
            CURSOR,
            offset::cursor(now_ms(), query.cursor.as_deref()),
        );
    }
    set(
        &mut h,
        header::CACHE_CONTROL,
        cache_control(grant.is_some()),
    );
    set(&mut h, header::ETAG, &tag);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag))
    {
        return Ok(answer(StatusCode::NOT_MODIFIED, h, ()));
    }
    Ok(answer(StatusCode::OK, h, page.body.finish(view)))
}

/// Catch-up answers may be cached a minute, by shared caches only when
/// the read needed no token.
fn cache_control(authenticated: bool) -> &'static str {
    if authenticated {
        "private, max-age=60, stale-while-revalidate=300"
    } else {
        "public, max-age=60, stale-while-revalidate=300"
    }
}

/// Waits at the tail for the next append: `200` with it, or `204` when
/// the wait ends empty (or the stream closes without data).
async fn long_poll(
    st: &AppState,
    s: Stream,
    after: EventId,
    cursor: Option<&str>,
) -> Result<Response, DsError> {
    let view = s.view();
    let empty = |s: &Stream, closed: bool| no_data(s, after, closed, cursor);
    if s.closed() {
        return Ok(empty(&s, true));
    }
    let resume = Resume::From(WireId {
        prefix: s.head.prefix.clone(),
        id: after,
    });
    let mut sub = match st.hub.subscribe(&s.name, &resume).await? {
        Subscribe::Stream(sub) => sub,
        Subscribe::FullyRead => return Ok(empty(&s, true)),
        Subscribe::Overloaded => {
            return Err(
                DsError::new(StatusCode::SERVICE_UNAVAILABLE, "too many readers")
                    .with(header::RETRY_AFTER, 1),
            )
        }
    };
    let deadline = tokio::time::Instant::now() + st.durable.long_poll;
    let mut frames = crate::sse::Parser::new(MAX_LINE);
    loop {
        let out = match tokio::time::timeout_at(deadline, sub.next()).await {
            Err(_) => return Ok(empty(&s, false)),
            Ok(out) => out,
        };
        match out {
            Some(Out::Events { bytes, .. }) => {
                let _ = frames.feed(&bytes);
                let (body, next) = super::live::pieces(view, &mut frames, after);
                drop(sub);
                let Some(now) = Stream::find(st, &s.name).await? else {
                    return Err(DsError::not_found(&s.name));
                };
                let closed = now.closed() && next >= now.tail();
                if body.is_empty() && closed {
                    return Ok(no_data(&now, next, true, cursor));
                }
                let mut h = now.headers(next);
                if next >= now.tail() {
                    set(&mut h, UP_TO_DATE, "true");
                }
                if closed {
                    set(&mut h, CLOSED, "true");
                } else {
                    set(&mut h, CURSOR, offset::cursor(now_ms(), cursor));
                }
                set(&mut h, header::ETAG, etag(&now, after, next));
                set(&mut h, header::CACHE_CONTROL, "no-store");
                return Ok(answer(StatusCode::OK, h, body.finish(view)));
            }
            Some(Out::Retry(_) | Out::KeepAlive) => {}
            Some(Out::Reset(_)) | None => {
                // The stream ended or was made anew under us: look again.
                return match Stream::find(st, &s.name).await? {
                    Some(now) if now.closed() => Ok(empty(&now, true)),
                    Some(now) => Ok(empty(&now, false)),
                    None => Err(DsError::not_found(&s.name)),
                };
            }
            Some(Out::Close(_)) => {
                return Err(DsError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the server is shutting down or its store is unavailable",
                )
                .with(header::RETRY_AFTER, 1))
            }
        }
    }
}

/// A long-poll's `204`: up to date at `at`, and closed, or with a cursor
/// to come back with.
fn no_data(s: &Stream, at: EventId, closed: bool, cursor: Option<&str>) -> Response {
    let mut h = s.headers(at);
    set(&mut h, UP_TO_DATE, "true");
    if closed {
        set(&mut h, CLOSED, "true");
    } else {
        set(&mut h, CURSOR, offset::cursor(now_ms(), cursor));
    }
    answer(StatusCode::NO_CONTENT, h, ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Result<Query, DsError> {
        Query::parse(&format!("/v1/stream/x?{s}").parse().unwrap_or_default())
    }

    #[test]
    fn queries_are_checked() {
        assert!(q("").is_ok());
        assert!(q("offset=-1&live=sse").is_ok());
        assert!(q("offset=now&live=long-poll&cursor=5").is_ok());
        assert!(q("live=sse").is_err());
        assert!(q("offset=-1&offset=-1").is_err());
        assert!(q("offset=").is_err());
        assert!(q("offset=abc").is_err());
        assert!(q("offset=-1&live=ws").is_err());
    }
}
