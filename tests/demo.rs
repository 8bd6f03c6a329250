//! The seed's demo at `/sse`, over real HTTP against the real binary: the
//! recorded answer token by token, `done`, headers, content negotiation,
//! resume without gap or duplicate, `204` after `done`, that `/sse` reads
//! the recording and nothing else and costs nothing that outlives a
//! visitor, keep-alives, shutdown and `RILL_LISTEN`.
mod common;

use std::time::Duration;

use common::jwt::{hs256, now, post, SECRET};
use common::{SseClient, TestServer};
use rill::sse::ParsedEvent;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// The tokens of the recorded answer, read from the data file the server
/// ships (every `response` before the final `done` object).
fn recorded_tokens() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/llama3.1-planets.ndjson"
    ))
    .expect("read recording");
    let mut tokens = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("ndjson line");
        if v["done"] == true {
            break;
        }
        tokens.push(v["response"].as_str().expect("response").to_owned());
    }
    tokens
}

/// The numeric part of a `<recording>.<n>` id.
fn seq(ev: &ParsedEvent) -> u64 {
    let (_, n) = ev
        .last_event_id
        .rsplit_once('.')
        .unwrap_or_else(|| panic!("id {:?} has no recording prefix", ev.last_event_id));
    n.parse().expect("numeric id")
}

/// The lines of the raw bytes (LF-only framing, as rill writes).
fn lines(raw: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(raw)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn done_json(ev: &ParsedEvent) -> serde_json::Value {
    assert_eq!(ev.event_type, "done", "expected done, got {ev:?}");
    serde_json::from_str(&ev.data).expect("done is JSON")
}

/// Splits raw bytes into blocks (LF-only framing, as rill writes).
fn blocks(raw: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(raw)
        .split("\n\n")
        .filter(|b| !b.is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn answer_is_exact_one_event_per_token_then_done() {
    let tokens = recorded_tokens();
    assert_eq!(tokens.len(), 69, "the recording has 69 tokens");
    let server = TestServer::start(&["--mock-delay-ms", "1"]);
    let mut c = SseClient::open(&server.url("/sse"), &[]).await;
    assert_eq!(c.status, 200);
    let h = &c.headers;
    assert_eq!(h["content-type"], "text/event-stream; charset=utf-8");
    assert_eq!(h["cache-control"], "no-cache, no-transform");
    assert_eq!(h["x-accel-buffering"], "no");
    let events = c.collect(WAIT).await;
    assert!(c.closed, "the stream closes after done");
    assert!(c.raw.starts_with(b"retry: "), "retry: comes first");
    assert!(c.retry().is_some());

    let (last, messages) = events.split_last().expect("events");
    assert_eq!(messages.len(), tokens.len());
    for (ev, tok) in messages.iter().zip(&tokens) {
        assert_eq!(ev.event_type, "message");
        assert_eq!(&ev.data, tok);
    }
    let text: String = messages.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(text, tokens.concat());
    assert!(text.contains(":\n\n"), "the token \":\\n\\n\" survives");

    // The opening `retry:` has no blank line of its own (it rides in front
    // of the first event's block); every event block carries its own id,
    // and ids count up from 1.
    let raw = String::from_utf8_lossy(&c.raw).into_owned();
    let (retry, rest) = raw.split_once('\n').expect("a first line");
    assert!(
        retry.starts_with("retry: ") && rest.starts_with("id: "),
        "{raw:.80}"
    );
    let event_blocks: Vec<String> = blocks(rest.as_bytes())
        .into_iter()
        .filter(|b| b.contains("data: "))
        .collect();
    assert_eq!(event_blocks.len(), events.len());
    assert!(event_blocks.iter().all(|b| b.starts_with("id: ")));
    let ids: Vec<u64> = events.iter().map(seq).collect();
    assert_eq!(ids, (1..=70).collect::<Vec<_>>());
    let prefix = events[0].last_event_id.rsplit_once('.').unwrap().0;
    assert!(events
        .iter()
        .all(|e| e.last_event_id.starts_with(&format!("{prefix}."))));

    let done = done_json(last);
    assert_eq!(done["model"], "llama3.1");
    assert_eq!(done["tokens"], 69);
    assert_eq!(done["done_reason"], "stop");
}

#[tokio::test]
async fn accept_negotiation() {
    let server = TestServer::start(&["--mock-delay-ms", "1"]);
    let client = reqwest::Client::new();
    let res = client
        .get(server.url("/sse"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 406);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "not_acceptable");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("text/event-stream"));

    for accept in [Some("*/*"), Some("text/*"), None] {
        let mut req = client.get(server.url("/sse"));
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200, "Accept: {accept:?}");
        assert_eq!(
            res.headers()["content-type"],
            "text/event-stream; charset=utf-8"
        );
        let body = res.text().await.unwrap();
        assert!(body.contains("event: done"), "Accept: {accept:?}");
    }
}

#[tokio::test]
async fn resume_after_cuts_loses_and_repeats_nothing() {
    let tokens = recorded_tokens();
    let server = TestServer::start(&["--mock-delay-ms", "10"]);
    let mut seen: Vec<ParsedEvent> = Vec::new();
    let mut last_id: Option<String> = None;
    // Read this many events on each connection, then drop it.
    for take in [1usize, 16, 23, 28] {
        let headers: Vec<(&str, &str)> = match &last_id {
            Some(id) => vec![("last-event-id", id.as_str())],
            None => vec![],
        };
        let mut c = SseClient::open(&server.url("/sse"), &headers).await;
        assert_eq!(c.status, 200);
        for _ in 0..take {
            let ev = c.next_event(WAIT).await.expect("event before the cut");
            assert_ne!(ev.event_type, "reset", "a resume is never a reset");
            seen.push(ev);
        }
        last_id = Some(seen.last().unwrap().last_event_id.clone());
    }
    let id = last_id.unwrap();
    let mut c = SseClient::open(&server.url("/sse"), &[("last-event-id", &id)]).await;
    seen.extend(c.collect(WAIT).await);

    let ids: Vec<u64> = seen.iter().map(seq).collect();
    assert_eq!(ids, (1..=70).collect::<Vec<_>>(), "no gap, no duplicate");
    let prefix = seen[0].last_event_id.rsplit_once('.').unwrap().0.to_owned();
    assert!(seen.iter().all(|e| e.last_event_id.starts_with(&prefix)));
    let text: String = seen[..69].iter().map(|e| e.data.as_str()).collect();
    assert_eq!(text, tokens.concat());
    assert_eq!(done_json(&seen[69])["done_reason"], "stop");
}

#[tokio::test]
async fn after_done_was_seen_the_answer_is_204() {
    let server = TestServer::start(&["--mock-delay-ms", "1"]);
    let mut c = SseClient::open(&server.url("/sse"), &[]).await;
    let events = c.collect(WAIT).await;
    let done = events.last().expect("events");
    assert_eq!(done.event_type, "done");
    let client = reqwest::Client::new();
    let res = client
        .get(server.url("/sse"))
        .header("accept", "text/event-stream")
        .header("last-event-id", &done.last_event_id)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 204);
    let res = client
        .get(server.url(&format!("/sse?lastEventId={}", done.last_event_id)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 204);
    // One before the end still gets the end.
    let before = events[events.len() - 2].last_event_id.clone();
    let mut c = SseClient::open(&server.url("/sse"), &[("last-event-id", &before)]).await;
    let rest = c.collect(WAIT).await;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].event_type, "done");
}

