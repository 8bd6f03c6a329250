//! The Responses API: `POST /v1/responses`, `GET /v1/responses/{id}` and
//! `POST /v1/responses/{id}/cancel`, background mode and resume included.
//!
//! A response is a generation (`resp_<id>` is generation `<id>`) plus its
//! [`Head`](object::Head), kept beside it. Its events are derived from the
//! generation's stream ([`events`]), so a background response runs on
//! without any connection, and `GET ...?stream=true&starting_after=N`
//! replays the stream from its first event, numbering as the first reader
//! saw, and sends what comes after `N` — on any node, during the generation
//! or after it (within retention).
//!
//! Ownership is the generation's: reading needs what reading its stream
//! needs, cancelling what cancelling it needs.

pub mod events;
pub mod object;
pub mod request;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::Value;

use super::error::OpenAiError;
use super::feed::{stored, Feed, Read};
use super::sse::{self, Step};
use super::{answered, name_generation, now_secs, start, Call};
use crate::auth::{Grant, Right};
use crate::generation::{Generations, Lifetime};
use crate::http::error::ApiError;
use crate::http::streams::check_generation;
use crate::http::AppState;
use crate::ids::{EventId, StreamName};
use crate::sse::{EventType, Parser};
use crate::store::Draft;
use events::Mapper;
use object::Head;
use request::{Parsed, ResponsesRequest};

/// Streams holding responses' heads are named this and the generation id.
const HEAD_PREFIX: &str = "_resp-";
/// How long a cancel waits for the generation to write its end.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// `POST /v1/responses`.
#[utoipa::path(post, path = "/v1/responses", tag = "openai",
    request_body(content = Object, description = "The Responses API request: `model`, `input` (text or items), `instructions`, `tools`, `tool_choice`, `stream`, `background`, `store`, and sampling fields the server allows (see docs/openai-responses.md)"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry: a retry with the same key gets the response the first attempt started")),
    responses(
        (status = 200, description = "The Response object (in the background: `queued`, output `[]`), or with `stream: true` its event stream from `response.created`; the generation's id is in `x-generation-id`"),
        (status = 400, description = "A malformed request, or one rill cannot serve (OpenAI's error shape)"),
        (status = 401, description = "With auth on: no valid token"),
        (status = 403, description = "With auth on: the token may not start generations"),
        (status = 404, description = "The model is not allowed here (`model_not_found`)"),
        (status = 429, description = "Too many generations running; see Retry-After"),
    ))]
pub async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
    grant: Option<Extension<Grant>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Response {
    let call = Call::new("/v1/responses", &headers, &grant, peer, &body);
    answered(create_answer(&st, &call).await)
}

async fn create_answer(st: &AppState, call: &Call<'_>) -> Result<Response, OpenAiError> {
    let req: ResponsesRequest = call.json()?;
    let Parsed {
        request,
        mut head,
        stream,
    } = req.parse()?;
    head.model = st.backend.model_for(&request);
    head.created_at = now_secs();
    let lifetime = if head.background {
        Lifetime::Detached
    } else {
        Lifetime::Listened
    };
    let started = start(st, request, call, lifetime).await?;
    head.generation = started.id.clone();
    // A retry with the same idempotency key answers with the first
    // attempt's head, unless that attempt never wrote one.
    let first = if started.fresh {
        None
    } else {
        load_head(st, &started.id).await?
    };
    match first {
        Some(first) => head = first,
        None => {
            if let Err(e) = save_head(st, &head).await {
                let _ = st.generations.cancel_anywhere(&started.id).await;
                return Err(e);
            }
        }
    }
    let mut res = if stream {
        let feed = Feed::open(st, &started.stream_name).await?;
        events_body(feed, head, None)
    } else if head.background {
        Json(Mapper::new(head).snapshot()).into_response()
    } else {
        let mut feed = Feed::open(st, &started.stream_name).await?;
        let mut mapper = Mapper::new(head);
        mapper.opening();
        while let Some(read) = feed.next().await {
            match read {
                Read::Event(e) => drop(mapper.on(&e)),
                Read::KeepAlive => {}
                Read::Lost(_) => break,
            }
        }
        Json(mapper.snapshot()).into_response()
    };
    name_generation(&mut res, &started);
    Ok(res)
}

