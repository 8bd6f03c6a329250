//! `/v1/stream/{name}`: the Durable Streams protocol.
//!
//! [`write`] creates (`PUT`), appends to and closes (`POST`) and deletes
//! streams; [`read`] answers `HEAD`, catch-up reads and long-polls; [`live`]
//! tails a stream as the protocol's SSE. What they share is here: the
//! stream's state as the protocol sees it ([`Stream`]), the per-stream lock
//! that serializes a stream's writes on this node, and the protocol's
//! header names and plain-text errors. See `docs/durable-streams.md`.

pub mod fork;
pub mod live;
pub mod read;
pub mod write;

use std::hash::{Hash, Hasher};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::auth::{Grant, Right};
use crate::durable::message::View;
use crate::durable::{now_ms, Attrs};
use crate::ids::{EventId, StreamName};
use crate::store::{Draft, Replay, StoreError, StreamSpec};

/// `Stream-Next-Offset`.
pub const NEXT_OFFSET: HeaderName = HeaderName::from_static("stream-next-offset");
/// `Stream-Up-To-Date`.
pub const UP_TO_DATE: HeaderName = HeaderName::from_static("stream-up-to-date");
/// `Stream-Closed`.
pub const CLOSED: HeaderName = HeaderName::from_static("stream-closed");
/// `Stream-Cursor`.
pub const CURSOR: HeaderName = HeaderName::from_static("stream-cursor");
/// `Stream-TTL`.
pub const TTL: HeaderName = HeaderName::from_static("stream-ttl");
/// `Stream-Expires-At`.
pub const EXPIRES_AT: HeaderName = HeaderName::from_static("stream-expires-at");
/// `Stream-Seq`.
pub const SEQ: HeaderName = HeaderName::from_static("stream-seq");
/// `Producer-Id`.
pub const PRODUCER_ID: HeaderName = HeaderName::from_static("producer-id");
/// `Producer-Epoch`.
pub const PRODUCER_EPOCH: HeaderName = HeaderName::from_static("producer-epoch");
/// `Producer-Seq`.
pub const PRODUCER_SEQ: HeaderName = HeaderName::from_static("producer-seq");
/// `Producer-Expected-Seq`.
pub const EXPECTED_SEQ: HeaderName = HeaderName::from_static("producer-expected-seq");
/// `Producer-Received-Seq`.
pub const RECEIVED_SEQ: HeaderName = HeaderName::from_static("producer-received-seq");
/// `Stream-Forked-From`.
pub const FORKED_FROM: HeaderName = HeaderName::from_static("stream-forked-from");
/// `Stream-Fork-Offset`.
pub const FORK_OFFSET: HeaderName = HeaderName::from_static("stream-fork-offset");
/// `Stream-Fork-Sub-Offset`.
pub const FORK_SUB_OFFSET: HeaderName = HeaderName::from_static("stream-fork-sub-offset");
/// `stream-sse-data-encoding`.
pub const SSE_ENCODING: HeaderName = HeaderName::from_static("stream-sse-data-encoding");

/// Every header the protocol's requests carry, for CORS preflights.
pub const REQUEST_HEADERS: [&str; 11] = [
    "stream-seq",
    "stream-ttl",
    "stream-expires-at",
    "stream-closed",
    "producer-id",
    "producer-epoch",
    "producer-seq",
    "stream-forked-from",
    "stream-fork-offset",
    "stream-fork-sub-offset",
    "if-none-match",
];

/// Every header the protocol's answers carry, for CORS.
pub const RESPONSE_HEADERS: [&str; 11] = [
    "stream-next-offset",
    "stream-cursor",
    "stream-up-to-date",
    "stream-closed",
    "stream-ttl",
    "stream-expires-at",
    "stream-sse-data-encoding",
    "producer-epoch",
    "producer-seq",
    "producer-expected-seq",
    "producer-received-seq",
];

/// Locks that serialize the writes of one stream on this node.
const LOCKS: usize = 256;

/// Attempts at an attribute update that other writers keep beating.
const UPDATE_TRIES: usize = 32;

/// What the protocol's routes share.
#[derive(Debug)]
pub struct DurableState {
    locks: Box<[tokio::sync::Mutex<()>]>,
    /// How long a long-poll waits for data before `204`.
    pub long_poll: Duration,
    /// How long one SSE response lasts before the server ends it (the
    /// client goes on from its last offset; caches can collapse readers).
    pub sse_lifetime: Duration,
}

impl DurableState {
    /// State with the given long-poll wait.
    pub fn new(long_poll: Duration) -> Self {
        Self {
            locks: (0..LOCKS).map(|_| tokio::sync::Mutex::new(())).collect(),
            long_poll,
            sse_lifetime: Duration::from_secs(60),
        }
    }

    /// The lock of stream `name`'s writes.
    pub fn lock(&self, name: &StreamName) -> &tokio::sync::Mutex<()> {
        &self.locks[Self::slot(name)]
    }