#[tokio::test]
async fn sse_reads_the_recording_whatever_id_it_is_given() {
    let tokens = recorded_tokens();
    let server = TestServer::start(&["--auth-jwt-secret", SECRET, "--mock-delay-ms", "1"]);
    // Someone starts a generation with a prompt of their own.
    let token = hs256(json!({"sub": "alice", "exp": now() + 60, "rill": {"generate": true}}));
    let res = post(
        &server.url("/v1/generations"),
        Some(&token),
        json!({"prompt": "my secret plan for the planets"}),
    )
    .await;
    assert_eq!(res.status().as_u16(), 201);
    let id = res.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // An anonymous visitor names that generation's ids in every way /sse
    // reads one: it gets a reset and the recording, nothing of the other.
    let by_header = vec![("last-event-id", format!("{id}.0"))];
    let paths = [
        ("/sse".to_owned(), by_header),
        (format!("/sse?lastEventId={id}.0"), vec![]),
        (format!("/sse?lastEventId={id}.3"), vec![]),
    ];
    for (path, headers) in paths {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut c = SseClient::open(&server.url(&path), &headers).await;
        assert_eq!(c.status, 200, "{path}");
        let events = c.collect(WAIT).await;
        assert_eq!(events[0].event_type, "reset", "{path}");
        let text: String = events[1..70].iter().map(|e| e.data.as_str()).collect();
        assert_eq!(text, tokens.concat(), "{path}");
        assert!(!String::from_utf8_lossy(&c.raw).contains("secret"));
        assert!(events.iter().all(|e| !e.last_event_id.starts_with(&id)));
    }
}

