//! Forks: a stream made from another's data up to an offset.
//!
//! rill copies: the fork is a new stream whose first events are copies of
//! the source's up to the fork offset, so its offsets up to there are the
//! source's own (the protocol's "same offset space"), and after it the
//! fork goes its own way. A fork inside an append (`Stream-Fork-Sub-Offset`)
//! ends its copy with the head of that append. Copying costs one append
//! per source event, once; reads of a fork then cost what any read costs.
//!
//! The source counts its forks. Deleting a source that has forks only
//! marks it deleted (`410` to clients, its name not reusable); deleting
//! its last fork removes it, and so on up the chain.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::write::{decimal, Create};
use super::{text, DsError, Stream, FORKED_FROM, FORK_OFFSET, FORK_SUB_OFFSET};
use crate::durable::message::{self, decode, Piece};
use crate::durable::offset::{self, Offset};
use crate::durable::{same_type, ForkOf};
use crate::http::AppState;
use crate::ids::{EventId, StreamName};

/// A `PUT` that forks.
#[derive(Debug, Clone)]
pub struct Request {
    /// The source stream.
    pub source: StreamName,
    /// Where to diverge (the source's tail when absent).
    pub offset: Option<Offset>,
    /// How far into the next append.
    pub sub: u64,
}

impl Request {
    /// The fork headers of a `PUT`, if it forks.
    pub fn parse(h: &HeaderMap) -> Result<Option<Request>, DsError> {
        let sub = match text(h, &FORK_SUB_OFFSET) {
            None => None,
            Some(s) => Some(decimal(s.trim()).ok_or_else(|| {
                DsError::bad("Stream-Fork-Sub-Offset is a non-negative whole number")
            })?),
        };
        let Some(from) = text(h, &FORKED_FROM) else {
            if sub.is_some() || h.contains_key(FORK_OFFSET) {
                return Err(DsError::bad(
                    "Stream-Fork-Offset and Stream-Fork-Sub-Offset need Stream-Forked-From",
                ));
            }
            return Ok(None);
        };
        let name = from
            .trim()
            .strip_prefix("/v1/stream/")
            .unwrap_or(from.trim())
            .to_owned();
        let source =
            StreamName::new(name).map_err(|e| DsError::bad(format!("Stream-Forked-From: {e}")))?;
        let offset = match text(h, &FORK_OFFSET) {
            None => None,
            Some(o) => Some(Offset::parse(o.trim()).ok_or_else(|| {
                DsError::bad(format!(
                    "Stream-Fork-Offset `{o}` is not an offset this server gave"
                ))
            })?),
        };
        let sub = sub.unwrap_or(0);
        if sub > 0 && offset.is_none() {
            return Err(DsError::bad(
                "Stream-Fork-Sub-Offset needs Stream-Fork-Offset",
            ));
        }
        Ok(Some(Request {
            source,
            offset,
            sub,
        }))
    }
}

/// Whether an existing fork was made by this request.
pub fn matches(s: &Stream, req: &Request, source_tail: Option<EventId>) -> bool {
    let Some(fork) = s.attrs.as_ref().and_then(|a| a.fork.as_ref()) else {
        return false;
    };
    let offset = match req.offset {
        Some(Offset::After(id)) => Some(id.0),
        Some(Offset::Now) | None => source_tail.map(|t| t.0),
    };
    fork.source == req.source.as_str()
        && offset.is_none_or(|o| o == fork.offset)
        && fork.sub == req.sub
}