/// `GET /v1/responses/{id}`.
#[utoipa::path(get, path = "/v1/responses/{id}", tag = "openai",
    params(
        ("id" = String, Path, description = "`resp_<generation id>`"),
        ("stream" = Option<bool>, Query, description = "`true`: the event stream, replayed from the start"),
        ("starting_after" = Option<u64>, Query, description = "With `stream`: only events whose `sequence_number` is above this"),
    ),
    responses(
        (status = 200, description = "The Response object as it stands, or with `stream=true` its events after `starting_after`, then live ones until it ends"),
        (status = 403, description = "With auth on: the response belongs to another subject"),
        (status = 404, description = "No such response, or it has expired, or its first events are no longer retained"),
    ))]
pub async fn retrieve(
    State(st): State<AppState>,
    Path(id): Path<String>,
    uri: Uri,
    grant: Option<Extension<Grant>>,
) -> Response {
    answered(retrieve_answer(&st, &id, &uri, grant.as_deref()).await)
}

async fn retrieve_answer(
    st: &AppState,
    id: &str,
    uri: &Uri,
    grant: Option<&Grant>,
) -> Result<Response, OpenAiError> {
    let (name, head) = find(st, id, grant, Right::Subscribe).await?;
    let (stream, after) = query(uri)?;
    if stream {
        // Numbers come from a replay from the first event: it must be kept.
        if stored_head_lost(st, &name).await? {
            return Err(lost_start(id));
        }
        let feed = Feed::open(st, &name).await?;
        return Ok(events_body(feed, head, after));
    }
    Ok(Json(snapshot(st, &name, head, id).await?).into_response())
}

/// `POST /v1/responses/{id}/cancel`.
#[utoipa::path(post, path = "/v1/responses/{id}/cancel", tag = "openai",
    params(("id" = String, Path, description = "`resp_<generation id>`")),
    responses(
        (status = 200, description = "The Response: `cancelled`, or as it ended if it ended first; cancelling again answers the same"),
        (status = 400, description = "The response was not created with `background: true`"),
        (status = 403, description = "With auth on: the response belongs to another subject"),
        (status = 404, description = "No such response"),
    ))]
pub async fn cancel(
    State(st): State<AppState>,
    Path(id): Path<String>,
    grant: Option<Extension<Grant>>,
) -> Response {
    answered(cancel_answer(&st, &id, grant.as_deref()).await)
}

