//! The seed's demo at `/sse`, over real HTTP against the real binary: the
//! recorded answer token by token, `done`, headers, content negotiation,
//! resume without gap or duplicate, `204` after `done`, cancellation of an
//! answer nobody reads, keep-alives, shutdown and `RILL_LISTEN`.
mod common;

use std::time::Duration;

use common::{SseClient, TestServer};
use rill::sse::ParsedEvent;

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

/// The numeric part of a `<generation>.<n>` id.
fn seq(ev: &ParsedEvent) -> u64 {
    let (_, n) = ev
        .last_event_id
        .rsplit_once('.')
        .unwrap_or_else(|| panic!("id {:?} has no generation prefix", ev.last_event_id));
    n.parse().expect("numeric id")
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
    assert_eq!(h["content-type"], "text/event-stream");
    assert_eq!(h["cache-control"], "no-cache");
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

    // Every event block carries its own id, and ids count up from 1.
    let event_blocks: Vec<String> = blocks(&c.raw)
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
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        let body = res.text().await.unwrap();
        assert!(body.contains("event: done"), "Accept: {accept:?}");
    }
}

#[tokio::test]
async fn resume_after_cuts_loses_and_repeats_nothing() {
    let tokens = recorded_tokens();
    let server = TestServer::start(&["--mock-delay-ms", "10", "--generation-grace", "10"]);
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
async fn a_generation_nobody_reads_is_cancelled() {
    // 69 tokens 100 ms apart take about 7 s; the grace is 0.3 s.
    let server = TestServer::start(&["--mock-delay-ms", "100", "--generation-grace", "0.3"]);
    let mut c = SseClient::open(&server.url("/sse"), &[]).await;
    let first = c.next_event(WAIT).await.expect("first token");
    let prefix = first.last_event_id.rsplit_once('.').unwrap().0.to_owned();
    drop(c);
    // Wait, without listening, until the stream has ended (well before the
    // 7 s the whole answer takes).
    let stream = format!("gen-{prefix}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    loop {
        let list = common::get_json(server.url("/v1/streams")).await;
        let ended = list["streams"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == stream.as_str() && s["finished"] == true);
        if ended {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never cancelled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Replay the whole stream: it ended early, cancelled for lack of listeners.
    let mut c = SseClient::open(&server.url(&format!("/sse?lastEventId={prefix}.0")), &[]).await;
    assert_eq!(c.status, 200);
    let events = c.collect(WAIT).await;
    assert!(c.closed);
    let (last, messages) = events.split_last().expect("events");
    let done = done_json(last);
    assert_eq!(done["done_reason"], "cancelled");
    assert_eq!(done["cancelled_by"], "no_listeners");
    let tokens = done["tokens"].as_u64().unwrap();
    assert!(tokens < 69, "cancelled after {tokens} tokens");
    assert_eq!(messages.len() as u64, tokens);
    assert!(messages.iter().all(|e| e.event_type == "message"));
    assert!(events.iter().all(|e| e.last_event_id.starts_with(&prefix)));
}

#[tokio::test]
async fn a_quick_reconnect_within_the_grace_resumes_the_same_answer() {
    let tokens = recorded_tokens();
    let server = TestServer::start(&["--mock-delay-ms", "20", "--generation-grace", "3"]);
    let mut c = SseClient::open(&server.url("/sse"), &[]).await;
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(c.next_event(WAIT).await.expect("token"));
    }
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = seen.last().unwrap().last_event_id.clone();
    let mut c = SseClient::open(&server.url("/sse"), &[("last-event-id", &id)]).await;
    seen.extend(c.collect(WAIT).await);
    let text: String = seen[..seen.len() - 1]
        .iter()
        .map(|e| e.data.as_str())
        .collect();
    assert_eq!(text, tokens.concat());
    let done = done_json(seen.last().unwrap());
    assert_eq!(done["done_reason"], "stop");
    assert_eq!(done["tokens"], 69);
    assert!(done.get("cancelled_by").is_none());
}

#[tokio::test]
async fn idle_streams_get_keepalive_comments() {
    let server = TestServer::start(&["--keepalive-secs", "1"]);
    let mut c = SseClient::open(&server.url("/v1/streams/idle"), &[]).await;
    assert_eq!(c.status, 200);
    assert!(c.next_event(Duration::from_millis(3500)).await.is_none());
    assert!(!c.closed);
    let comments = blocks(&c.raw).iter().filter(|b| b.as_str() == ":").count();
    assert!(comments >= 2, "keep-alives seen: {comments}");
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
        let last = blocks(&c.raw).pop().expect("blocks");
        let ms: u64 = last
            .strip_prefix("retry: ")
            .unwrap_or_else(|| panic!("last block is {last:?}"))
            .parse()
            .unwrap();
        assert!((1000..=4000).contains(&ms), "jittered retry {ms}");
    }
    let (_server, status) = waiter.await.unwrap();
    let status = status.expect("exited within 10 s");
    assert!(status.success(), "exit status {status:?}");
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