    /// Locks the writes of two streams (a fork and its source), in a fixed
    /// order so that two such pairs never wait on each other.
    pub async fn lock_both(
        &self,
        a: &StreamName,
        b: &StreamName,
    ) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let (mut i, mut j) = (Self::slot(a), Self::slot(b));
        if i > j {
            std::mem::swap(&mut i, &mut j);
        }
        let mut guards = vec![self.locks[i].lock().await];
        if j != i {
            guards.push(self.locks[j].lock().await);
        }
        guards
    }

    fn slot(name: &StreamName) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        name.hash(&mut h);
        (h.finish() % LOCKS as u64) as usize
    }
}

/// A plain-text error answer, with the headers the protocol wants on it.
#[derive(Debug)]
pub struct DsError(Box<Refusal>);

#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
    headers: HeaderMap,
}

impl DsError {
    /// An error with `status` and a message for people.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self(Box::new(Refusal {
            status,
            message: message.into(),
            headers: HeaderMap::new(),
        }))
    }

    /// `400`.
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// `404` for stream `name`.
    pub fn not_found(name: &StreamName) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("no stream {name}"))
    }

    /// Adds a header.
    pub fn with(mut self, name: HeaderName, value: impl ToString) -> Self {
        if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
            self.0.headers.insert(name, v);
        }
        self
    }
}

impl From<StoreError> for DsError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Finished(name) => {
                Self::new(StatusCode::CONFLICT, format!("stream {name} is closed"))
                    .with(CLOSED, "true")
            }
            StoreError::KeyReused(_) => Self::new(StatusCode::CONFLICT, e.to_string()),
            StoreError::Exists(_) => Self::new(StatusCode::CONFLICT, e.to_string()),
            StoreError::TooManyStreams(_)
            | StoreError::Full { .. }
            | StoreError::Unavailable(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                    .with(header::RETRY_AFTER, 1)
            }
        }
    }
}

impl From<crate::http::error::ApiError> for DsError {
    fn from(e: crate::http::error::ApiError) -> Self {
        let status = e.status();
        Self::new(status, e.to_string())
    }
}

impl IntoResponse for DsError {
    fn into_response(self) -> Response {
        let Refusal {
            status,
            message,
            headers,
        } = *self.0;
        let mut res = (status, message).into_response();
        res.headers_mut().extend(headers);
        res
    }
}

/// Adds the headers the protocol asks of every answer (browser safety).
pub async fn protect(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("cross-origin"),
    );
    res
}

/// A stream as the protocol sees it now.
#[derive(Debug)]
pub struct Stream {
    /// The stream.
    pub name: StreamName,
    /// Its protocol attributes; `None` for a rill stream the protocol did
    /// not make (read-only here).
    pub attrs: Option<Attrs>,
    /// The log's head: last id, first retained, whether ended, prefix.
    pub head: Replay,
}

impl Stream {
    /// Looks stream `name` up; `None` when it does not exist (or has just
    /// expired, in which case it is removed).
    pub async fn find(st: &AppState, name: &StreamName) -> Result<Option<Stream>, DsError> {
        let log = &st.hub.store().log;
        let head = log.read_after(name, EventId::START, 0).await?;
        if !head.exists() {
            return Ok(None);
        }
        let attrs = own_attrs(log.attrs(name).await?.as_deref(), &head);
        if attrs.as_ref().is_some_and(|a| a.expired(now_ms())) {
            remove(st, name).await?;
            return Ok(None);
        }
        Ok(Some(Stream {
            name: name.clone(),
            attrs,
            head,
        }))
    }

    /// How its events read.
    pub fn view(&self) -> View {
        match &self.attrs {
            Some(a) if a.is_json() => View::Json,
            Some(_) => View::Bytes,
            None => View::Rill,
        }
    }

    /// Its content type.
    pub fn content_type(&self) -> &str {
        self.attrs
            .as_ref()
            .map_or(crate::durable::RILL_VIEW_TYPE, |a| a.content_type.as_str())
    }

    /// Whether it was deleted while forks of it remain (`410` to clients).
    pub fn gone(&self) -> bool {
        self.attrs.as_ref().is_some_and(|a| a.deleted)
    }

    /// `410` for a stream deleted while forks of it remain.
    pub fn refuse_gone(&self) -> Result<(), DsError> {
        if self.gone() {
            return Err(DsError::new(
                StatusCode::GONE,
                format!("stream {} was deleted (forks of it remain)", self.name),
            ));
        }
        Ok(())
    }

