//! A fake model server on 127.0.0.1:0 that replays recorded streams byte for
//! byte, records what rill asked for, and observes when rill hangs up.
//!
//! Every reply body is wrapped in a guard: if the body is dropped before its
//! last chunk was sent, the upstream connection was closed under it, which is
//! what cancellation must do. Tests wait on [`FakeModel::disconnects`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use tokio::sync::watch;

use super::SseClient;
use rill::sse::ParsedEvent;

/// What happens after the last chunk of a [`Reply::Stream`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// The body ends cleanly.
    End,
    /// The body stays open and silent.
    Hang,
    /// The connection breaks (the body fails).
    Abort,
}

/// How the fake answers every request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// `200` with `content_type`, `chunks` sent `delay` apart, then `after`.
    Stream {
        /// The content type.
        content_type: &'static str,
        /// The body, in pieces.
        chunks: Vec<Bytes>,
        /// Pause before each piece.
        delay: Duration,
        /// What follows the last piece.
        after: After,
    },
    /// An error status with a JSON body.
    Status(u16, &'static str),
}

impl Reply {
    /// A recorded NDJSON stream, one line per chunk.
    pub fn ndjson(recording: &str, delay: Duration, after: After) -> Reply {
        Reply::Stream {
            content_type: "application/x-ndjson",
            chunks: recording
                .split_inclusive('\n')
                .map(|l| Bytes::from(l.to_owned()))
                .collect(),
            delay,
            after,
        }
    }

    /// A recorded event stream, one event per chunk.
    pub fn sse(recording: &str, delay: Duration, after: After) -> Reply {
        Reply::Stream {
            content_type: "text/event-stream",
            chunks: recording
                .split_inclusive("\n\n")
                .map(|l| Bytes::from(l.to_owned()))
                .collect(),
            delay,
            after,
        }
    }
}

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The path.
    pub path: String,
    /// The headers.
    pub headers: HeaderMap,
    /// The JSON body.
    pub body: serde_json::Value,
}

/// A running fake model server; it stops with the test's runtime.
pub struct FakeModel {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Requests received.
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Bodies dropped before their end: rill closed the connection.
    pub disconnects: watch::Receiver<usize>,
    /// Bodies sent to the end.
    pub completed: watch::Receiver<usize>,
    /// Chunks written so far, all requests.
    pub sent: watch::Receiver<usize>,
}

#[derive(Clone)]
struct Shared {
    reply: Reply,
    seen: Arc<Mutex<Vec<Seen>>>,
    disconnects: Arc<watch::Sender<usize>>,
    completed: Arc<watch::Sender<usize>>,
    sent: Arc<watch::Sender<usize>>,
}

/// Notes, when dropped, whether the body it rode along with was sent to its
/// end (its last chunk handed out, and nothing to follow but the end).
struct Guard {
    shared: Shared,
    finished: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let count = if self.finished {
            &self.shared.completed
        } else {
            &self.shared.disconnects
        };
        count.send_modify(|n| *n += 1);
    }
}

