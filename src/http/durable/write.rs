//! `PUT`, `POST` and `DELETE` on `/v1/stream/{name}`: create, append and
//! close, delete.
//!
//! A stream's writes on this node run one at a time under its lock, so a
//! producer's checks and its append see the same state. Across nodes the
//! append itself is ordered by the store; producer retries are caught by
//! the store's idempotency keys even when two nodes race.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, StatusCode, Uri};
use axum::response::Response;
use axum::Extension;

use super::{answer, checked_name, closing, fork, set, text, DsError, Stream, CLOSED};
use super::{EXPECTED_SEQ, EXPIRES_AT, PRODUCER_EPOCH, PRODUCER_ID, PRODUCER_SEQ};
use super::{RECEIVED_SEQ, SEQ, TTL};
use crate::auth::{Grant, Right};
use crate::durable::message::{self, BodyError};
use crate::durable::offset;
use crate::durable::producer::{self, Stamp, Verdict};
use crate::durable::{now_ms, same_type, Attrs};
use crate::http::AppState;
use crate::ids::StreamName;
use crate::store::{new_epoch, Fnv, IdempotencyKey};

/// The content type of a stream created without one.
const DEFAULT_TYPE: &str = "application/octet-stream";

/// What a `PUT` asks for.
#[derive(Debug, Clone)]
pub struct Create {
    /// The content type (the default when none was sent).
    pub content_type: String,
    /// Whether the request named one.
    pub explicit_type: bool,
    /// `Stream-TTL`.
    pub ttl: Option<u64>,
    /// `Stream-Expires-At`, as sent and in milliseconds.
    pub expires_at: Option<(String, u64)>,
    /// `Stream-Closed: true`.
    pub closed: bool,
}

impl Create {
    fn parse(h: &HeaderMap) -> Result<Create, DsError> {
        let named = text(h, &header::CONTENT_TYPE).filter(|c| is_media_type(c));
        let explicit_type = named.is_some();
        let content_type = named.unwrap_or_else(|| DEFAULT_TYPE.to_owned());
        let ttl = match text(h, &TTL) {
            None => None,
            Some(t) => Some(decimal(&t).ok_or_else(|| {
                DsError::bad(
                    "Stream-TTL is a whole number of seconds, without sign or leading zeros",
                )
            })?),
        };
        let expires_at = match text(h, &EXPIRES_AT) {
            None => None,
            Some(t) => Some((
                t.clone(),
                rfc3339_ms(&t)
                    .ok_or_else(|| DsError::bad("Stream-Expires-At is an RFC 3339 timestamp"))?,
            )),
        };
        if ttl.is_some() && expires_at.is_some() {
            return Err(DsError::bad(
                "send Stream-TTL or Stream-Expires-At, not both",
            ));
        }
        Ok(Create {
            content_type,
            explicit_type,
            ttl,
            expires_at,
            closed: closing(h),
        })
    }

    /// Whether the request sets an expiry of its own (a fork without one
    /// keeps its source's).
    pub fn own_expiry(&self) -> bool {
        self.ttl.is_some() || self.expires_at.is_some()
    }

    /// The attributes of a new stream of `content_type` made by this
    /// request: a fresh incarnation, its expiry, touched now.
    pub fn attrs(&self, content_type: &str) -> Attrs {
        Attrs {
            prefix: new_epoch(),
            content_type: content_type.to_owned(),
            ttl: self.ttl,
            expires_at: self.expires_at.as_ref().map(|e| e.0.clone()),
            expires_ms: self.expires_at.as_ref().map(|e| e.1),
            touched_ms: now_ms(),
            ..Attrs::default()
        }
    }

    /// Whether an existing stream was made with this configuration (a
    /// fork's content type and expiry may have come from its source).
    fn matches(&self, s: &Stream, fork: bool) -> bool {
        let Some(a) = &s.attrs else {
            return false;
        };
        if fork {
            return (!self.explicit_type || same_type(&a.content_type, &self.content_type))
                && (!self.own_expiry()
                    || (a.ttl == self.ttl
                        && a.expires_ms == self.expires_at.as_ref().map(|e| e.1)))
                && s.closed() == self.closed;
        }
        a.fork.is_none()
            && same_type(&a.content_type, &self.content_type)
            && a.ttl == self.ttl
            && a.expires_ms == self.expires_at.as_ref().map(|e| e.1)
            && s.closed() == self.closed
    }
}