#[tokio::test]
async fn page_views_keep_nothing_and_lock_nobody_out() {
    let server = TestServer::start(&["--max-streams", "2", "--mock-delay-ms", "1"]);
    // Many visitors: half read the whole answer, half leave at once.
    for i in 0..60 {
        let mut c = SseClient::open(&server.url("/sse"), &[]).await;
        assert_eq!(c.status, 200);
        if i % 2 == 0 {
            assert_eq!(c.collect(WAIT).await.len(), 70);
        } else {
            c.next_event(WAIT).await.expect("a token");
        }
    }
    // Nothing outlives them: no stream is kept, both places under
    // --max-streams are free, and a generation still starts.
    let list = common::get_json(server.url("/v1/streams")).await;
    assert_eq!(list["streams"], json!([]), "{list}");
    common::publish(&server.base, "a", "x", None).await;
    let res = post(
        &server.url("/v1/generations"),
        None,
        json!({"prompt": "hi"}),
    )
    .await;
    assert_eq!(res.status().as_u16(), 201);
}

#[tokio::test]
async fn a_viewer_over_the_subscriber_limit_is_told_to_retry_not_refused() {
    let server = TestServer::start(&["--max-subscribers", "1", "--mock-delay-ms", "500"]);
    let mut first = SseClient::open(&server.url("/sse"), &[]).await;
    first.next_event(WAIT).await.expect("a token");
    let text = common::metrics_text(&server.base).await;
    assert_eq!(common::sample(&text, "rill_subscribers"), Some(1.0));
    let mut second = SseClient::open(&server.url("/sse"), &[]).await;
    assert_eq!(second.status, 200, "never 503: EventSource would give up");
    assert!(second.collect(WAIT).await.is_empty());
    assert!(second.closed);
    assert!(second.retry().is_some_and(|ms| ms >= 1000));
    drop(first);
    // The place is given back when the viewer leaves.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut again = SseClient::open(&server.url("/sse"), &[]).await;
        if again.next_event(Duration::from_secs(2)).await.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place never came back"
        );
    }
}

#[tokio::test]
async fn idle_streams_get_keepalive_comments() {
    let server = TestServer::start(&["--keepalive-secs", "1"]);
    let mut c = SseClient::open(&server.url("/v1/streams/idle"), &[]).await;
    assert_eq!(c.status, 200);
    assert!(c.next_event(Duration::from_millis(3500)).await.is_none());
    assert!(!c.closed);
    // Each keep-alive is one `:` line, with no blank line after it (a blank
    // line makes several popular clients dispatch an empty event).
    let raw = String::from_utf8_lossy(&c.raw).into_owned();
    assert!(!raw.contains("\n\n"), "no blank line at all: {raw:?}");
    let comments = lines(&c.raw).iter().filter(|l| l.as_str() == ":").count();
    assert!(comments >= 2, "keep-alives seen: {comments}");
    assert!(raw.starts_with("retry: "), "{raw:?}");
}

#[tokio::test]
async fn sigterm_tells_open_streams_to_retry_and_exits_zero() {
    let mut server = TestServer::start(&[
        "--mock-delay-ms",
        "200",
        "--retry-ms",
        "1000",
        "--shutdown-timeout-secs",
        "5",
    ]);
    let mut demo = SseClient::open(&server.url("/sse"), &[]).await;
    let mut named = SseClient::open(&server.url("/v1/streams/news"), &[]).await;
    demo.next_event(WAIT).await.expect("a token");
    let base = server.base.clone();
    let res = post(
        &server.url("/v1/generations"),
        None,
        json!({"prompt": "hi"}),
    )
    .await;
    assert_eq!(res.status().as_u16(), 201);
    common::publish(&base, "news", "before", None).await;
    named.next_event(WAIT).await.expect("an event");

    let waiter = tokio::task::spawn_blocking(move || {
        let status = server.terminate(Duration::from_secs(10));
        (server, status)
    });
    for c in [&mut demo, &mut named] {
        let rest = c.collect(Duration::from_secs(10)).await;
        assert!(c.closed, "the stream was closed");
        assert!(rest.iter().all(|e| e.event_type != "done"));
        let last = lines(&c.raw).pop().expect("lines");
        let ms: u64 = last
            .strip_prefix("retry: ")
            .unwrap_or_else(|| panic!("last line is {last:?}"))
            .parse()
            .unwrap();
        assert!((1000..=4000).contains(&ms), "jittered retry {ms}");
    }
    let (server, status) = waiter.await.unwrap();
    let status = status.expect("exited within 10 s");
    assert!(status.success(), "exit status {status:?}");
    // The running generation wrote its end before the process exited.
    let log = server.log.lock().unwrap().join("\n");
    assert!(
        log.lines()
            .any(|l| l.contains("generation cancelled") && l.contains("shutdown")),
        "{log}"
    );
    assert!(reqwest::get(format!("{base}/healthz")).await.is_err());
}

#[tokio::test]
async fn rill_listen_sets_the_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    // No subcommand and no flag: `rill` alone serves, on RILL_LISTEN.
    let server = TestServer::start_exact(&[], &[("RILL_LISTEN", &addr)]);
    assert_eq!(server.base, format!("http://{addr}"));
    let res = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
}