async fn cancel_answer(
    st: &AppState,
    id: &str,
    grant: Option<&Grant>,
) -> Result<Response, OpenAiError> {
    let (name, head) = find(st, id, grant, Right::Publish).await?;
    if !head.background {
        return Err(OpenAiError::invalid(
            "Only responses created with background: true can be cancelled",
            None,
        ));
    }
    if st.generations.cancel_anywhere(&head.generation).await? {
        // The answer says `cancelled` once the generation wrote its end.
        let log = &st.hub.store().log;
        let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
        while !log.read_after(&name, EventId::START, 0).await?.finished
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    Ok(Json(snapshot(st, &name, head, id).await?).into_response())
}

/// The response `id`'s generation stream and head, if `grant` may reach it
/// with `right`.
async fn find(
    st: &AppState,
    id: &str,
    grant: Option<&Grant>,
    right: Right,
) -> Result<(StreamName, Head), OpenAiError> {
    let missing = || OpenAiError::not_found(format!("Response with id '{id}' not found."));
    let generation = id.strip_prefix("resp_").ok_or_else(missing)?;
    let name = Generations::stream_of(generation).map_err(|_| missing())?;
    match check_generation(st, &name, grant, right).await {
        Ok(()) => {}
        Err(ApiError::NotFound(_)) => return Err(missing()),
        Err(e) => return Err(e.into()),
    }
    let head = load_head(st, generation).await?.ok_or_else(missing)?;
    Ok((name, head))
}

/// The Response as the store holds it now.
async fn snapshot(
    st: &AppState,
    name: &StreamName,
    head: Head,
    id: &str,
) -> Result<Value, OpenAiError> {
    let s = stored(st, name).await?;
    if s.lost_start {
        return Err(lost_start(id));
    }
    let mut mapper = Mapper::new(head);
    mapper.opening();
    for e in &s.events {
        mapper.on(e);
    }
    Ok(mapper.snapshot())
}

async fn stored_head_lost(st: &AppState, name: &StreamName) -> Result<bool, OpenAiError> {
    let head = st
        .hub
        .store()
        .log
        .read_after(name, EventId::START, 0)
        .await?;
    Ok(head.first_retained > EventId::START.next())
}

fn lost_start(id: &str) -> OpenAiError {
    OpenAiError::not_found(format!(
        "Response with id '{id}' can no longer be replayed: its first events are past retention (--retention-events, --retention-bytes)"
    ))
}

/// The event stream of a response: its events numbered from 0, those after
/// `after` sent.
fn events_body(feed: Feed, head: Head, after: Option<u64>) -> Response {
    let mut mapper = Mapper::new(head);
    let opening = frames(mapper.opening(), after);
    sse::body(feed, opening, move |read| match read {
        Read::Event(e) => {
            let out = mapper.on(&e);
            Step {
                frames: frames(out, after),
                last: mapper.status().is_final(),
            }
        }
        // A cut connection for the client, which resumes by number.
        Read::Lost(_) => Step {
            frames: Vec::new(),
            last: true,
        },
        Read::KeepAlive => Step {
            frames: Vec::new(),
            last: false,
        },
    })
}

fn frames(events: Vec<Value>, after: Option<u64>) -> Vec<Bytes> {
    events
        .into_iter()
        .filter(|e| {
            let n = e["sequence_number"].as_u64().unwrap_or(0);
            after.is_none_or(|a| n > a)
        })
        .map(|e| sse::event(e["type"].as_str().unwrap_or_default(), &e))
        .collect()
}

/// `stream` and `starting_after` of the query.
fn query(uri: &Uri) -> Result<(bool, Option<u64>), OpenAiError> {
    let mut stream = false;
    let mut after = None;
    for (k, v) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        match &*k {
            "stream" => stream = matches!(&*v, "true" | "True" | "1"),
            "starting_after" => {
                let n = v.parse::<u64>().map_err(|_| {
                    OpenAiError::invalid(
                        "`starting_after` must be a sequence number",
                        Some("starting_after"),
                    )
                })?;
                after = Some(n);
            }
            _ => {}
        }
    }
    Ok((stream, after))
}

fn head_stream(generation: &str) -> Result<StreamName, OpenAiError> {
    StreamName::new(format!("{HEAD_PREFIX}{generation}"))
        .map_err(|e| OpenAiError::not_found(e.to_string()))
}

/// Writes `head` as the one event of its stream, ended at once.
async fn save_head(st: &AppState, head: &Head) -> Result<(), OpenAiError> {
    let name = head_stream(&head.generation)?;
    let draft = Draft {
        event_type: EventType::new("response").ok(),
        data: serde_json::to_string(head).unwrap_or_default(),
        terminal: true,
    };
    st.hub.publish(&name, &draft, None).await?;
    Ok(())
}

/// The head of the response of `generation`, if it is one.
async fn load_head(st: &AppState, generation: &str) -> Result<Option<Head>, OpenAiError> {
    let name = head_stream(generation)?;
    let page = st
        .hub
        .store()
        .log
        .read_after(&name, EventId::START, 1)
        .await?;
    let Some(record) = page.records.first() else {
        return Ok(None);
    };
    let mut parser = Parser::default();
    let _ = parser.feed(&record.frame);
    Ok(parser
        .next_event()
        .and_then(|e| serde_json::from_str(&e.data).ok()))
}