/// `type/subtype`, roughly: what a client means as a content type.
fn is_media_type(c: &str) -> bool {
    let media = c.split(';').next().unwrap_or_default().trim();
    let ok = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    media.split_once('/').is_some_and(|(t, s)| ok(t) && ok(s))
}

/// A non-negative decimal without sign, point or leading zeros.
pub fn decimal(s: &str) -> Option<u64> {
    let ok =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    ok.then(|| s.parse().ok()).flatten()
}

/// An RFC 3339 timestamp in milliseconds since the Unix epoch (`0` for
/// any time before it).
fn rfc3339_ms(s: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .ok()?;
    Some(u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0))
}

/// The body, checked against `--max-event-bytes`.
fn limited(st: &AppState, body: &Bytes) -> Result<(), DsError> {
    if body.len() > st.max_event_bytes {
        return Err(DsError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is {} bytes; the limit is {} (--max-event-bytes)",
                body.len(),
                st.max_event_bytes
            ),
        ));
    }
    Ok(())
}

/// Names that only rill writes: generations' and rill's own.
fn reserved(name: &StreamName) -> bool {
    crate::generation::Generations::id_of(name).is_some() || crate::hub::is_internal(name)
}

fn body_error(e: BodyError) -> DsError {
    DsError::bad(e.to_string())
}

/// `PUT /v1/stream/{name}`: create a stream (or find it made alike).
#[utoipa::path(put, path = "/v1/stream/{name}", tag = "durable-streams",
    params(("name" = String, Path, description = "Stream name"),
        ("Stream-TTL" = Option<u64>, Header, description = "Sliding time to live, in seconds"),
        ("Stream-Expires-At" = Option<String>, Header, description = "Absolute expiry, RFC 3339"),
        ("Stream-Closed" = Option<String>, Header, description = "`true`: create it closed"),
        ("Stream-Forked-From" = Option<String>, Header, description = "Fork this stream"),
        ("Stream-Fork-Offset" = Option<String>, Header, description = "Where the fork diverges"),
        ("Stream-Fork-Sub-Offset" = Option<u64>, Header, description = "How far into the next append")),
    request_body(content = String, description = "Initial data, of the stream's content type", content_type = "*/*"),
    responses(
        (status = 201, description = "Created; `Stream-Next-Offset` is its tail"),
        (status = 200, description = "It exists with the same configuration"),
        (status = 400, description = "Bad name, header or body"),
        (status = 404, description = "The fork's source does not exist"),
        (status = 409, description = "It exists with another configuration, or the fork's source cannot be forked"),
        (status = 413, description = "Body larger than --max-event-bytes"),
        (status = 503, description = "Too many streams, or the store is full or unavailable; see Retry-After"),
    ))]