/// Makes fork `name` of `req.source`, with the fork's own `want` and
/// initial `body`. The caller holds both streams' locks.
pub async fn create(
    st: &AppState,
    name: &StreamName,
    want: &Create,
    req: &Request,
    body: &Bytes,
    location: String,
) -> Result<Response, DsError> {
    let Some(mut source) = Stream::find(st, &req.source).await? else {
        return Err(DsError::new(
            StatusCode::NOT_FOUND,
            format!("no source stream {}", req.source),
        ));
    };
    let conflict = |m: String| DsError::new(StatusCode::CONFLICT, m);
    let Some(src) = source.attrs.clone() else {
        return Err(conflict(format!(
            "stream {} is written by rill's own API; only protocol streams fork",
            req.source
        )));
    };
    if src.deleted {
        return Err(conflict(format!(
            "source stream {} was deleted (forks of it remain)",
            req.source
        )));
    }
    if want.explicit_type && !same_type(&want.content_type, &src.content_type) {
        return Err(conflict(format!(
            "a fork keeps its source's content type, {}",
            src.content_type
        )));
    }
    let at = match req.offset {
        Some(Offset::After(id)) => id,
        Some(Offset::Now) | None => source.tail(),
    };
    if at > source.tail() {
        return Err(DsError::bad(format!(
            "Stream-Fork-Offset {} is past the source's tail {}",
            offset::format(at),
            offset::format(source.tail())
        )));
    }
    if source.head.first_retained > EventId(1) && at > EventId::START {
        return Err(conflict(format!(
            "source stream {}'s first events are no longer retained: it cannot be forked",
            req.source
        )));
    }
    let view = source.view();
    let log = &st.hub.store().log;
    // The events to copy, and the head of the next one for a sub-offset.
    let mut copies = Vec::new();
    let mut after = EventId::START;
    while after < at {
        let page = log.read_after(&req.source, after, 256).await?;
        if page.records.is_empty() {
            break;
        }
        for r in page.records.iter().take_while(|r| r.id <= at) {
            copies.extend(message::parse(r).map(|ev| message::copy(&ev)));
            after = r.id;
        }
        if page.records.last().is_some_and(|r| r.id >= at) {
            break;
        }
    }
    if req.sub > 0 {
        let next = log.read_after(&req.source, at, 1).await?;
        let piece = next
            .records
            .first()
            .map_or(Piece::Nothing, |r| decode(view, r));
        let n = usize::try_from(req.sub).unwrap_or(usize::MAX);
        if n > message::units(&piece) {
            return Err(DsError::bad(
                "Stream-Fork-Sub-Offset is past the end of the append after Stream-Fork-Offset",
            ));
        }
        copies.extend(message::head_of(&piece, n));
    }
    let json = src.is_json();
    let first = if body.is_empty() {
        None
    } else {
        message::draft(json, body, want.closed).map_err(|e| DsError::bad(e.to_string()))?
    };
    let mut attrs = want.attrs(&src.content_type);
    if !want.own_expiry() {
        attrs.ttl = src.ttl;
        attrs.expires_at = src.expires_at.clone();
        attrs.expires_ms = src.expires_ms;
    }
    attrs.fork = Some(ForkOf {
        source: req.source.to_string(),
        offset: at.0,
        sub: req.sub,
    });
    let tail = super::make(st, name, &attrs, &copies, first, want.closed).await?;
    source.update(st, |a| a.forks += 1).await?;
    Ok(super::created(
        &attrs.content_type,
        tail,
        location,
        want.closed,
    ))
}

/// A fork (or a soft-deleted stream) was removed: its source has one fork
/// fewer, and is removed too if it was deleted and that was its last.
/// Goes on up the chain. Called without any stream's lock held.
pub async fn release(st: &AppState, mut source: Option<String>) -> Result<(), DsError> {
    while let Some(name) = source.take() {
        let Ok(name) = StreamName::new(name) else {
            return Ok(());
        };
        let _order = st.durable.lock(&name).lock().await;
        let Some(mut s) = Stream::find(st, &name).await? else {
            return Ok(());
        };
        if s.attrs.is_none() {
            return Ok(());
        }
        s.update(st, |a| a.forks = a.forks.saturating_sub(1))
            .await?;
        let Some(a) = &s.attrs else {
            return Ok(());
        };
        if a.deleted && a.forks == 0 {
            source = a.fork.as_ref().map(|f| f.source.clone());
            super::remove(st, &name).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::set;
    use super::*;

    fn req(h: &[(&'static str, &str)]) -> Result<Option<Request>, DsError> {
        let mut m = HeaderMap::new();
        for (k, v) in h {
            set(&mut m, axum::http::HeaderName::from_static(k), v);
        }
        Request::parse(&m)
    }

    #[test]
    fn fork_headers_are_checked() {
        assert!(matches!(req(&[]), Ok(None)));
        let r = req(&[("stream-forked-from", "/v1/stream/src")])
            .ok()
            .flatten();
        assert_eq!(r.map(|r| r.source.to_string()), Some("src".into()));
        assert!(req(&[("stream-fork-sub-offset", "0")]).is_err());
        assert!(req(&[
            ("stream-forked-from", "src"),
            ("stream-fork-sub-offset", "1")
        ])
        .is_err());
        assert!(req(&[("stream-forked-from", "src"), ("stream-fork-offset", "x")]).is_err());
        assert!(req(&[
            ("stream-forked-from", "src"),
            ("stream-fork-offset", "-1"),
            ("stream-fork-sub-offset", "-1")
        ])
        .is_err());
        assert!(req(&[("stream-forked-from", "a/b")]).is_err());
    }
}