impl FakeModel {
    /// Starts a fake that answers every request with `reply`.
    pub async fn start(reply: Reply) -> FakeModel {
        let (disconnects, disconnects_rx) = watch::channel(0);
        let (completed, completed_rx) = watch::channel(0);
        let (sent, sent_rx) = watch::channel(0);
        let shared = Shared {
            reply,
            seen: Arc::default(),
            disconnects: Arc::new(disconnects),
            completed: Arc::new(completed),
            sent: Arc::new(sent),
        };
        let seen = shared.seen.clone();
        let app = axum::Router::new().fallback(move |req: Request| answer(shared.clone(), req));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake model");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeModel {
            base,
            seen,
            disconnects: disconnects_rx,
            completed: completed_rx,
            sent: sent_rx,
        }
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits up to `wait` until `counter` reaches `n`; whether it did.
    pub async fn reaches(counter: &watch::Receiver<usize>, n: usize, wait: Duration) -> bool {
        let mut rx = counter.clone();
        tokio::time::timeout(wait, rx.wait_for(|v| *v >= n))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

async fn answer(shared: Shared, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    shared.seen.lock().unwrap().push(Seen {
        path: parts.uri.path().to_owned(),
        headers: parts.headers,
        body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    });
    let (content_type, chunks, delay, after) = match shared.reply.clone() {
        Reply::Status(code, body) => {
            let status = StatusCode::from_u16(code).expect("status");
            return (status, [("content-type", "application/json")], body).into_response();
        }
        Reply::Stream {
            content_type,
            chunks,
            delay,
            after,
        } => (content_type, chunks, delay, after),
    };
    let guard = Guard {
        shared,
        finished: false,
    };
    let body = stream::unfold(
        (chunks.into_iter(), guard),
        move |(mut chunks, mut guard)| async move {
            tokio::time::sleep(delay).await;
            match chunks.next() {
                Some(chunk) => {
                    guard.shared.sent.send_modify(|n| *n += 1);
                    // All sent: a client may hang up now without being cut off.
                    guard.finished = chunks.len() == 0 && after == After::End;
                    Some((Ok(chunk), (chunks, guard)))
                }
                None => match after {
                    After::End => None,
                    After::Hang => std::future::pending().await,
                    After::Abort => {
                        guard.finished = true;
                        let e = std::io::Error::other("fake model breaks the connection");
                        Some((Err(e), (chunks, guard)))
                    }
                },
            }
        },
    );
    ([("content-type", content_type)], Body::from_stream(body)).into_response()
}

/// Starts a generation with the JSON `body`; returns its id and the path
/// that replays its stream from the first token.
pub async fn start_generation(base: &str, body: serde_json::Value) -> (String, String) {
    let res = reqwest::Client::new()
        .post(format!("{base}/v1/generations"))
        .json(&body)
        .send()
        .await
        .expect("start generation");
    assert_eq!(res.status().as_u16(), 201, "start status");
    let v: serde_json::Value = res.json().await.expect("json");
    let id = v["id"].as_str().expect("id").to_owned();
    assert_eq!(v["stream"], format!("/v1/streams/gen-{id}"));
    let replay = v["replay"].as_str().expect("replay").to_owned();
    assert_eq!(replay, format!("/v1/streams/gen-{id}?lastEventId={id}.0"));
    (id, replay)
}

/// Reads a generation's stream to its end: the token text, and the
/// terminal event.
pub async fn read_generation(base: &str, stream: &str) -> (String, ParsedEvent) {
    let mut client = SseClient::open(&format!("{base}{stream}"), &[]).await;
    assert_eq!(client.status, 200, "stream status");
    let events = client.collect(Duration::from_secs(30)).await;
    assert!(client.closed, "the stream ends after its terminal event");
    split_generation(events)
}

/// Splits a generation's events into the text (its `message` events) and
/// the terminal event, checking that every event before the last is one of
/// a generation's own (text, reasoning, tool calls, usage).
pub fn split_generation(mut events: Vec<ParsedEvent>) -> (String, ParsedEvent) {
    let last = events.pop().expect("a terminal event");
    let typed = ["message", "reasoning", "tool_call", "usage"];
    assert!(
        events
            .iter()
            .all(|e| typed.contains(&e.event_type.as_str())),
        "only a generation's events before the end: {events:?}"
    );
    let text = events
        .iter()
        .filter(|e| e.event_type == "message")
        .map(|e| e.data.as_str())
        .collect();
    (text, last)
}

/// The JSON of an event's data.
pub fn json(event: &ParsedEvent) -> serde_json::Value {
    serde_json::from_str(&event.data).expect("event data is JSON")
}

/// Starts rill with `--backend backend` pointed at `fake`, plus `extra` flags.
pub fn rill_for(backend: &str, fake: &FakeModel, extra: &[&str]) -> super::TestServer {
    let mut args = vec!["--backend", backend, "--backend-url", fake.base.as_str()];
    args.extend_from_slice(extra);
    super::TestServer::start(&args)
}

/// The first `n` lines of an NDJSON recording.
pub fn first_lines(recording: &str, n: usize) -> String {
    recording.split_inclusive('\n').take(n).collect()
}

/// The text a recording streams: every `response` or `message.content`.
pub fn recorded_text(ndjson: &str) -> String {
    ndjson
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| {
            v["response"]
                .as_str()
                .or(v["message"]["content"].as_str())
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// `POST /v1/generations/{id}/cancel`; returns the status.
pub async fn cancel_generation(base: &str, id: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{base}/v1/generations/{id}/cancel"))
        .send()
        .await
        .expect("cancel")
        .status()
        .as_u16()
}