pub async fn create(
    State(st): State<AppState>,
    Path(name): Path<String>,
    grant: Option<Extension<Grant>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response, DsError> {
    let name = checked_name(&st, name, grant.as_deref(), Right::Publish).await?;
    let want = Create::parse(&headers)?;
    let fork = fork::Request::parse(&headers)?;
    limited(&st, &body)?;
    let _order = match &fork {
        Some(f) => st.durable.lock_both(&name, &f.source).await,
        None => vec![st.durable.lock(&name).lock().await],
    };
    if let Some(s) = Stream::find(&st, &name).await? {
        if s.gone() {
            return Err(DsError::new(
                StatusCode::CONFLICT,
                format!("stream {name} was deleted but forks of it remain: the name cannot be reused yet"),
            ));
        }
        let same_fork = match &fork {
            Some(f) => {
                let source_tail = Stream::find(&st, &f.source).await?.map(|s| s.tail());
                fork::matches(&s, f, source_tail)
            }
            None => true,
        };
        if !same_fork || !want.matches(&s, fork.is_some()) {
            return Err(DsError::new(
                StatusCode::CONFLICT,
                format!("stream {name} exists with another configuration"),
            ));
        }
        let mut h = s.headers(s.tail());
        if s.closed() {
            set(&mut h, CLOSED, "true");
        }
        return Ok(answer(StatusCode::OK, h, ()));
    }
    if reserved(&name) {
        return Err(DsError::bad(format!(
            "stream {name}: `gen-*` and `_*` streams are written by rill only"
        )));
    }
    if let Some(f) = &fork {
        return fork::create(&st, &name, &want, f, &body, location(&headers, &uri, &name)).await;
    }
    let json = crate::durable::is_json(&want.content_type);
    let first = if body.is_empty() {
        None
    } else {
        message::draft(json, &body, want.closed).map_err(body_error)?
    };
    let attrs = want.attrs(&want.content_type);
    let tail = super::make(&st, &name, &attrs, &[], first, want.closed).await?;
    let location = location(&headers, &uri, &name);
    Ok(super::created(
        &attrs.content_type,
        tail,
        location,
        want.closed,
    ))
}

/// The stream's absolute URL, from the request's scheme (or
/// `X-Forwarded-Proto`) and `Host`; the path alone without a `Host`.
fn location(h: &HeaderMap, uri: &Uri, name: &StreamName) -> String {
    let path = format!("/v1/stream/{name}");
    let host = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| text(h, &header::HOST));
    let Some(host) = host else {
        return path;
    };
    let scheme = uri
        .scheme_str()
        .map(str::to_owned)
        .or_else(|| text(h, &HeaderName::from_static("x-forwarded-proto")))
        .unwrap_or_else(|| "http".into());
    format!("{scheme}://{host}{path}")
}

/// The producer headers: all three or none.
fn stamp(h: &HeaderMap) -> Result<Option<Stamp>, DsError> {
    let id = text(h, &PRODUCER_ID);
    let epoch = text(h, &PRODUCER_EPOCH);
    let seq = text(h, &PRODUCER_SEQ);
    match (id, epoch, seq) {
        (None, None, None) => Ok(None),
        (Some(id), Some(epoch), Some(seq)) => {
            if id.is_empty() {
                return Err(DsError::bad("Producer-Id must not be empty"));
            }
            let number = |s: &str, what: &str| {
                producer::number(s)
                    .ok_or_else(|| DsError::bad(format!("{what} is an integer from 0 to 2^53-1")))
            };
            Ok(Some(Stamp {
                epoch: number(&epoch, "Producer-Epoch")?,
                seq: number(&seq, "Producer-Seq")?,
                id,
            }))
        }
        _ => Err(DsError::bad(
            "Producer-Id, Producer-Epoch and Producer-Seq go together: send all three or none",
        )),
    }
}

/// The store's idempotency key for a producer's request: one mechanism
/// with rill's own `Idempotency-Key`.
fn producer_key(stamp: &Stamp, fingerprint: u64) -> Option<IdempotencyKey> {
    let mut h = Fnv::default();
    h.write(stamp.id.as_bytes());
    IdempotencyKey::new(
        &format!("ds.{:016x}.{}.{}", h.0, stamp.epoch, stamp.seq),
        fingerprint,
    )
}

fn producer_headers(h: &mut HeaderMap, epoch: u64, seq: u64) {
    set(h, PRODUCER_EPOCH, epoch);
    set(h, PRODUCER_SEQ, seq);
}

