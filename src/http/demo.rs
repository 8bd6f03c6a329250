//! The seed's demo: the page at `/` and its stream at `/sse`.
//!
//! `/sse` plays the recorded `llama3.1` answer to each visitor, paced on
//! the visitor's own connection: one event per token, then `done`. It
//! reads the recording and nothing else, whatever id it is given, and makes
//! nothing that outlives the connection: no stream, no generation, nothing
//! counted against `--max-streams`. Its ids are `<tag>.<n>`, where the tag
//! names this recording, so a browser that reconnects with `Last-Event-ID`
//! resumes where it was, one that has seen `done` gets `204` and stops, and
//! any other id gets `event: reset` and the answer from its start.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use bytes::Bytes;

use super::error::ApiError;
use super::sse::{
    encode_out, last_event_id_param, negotiate, overloaded, resume_from, stream_headers,
};
use super::AppState;
use crate::backend::mock::MockBackend;
use crate::hub::{Hub, Out, Reset, Resume};
use crate::ids::{wire_id, EventId};
use crate::sse::EventType;
use crate::store::{Draft, Fnv};

const INDEX_HTML: &str = include_str!("../../static/index.html");
const DASHBOARD_HTML: &str = include_str!("../../static/dashboard.html");

/// The recorded answer, encoded once: one event per token, then `done`.
#[derive(Debug)]
pub struct SeedAnswer {
    tag: String,
    events: Vec<Bytes>,
    delay: Duration,
}

impl SeedAnswer {
    /// Encodes `mock`'s recorded answer, to be played one event every `delay`.
    pub fn new(mock: &MockBackend, delay: Duration) -> Self {
        let (tokens, finish) = mock.seed_answer();
        let mut text = Fnv::default();
        for t in &tokens {
            text.write(t.as_bytes());
            text.write(&[0]);
        }
        let tag = format!("{:08x}", text.0 as u32);
        let done = serde_json::json!({
            "model": finish.model,
            "done_reason": finish.done_reason,
            "tokens": tokens.len(),
            "prompt_tokens": finish.prompt_tokens,
            "completion_tokens": finish.completion_tokens,
        });
        let mut drafts: Vec<Draft> = tokens.into_iter().map(Draft::message).collect();
        drafts.push(Draft {
            event_type: EventType::new("done").ok(),
            data: done.to_string(),
            terminal: true,
        });
        let events = drafts
            .iter()
            .enumerate()
            .map(|(i, d)| d.encode(Some(&tag), EventId(i as u64 + 1)))
            .collect();
        Self { tag, events, delay }
    }

    /// Where a client resumes: the number of events it already has, and
    /// whether its id was one of this recording's (else it gets a reset).
    fn start(&self, resume: &Resume) -> (usize, bool) {
        match resume {
            Resume::Live | Resume::Beginning => (0, true),
            Resume::From(w) if w.prefix.is_none() && w.id == EventId::START => (0, true),
            Resume::From(w) if w.prefix.as_deref() == Some(self.tag.as_str()) => {
                match usize::try_from(w.id.0) {
                    Ok(n) if n <= self.events.len() => (n, true),
                    _ => (0, false),
                }
            }
            _ => (0, false),
        }
    }
}

/// `GET /`: the page.
#[utoipa::path(get, path = "/", tag = "demo",
    responses((status = 200, content_type = "text/html", description = "The demo page, which follows `/sse`")))]
pub async fn index() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-cache")], Html(INDEX_HTML))
}

/// `GET /dashboard`: the live dashboard page; its data is the stream
/// `_dashboard`.
#[utoipa::path(get, path = "/dashboard", tag = "ops",
    responses((status = 200, content_type = "text/html", description = "The live dashboard, which follows the stream `_dashboard`")))]
pub async fn dashboard() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-cache")], Html(DASHBOARD_HTML))
}

/// `GET /sse`: the recorded answer, one token per event, then `done`.
#[utoipa::path(get, path = "/sse", tag = "demo",
    params(("lastEventId" = Option<String>, Query, description = "Resume after this id (the Last-Event-ID header wins)")),
    responses(
        (status = 200, description = "The seed's answer as an event stream, paced per connection. Over the subscriber limit: only a `retry:` hint, then a clean close.", content_type = "text/event-stream"),
        (status = 204, description = "The answer was read to its end"),
        (status = 406, description = "Accept admits no event stream"),
    ))]