    /// Changes its attributes with `f`, on top of whatever another request
    /// or node wrote meanwhile: reads them afresh, applies `f` and swaps
    /// them in only if they are unchanged, else tries again.
    pub async fn update(&mut self, st: &AppState, f: impl Fn(&mut Attrs)) -> Result<(), DsError> {
        let log = &st.hub.store().log;
        for _ in 0..UPDATE_TRIES {
            let raw = log.attrs(&self.name).await?;
            let Some(mut a) = own_attrs(raw.as_deref(), &self.head) else {
                return Err(DsError::not_found(&self.name));
            };
            f(&mut a);
            if log
                .swap_attrs(&self.name, raw.as_deref(), Some(&a.to_json()))
                .await?
            {
                self.attrs = Some(a);
                return Ok(());
            }
        }
        Err(DsError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "stream {} is being changed by many requests at once; try again",
                self.name
            ),
        )
        .with(header::RETRY_AFTER, 1))
    }

    /// The id of its last event (its tail offset).
    pub fn tail(&self) -> EventId {
        self.head.last_id
    }

    /// Whether it is closed.
    pub fn closed(&self) -> bool {
        self.head.finished
    }

    /// Restarts a sliding TTL: a read or a write happened now.
    pub async fn touch(&mut self, st: &AppState) -> Result<(), DsError> {
        if self.attrs.as_ref().is_some_and(|a| a.slides()) {
            let now = now_ms();
            self.update(st, |a| a.touched_ms = a.touched_ms.max(now))
                .await?;
        }
        Ok(())
    }

    /// The headers every answer about the stream carries: its content
    /// type and the offset to read on from.
    pub fn headers(&self, next: EventId) -> HeaderMap {
        stream_headers(self.content_type(), next)
    }
}

/// Stored attributes, if they are those of the incarnation `head` is of:
/// attributes of an earlier one are stale.
fn own_attrs(raw: Option<&str>, head: &Replay) -> Option<Attrs> {
    raw.and_then(Attrs::from_json)
        .filter(|a| head.prefix.as_deref() == Some(a.prefix.as_str()))
}

/// A stream's content type and the offset to read on from.
fn stream_headers(content_type: &str, next: EventId) -> HeaderMap {
    let mut h = HeaderMap::new();
    set(&mut h, header::CONTENT_TYPE, content_type);
    set(&mut h, NEXT_OFFSET, crate::durable::offset::format(next));
    h
}

/// The `201` of a stream made at `location`, with its tail.
pub fn created(content_type: &str, tail: EventId, location: String, closed: bool) -> Response {
    let mut h = stream_headers(content_type, tail);
    set(&mut h, header::LOCATION, location);
    if closed {
        set(&mut h, CLOSED, "true");
    }
    answer(StatusCode::CREATED, h, ())
}

/// Makes stream `name` with `attrs` and its first events: `drafts`, then
/// `first` (the request's body), closed if `closed` (the body's event is
/// terminal already). Returns its tail.
pub async fn make(
    st: &AppState,
    name: &StreamName,
    attrs: &Attrs,
    drafts: &[Draft],
    first: Option<Draft>,
    closed: bool,
) -> Result<EventId, DsError> {
    let last = match first {
        Some(d) => Some(d),
        None => closed.then(crate::durable::message::close_draft),
    };
    let log = &st.hub.store().log;
    // The attributes first: a reader that finds the stream finds them.
    // Swapped in over whatever stale ones are there, so that a node making
    // the same stream at the same moment keeps its own: only one of the
    // two swaps succeeds.
    let stale = log.attrs(name).await?;
    if !log
        .swap_attrs(name, stale.as_deref(), Some(&attrs.to_json()))
        .await?
    {
        return Err(StoreError::Exists(name.clone()).into());
    }
    let spec = StreamSpec {
        prefix: attrs.prefix.clone(),
        owner: None,
    };
    if let Err(e) = log.create(name, spec).await {
        // Made a moment ago on another node: these attributes are not its.
        if !matches!(e, StoreError::Exists(_)) {
            log.set_attrs(name, None).await?;
        }
        return Err(e.into());
    }
    let mut tail = EventId::START;
    for d in drafts.iter().chain(last.iter()) {
        tail = st.hub.publish(name, d, None).await?.id;
    }
    Ok(tail)
}

/// Removes stream `name`, its attributes first.
pub async fn remove(st: &AppState, name: &StreamName) -> Result<bool, DsError> {
    st.hub.store().log.set_attrs(name, None).await?;
    Ok(st.hub.remove(name).await?)
}

/// Sets header `name` to `value` (dropped if it is not a valid value).
pub fn set(h: &mut HeaderMap, name: HeaderName, value: impl ToString) {
    if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
        h.insert(name, v);
    }
}

/// A header's value as text, if present and visible ASCII.
pub fn text(h: &HeaderMap, name: &HeaderName) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Whether `Stream-Closed` says `true` (any case); other values are as if
/// it were absent.
pub fn closing(h: &HeaderMap) -> bool {
    text(h, &CLOSED).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Checks stream `name` for the protocol route: its grammar, and for a
/// generation's stream, that the caller may `right` it.
pub async fn checked_name(
    st: &AppState,
    name: String,
    grant: Option<&Grant>,
    right: Right,
) -> Result<StreamName, DsError> {
    let name = StreamName::new(name).map_err(|e| DsError::bad(e.to_string()))?;
    if crate::generation::Generations::id_of(&name).is_some() {
        super::streams::check_generation(st, &name, grant, right).await?;
    }
    Ok(name)
}

/// An answer with `status`, `headers` and `body`.
pub fn answer(status: StatusCode, headers: HeaderMap, body: impl Into<Body>) -> Response {
    let mut res = (status, body.into()).into_response();
    res.headers_mut().extend(headers);
    res
}