/// `POST /v1/stream/{name}`: append, close, or both at once.
#[utoipa::path(post, path = "/v1/stream/{name}", tag = "durable-streams",
    params(("name" = String, Path, description = "Stream name"),
        ("Stream-Closed" = Option<String>, Header, description = "`true`: close it (after this body, if any)"),
        ("Stream-Seq" = Option<String>, Header, description = "A writer sequence, strictly increasing"),
        ("Producer-Id" = Option<String>, Header, description = "Idempotent producer: id"),
        ("Producer-Epoch" = Option<u64>, Header, description = "Idempotent producer: epoch"),
        ("Producer-Seq" = Option<u64>, Header, description = "Idempotent producer: sequence")),
    request_body(content = String, description = "Data, of the stream's content type", content_type = "*/*"),
    responses(
        (status = 204, description = "Appended (or closed); `Stream-Next-Offset` is the new tail"),
        (status = 200, description = "Appended for an idempotent producer"),
        (status = 400, description = "Empty body without Stream-Closed, bad headers, invalid JSON"),
        (status = 403, description = "A stale producer epoch"),
        (status = 404, description = "No such stream"),
        (status = 405, description = "A stream written by rill's own API"),
        (status = 409, description = "Closed, another content type, a producer sequence gap or a Stream-Seq regression"),
        (status = 410, description = "Deleted while forks of it remain"),
        (status = 413, description = "Body larger than --max-event-bytes"),
        (status = 503, description = "The store is full or unavailable; see Retry-After"),
    ))]
pub async fn append(
    State(st): State<AppState>,
    Path(name): Path<String>,
    grant: Option<Extension<Grant>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DsError> {
    let name = checked_name(&st, name, grant.as_deref(), Right::Publish).await?;
    let close = closing(&headers);
    let stamp = stamp(&headers)?;
    let seq = text(&headers, &SEQ);
    if body.is_empty() && !close {
        return Err(DsError::bad(
            "an append needs a body (only a close, with Stream-Closed: true, may be empty)",
        ));
    }
    limited(&st, &body)?;
    let _order = st.durable.lock(&name).lock().await;
    let Some(mut s) = Stream::find(&st, &name).await? else {
        return Err(DsError::not_found(&name));
    };
    s.refuse_gone()?;
    let Some(attrs) = s.attrs.clone() else {
        return Err(DsError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("stream {name} is written by rill's own API; the protocol reads it only"),
        ));
    };
    if s.closed() {
        let mut h = s.headers(s.tail());
        set(&mut h, CLOSED, "true");
        if let Some(closer) = stamp
            .as_ref()
            .filter(|s| attrs.closed_by.as_ref() == Some(s))
        {
            producer_headers(&mut h, closer.epoch, closer.seq);
            return Ok(answer(StatusCode::NO_CONTENT, h, ()));
        }
        if body.is_empty() {
            return Ok(answer(StatusCode::NO_CONTENT, h, ()));
        }
        return Err(
            DsError::new(StatusCode::CONFLICT, format!("stream {name} is closed"))
                .with(CLOSED, "true")
                .with(super::NEXT_OFFSET, offset::format(s.tail())),
        );
    }
    if !body.is_empty() {
        match text(&headers, &header::CONTENT_TYPE) {
            Some(ct) if same_type(&ct, &attrs.content_type) => {}
            Some(ct) => {
                return Err(DsError::new(
                    StatusCode::CONFLICT,
                    format!("stream {name} holds {}, not {ct}", attrs.content_type),
                ))
            }
            None => return Err(DsError::bad("an append with a body needs its Content-Type")),
        }
    }
    if let Some(stamp) = &stamp {
        match producer::judge(attrs.producers.get(&stamp.id), stamp) {
            Verdict::Accept => {}
            Verdict::Duplicate(last) => {
                let mut h = s.headers(s.tail());
                producer_headers(&mut h, stamp.epoch, last);
                return Ok(answer(StatusCode::NO_CONTENT, h, ()));
            }
            Verdict::StaleEpoch(current) => {
                return Err(DsError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "producer epoch {} is stale; the stream is at {current}",
                        stamp.epoch
                    ),
                )
                .with(PRODUCER_EPOCH, current))
            }
            Verdict::EpochNotAtZero => {
                return Err(DsError::bad(
                    "a new producer epoch starts at Producer-Seq 0",
                ))
            }
            Verdict::Gap(expected) => {
                return Err(DsError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "producer sequence gap: expected {expected}, got {}",
                        stamp.seq
                    ),
                )
                .with(EXPECTED_SEQ, expected)
                .with(RECEIVED_SEQ, stamp.seq))
            }
        }
    }
    if let Some(seq) = &seq {
        if attrs.seq.as_ref().is_some_and(|last| seq <= last) {
            return Err(DsError::new(
                StatusCode::CONFLICT,
                format!("Stream-Seq {seq} is not after the last one accepted"),
            ));
        }
    }
    let draft = if body.is_empty() {
        message::close_draft()
    } else {
        message::draft(attrs.is_json(), &body, close)
            .map_err(body_error)?
            .ok_or_else(|| body_error(BodyError::EmptyArray))?
    };
    let key = stamp
        .as_ref()
        .and_then(|s| producer_key(s, draft.fingerprint()));
    let appended = st.hub.publish(&name, &draft, key.as_ref()).await?;
    let now = now_ms();
    s.update(&st, |a| {
        if let Some(stamp) = &stamp {
            // Another node may have moved this producer on meanwhile.
            let known = a.producers.get(&stamp.id).map(|p| (p.epoch, p.seq));
            if known.is_none_or(|k| k < (stamp.epoch, stamp.seq)) {
                producer::record(&mut a.producers, stamp, now);
            }
            if close {
                a.closed_by = Some(stamp.clone());
            }
        }
        if let Some(seq) = &seq {
            if a.seq.as_ref().is_none_or(|last| seq > last) {
                a.seq = Some(seq.clone());
            }
        }
        a.touched_ms = a.touched_ms.max(now);
    })
    .await?;
    let mut h = s.headers(appended.id);
    if close {
        set(&mut h, CLOSED, "true");
    }
    let status = match &stamp {
        Some(stamp) => {
            producer_headers(&mut h, stamp.epoch, stamp.seq);
            // A close without data stores no data: nothing new to report.
            if appended.record.is_some() && !body.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::NO_CONTENT
            }
        }
        None => StatusCode::NO_CONTENT,
    };
    Ok(answer(status, h, ()))
}

