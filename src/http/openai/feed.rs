//! A generation's stream read back as typed events, for the routes that
//! translate it into another wire shape.
//!
//! [`Feed`] follows the stream as any subscriber does (replay from the
//! first event, then live; counted as a listener, so the generation is not
//! cancelled for want of one) and parses the bytes it gets back into
//! [`Event`]s. [`stored`] reads what the store holds right now, without
//! subscribing, for answers that are a snapshot.
//!
//! Parsing here costs a little per reader; these routes are read by one
//! client per request, not fanned out to thousands, so the one encoding per
//! event stays where it matters.

use std::collections::VecDeque;

use super::error::OpenAiError;
use crate::generation::events::Event;
use crate::http::AppState;
use crate::hub::{Out, Resume, Subscribe, Subscription};
use crate::ids::{EventId, StreamName};
use crate::sse::Parser;

/// One thing read from a generation's stream.
#[derive(Debug)]
pub enum Read {
    /// An event of the generation.
    Event(Event),
    /// Nothing new for a while: send a keep-alive.
    KeepAlive,
    /// The stream cannot go on for this reader (the server is shutting
    /// down, events were lost, the stream was deleted); why, for people.
    Lost(String),
}

/// A generation's stream, from its first event, as typed events.
pub struct Feed {
    sub: Option<Subscription>,
    parser: Parser,
    ready: VecDeque<Read>,
}

/// Longest line of a rill event; the store's own limit is far below.
const MAX_LINE: usize = 64 * 1024 * 1024;

impl Feed {
    /// Follows stream `name` from its first event.
    pub async fn open(st: &AppState, name: &StreamName) -> Result<Feed, OpenAiError> {
        let sub = match st.hub.subscribe(name, &Resume::Beginning).await? {
            Subscribe::Stream(sub) => Some(*sub),
            Subscribe::FullyRead => None,
            Subscribe::Overloaded => {
                return Err(OpenAiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    format!("too many readers; the answer goes on at /v1/streams/{name}"),
                )
                .with_code("overloaded")
                .final_answer())
            }
        };
        Ok(Feed {
            sub,
            parser: Parser::new(MAX_LINE),
            ready: VecDeque::new(),
        })
    }

    /// The next thing read; `None` once the stream is over.
    pub async fn next(&mut self) -> Option<Read> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(r);
            }
            let out = self.sub.as_mut()?.next().await;
            match out {
                None => {
                    self.sub = None;
                    return None;
                }
                Some(Out::Retry(_)) => {}
                Some(Out::KeepAlive) => return Some(Read::KeepAlive),
                Some(Out::Reset(r)) => {
                    self.sub = None;
                    return Some(Read::Lost(format!(
                        "events of this answer are no longer retained ({})",
                        r.reason
                    )));
                }
                Some(Out::Close(_)) => {
                    self.sub = None;
                    return Some(Read::Lost(
                        "the server closed this stream (shutting down, or the store is unavailable)"
                            .into(),
                    ));
                }
                Some(Out::Events { bytes, .. }) => self.parse(&bytes),
            }
        }
    }

    fn parse(&mut self, bytes: &[u8]) {
        if self.parser.feed(bytes).is_err() {
            self.ready
                .push_back(Read::Lost("an event is too long".into()));
            return;
        }
        while let Some(p) = self.parser.next_event() {
            match Event::parse(&p.event_type, &p.data) {
                Ok(Some(e)) => self.ready.push_back(Read::Event(e)),
                Ok(None) if p.event_type == "end" => {
                    self.ready
                        .push_back(Read::Lost("the answer was deleted".into()));
                }
                Ok(None) => {}
                Err(e) => self.ready.push_back(Read::Lost(e.to_string())),
            }
        }
    }
}

/// What the store holds of a generation's stream now.
#[derive(Debug, Default)]
pub struct Stored {
    /// Its events, from the first.
    pub events: Vec<Event>,
    /// Whether it has ended.
    pub finished: bool,
    /// Whether it exists.
    pub exists: bool,
    /// Whether its first events are gone (past retention).
    pub lost_start: bool,
}

/// Reads every event of stream `name` the store holds, page by page.
pub async fn stored(st: &AppState, name: &StreamName) -> Result<Stored, OpenAiError> {
    const PAGE: usize = 256;
    let log = &st.hub.store().log;
    let mut out = Stored::default();
    let mut parser = Parser::new(MAX_LINE);
    let mut after = EventId::START;
    loop {
        let page = log.read_after(name, after, PAGE).await?;
        if after == EventId::START {
            out.exists = page.exists();
            out.lost_start = page.first_retained > EventId::START.next();
        }
        out.finished = page.finished;
        let count = page.records.len();
        for r in page.records {
            after = r.id;
            // Events the store gave back are ones rill wrote: whole lines.
            let _ = parser.feed(&r.frame);
        }
        if count < PAGE {
            break;
        }
    }
    while let Some(p) = parser.next_event() {
        if let Ok(Some(e)) = Event::parse(&p.event_type, &p.data) {
            out.events.push(e);
        }
    }
    Ok(out)
}