pub async fn sse(
    State(st): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    negotiate(&headers)?;
    let query = last_event_id_param(&uri);
    let resume = resume_from(&headers, query.as_deref());
    let seed = st.seed.clone();
    let (from, known) = seed.start(&resume);
    if known && from == seed.events.len() {
        // 204 is the one status that stops a browser's EventSource politely.
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let retry = st.hub.config().retry_ms;
    let Some(place) = Place::take(&st.hub) else {
        metrics::counter!(crate::metrics::REJECTED, "reason" => "subscriber_limit").increment(1);
        return Ok(overloaded(retry));
    };
    let mut opening = vec![Out::Retry(retry)];
    if !known {
        metrics::counter!(crate::metrics::RESETS, "reason" => "unknown").increment(1);
        opening.push(Out::Reset(Reset {
            reason: "unknown",
            requested: resume.raw(),
            missed: None,
            resume_from: wire_id(Some(&seed.tag), EventId::START),
        }));
    }
    let mut res = Response::new(Body::from_stream(play(seed, from, opening, place)));
    stream_headers(&mut res);
    Ok(res)
}

/// The body of `/sse`: the opening, then the events from `from` on, one
/// every `delay` (the first at once on a fresh start), until `done`, the
/// client leaves, or the server shuts down.
fn play(
    seed: Arc<SeedAnswer>,
    from: usize,
    opening: Vec<Out>,
    place: Place,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> {
    let first = opening
        .into_iter()
        .map(encode_out)
        .fold(Vec::new(), |mut b, o| {
            b.extend_from_slice(&o);
            b
        });
    let state = (Some(Bytes::from(first)), from, place);
    futures_util::stream::unfold(state, move |(first, next, place)| {
        let seed = seed.clone();
        async move {
            if let Some(first) = first {
                return Some((Ok(first), (None, next, place)));
            }
            let event = seed.events.get(next)?.clone();
            if next > 0 {
                let shutdown = place.hub.shutdown().clone();
                tokio::select! {
                    _ = tokio::time::sleep(seed.delay) => {}
                    _ = shutdown.cancelled() => {
                        let retry = encode_out(Out::Close(jitter(place.hub.config().retry_ms)));
                        return Some((Ok(retry), (None, usize::MAX, place)));
                    }
                }
            }
            place.hub.count_delivered(1);
            Some((Ok(event), (None, next + 1, place)))
        }
    })
}

fn jitter(retry_ms: u64) -> u64 {
    use rand::Rng;
    rand::rng().random_range(retry_ms..=retry_ms.saturating_mul(4).max(retry_ms))
}

/// A viewer's place under the node's subscriber limit, given back when the
/// connection ends (also taken by `/v1/probe`).
pub(super) struct Place {
    hub: Hub,
}

impl Place {
    /// A place, unless the node has `--max-subscribers` already.
    pub(super) fn take(hub: &Hub) -> Option<Place> {
        hub.take_place().then(|| Place { hub: hub.clone() })
    }

    /// The hub the place is held in.
    pub(super) fn hub(&self) -> &Hub {
        &self.hub
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.hub.release_place();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::WireId;

    fn seed() -> SeedAnswer {
        SeedAnswer::new(&MockBackend::seed(Duration::ZERO).unwrap(), Duration::ZERO)
    }

    #[test]
    fn ids_name_the_recording_and_resume_where_they_say() {
        let s = seed();
        assert_eq!(s.events.len(), 70);
        let at = |id: &str| s.start(&Resume::From(id.parse::<WireId>().unwrap()));
        assert_eq!(at(&format!("{}.5", s.tag)), (5, true));
        assert_eq!(at(&format!("{}.70", s.tag)), (70, true));
        assert_eq!(at("0"), (0, true));
        // Another recording's ids, a generation's, or past the end: reset.
        assert_eq!(at("deadbeef.5"), (0, false));
        assert_eq!(at("5"), (0, false));
        assert_eq!(at(&format!("{}.71", s.tag)), (0, false));
        assert_eq!(s.start(&Resume::Invalid("x".into())), (0, false));
        let last = String::from_utf8(s.events[69].to_vec()).unwrap();
        assert!(last.starts_with(&format!("id: {}.70\nevent: done\n", s.tag)));
    }
}