/// `DELETE /v1/stream/{name}`: remove a stream and its data.
#[utoipa::path(delete, path = "/v1/stream/{name}", tag = "durable-streams",
    params(("name" = String, Path, description = "Stream name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such stream"),
        (status = 410, description = "Already deleted, forks of it remain"),
    ))]
pub async fn remove(
    State(st): State<AppState>,
    Path(name): Path<String>,
    grant: Option<Extension<Grant>>,
) -> Result<Response, DsError> {
    let name = checked_name(&st, name, grant.as_deref(), Right::Publish).await?;
    let order = st.durable.lock(&name).lock().await;
    let Some(mut s) = Stream::find(&st, &name).await? else {
        return Err(DsError::not_found(&name));
    };
    s.refuse_gone()?;
    let source = s
        .attrs
        .as_ref()
        .and_then(|a| a.fork.as_ref())
        .map(|f| f.source.clone());
    if s.attrs.as_ref().is_some_and(|a| a.forks > 0) {
        // Forks still read it: gone to clients, kept until the last goes.
        s.update(&st, |a| a.deleted = true).await?;
        return Ok(answer(StatusCode::NO_CONTENT, HeaderMap::new(), ()));
    }
    super::remove(&st, &name).await?;
    drop(order);
    fork::release(&st, source).await?;
    Ok(answer(StatusCode::NO_CONTENT, HeaderMap::new(), ()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_and_dates_are_checked() {
        assert_eq!(decimal("0"), Some(0));
        assert_eq!(decimal("3600"), Some(3600));
        for bad in ["", "+3600", "03600", "3600.0", "3.6e3", "-1", "abc"] {
            assert_eq!(decimal(bad), None, "{bad:?}");
        }
        assert_eq!(rfc3339_ms("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(rfc3339_ms("1970-01-01T01:00:01+01:00"), Some(1000));
        assert_eq!(rfc3339_ms("tomorrow"), None);
    }

    #[test]
    fn media_types_look_like_media_types() {
        assert!(is_media_type("text/plain"));
        assert!(is_media_type("application/json; charset=utf-8"));
        assert!(!is_media_type("plain"));
        assert!(!is_media_type(""));
        assert!(!is_media_type("/json"));
    }
}
