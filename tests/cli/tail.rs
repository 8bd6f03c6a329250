//! `rill tail`: text mode for generations, the events that end it, and a
//! reader that leaves early (`| head`).

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use super::common::{publish, TestServer};
use super::fake_sse::{self, Reply};
use super::{command, finish, rill, seed_answer, WAIT};

/// Starts a mock generation of the recorded answer; returns its id.
async fn planets(server: &TestServer) -> String {
    let started: serde_json::Value = reqwest::Client::new()
        .post(server.url("/v1/generations"))
        .json(&serde_json::json!({ "prompt": "Tell me about the planets" }))
        .send()
        .await
        .expect("start")
        .json()
        .await
        .expect("json");
    started["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn a_generation_is_printed_as_text_by_default() {
    let server = TestServer::start(&["--mock-delay-ms", "1"]);
    let id = planets(&server).await;
    let stream = format!("gen-{id}");
    let from = format!("{id}.0");
    let text = rill(&["tail", &server.base, &stream, "--from", &from]).await;
    assert_eq!(text.code, Some(0), "{text:?}");
    assert_eq!(
        text.stdout,
        seed_answer(),
        "stdout is the answer, nothing added"
    );
    assert!(text.stderr.contains("[done] {"), "{}", text.stderr);

    // --lines: one event per line, as before.
    let lines = rill(&["tail", &server.base, &stream, "--from", &from, "--lines"]).await;
    assert_eq!(lines.code, Some(0), "{lines:?}");
    let got: Vec<&str> = lines.stdout.split_inclusive('\n').collect();
    assert!(got.len() > 20, "{got:?}");
    assert!(
        got.last().unwrap().starts_with("[done] {"),
        "{}",
        lines.stdout
    );
    assert!(lines.stderr.is_empty(), "{}", lines.stderr);
}

#[tokio::test]
async fn text_mode_joins_messages_on_any_stream() {
    let server = TestServer::start(&[]);
    for token in ["Hello", ", world", ".\n"] {
        publish(&server.base, "notes", token, None).await;
    }
    publish(&server.base, "notes", "typed", Some("note")).await;
    let r = rill(&[
        "tail",
        &server.base,
        "notes",
        "--from",
        "0",
        "--count",
        "4",
        "--text",
    ])
    .await;
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stdout, "Hello, world.\n");
    assert_eq!(r.stderr, "[note] typed\n");
    let r = rill(&["tail", &server.base, "notes", "--text", "--json"]).await;
    assert_ne!(r.code, Some(0), "--text and --json exclude each other");
}

/// A stream of two messages around an `error` event, then the terminal
/// event named by the path, with the connection held open after it.
fn ends_with_path_event(request: &str) -> Reply {
    let kind = request
        .split_whitespace()
        .nth(1)
        .and_then(|path| path.rsplit('/').next())
        .unwrap_or("none")
        .to_owned();
    Reply {
        body: format!(
            "retry: 50\n\nid: 1\ndata: a\n\nid: 2\nevent: error\ndata: x\n\n\
             id: 3\ndata: b\n\nid: 4\nevent: {kind}\ndata: y\n\n"
        ),
        headers: Vec::new(),
        hold: true,
    }
}

#[tokio::test]
async fn done_failed_and_end_stop_tail_but_error_does_not() {
    let fake = fake_sse::start(ends_with_path_event).await;
    for kind in ["done", "failed", "end"] {
        let r = rill(&["tail", &fake.base, kind]).await;
        assert_eq!(r.code, Some(0), "{kind}: {r:?}");
        assert_eq!(r.stdout, format!("a\n[error] x\nb\n[{kind}] y\n"), "{kind}");
    }
}

#[tokio::test]
async fn a_reader_that_leaves_early_ends_tail_quietly() {
    let server = TestServer::start(&[]);
    for n in 0..5 {
        publish(&server.base, "piped", &format!("event {n}"), None).await;
    }
    let mut child = command(&["tail", &server.base, "piped", "--from", "0"])
        .spawn()
        .expect("spawn");
    // Read three lines, as `head -n 3` does, then close the pipe.
    let stdout = child.stdout.take().expect("stdout");
    let first = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .take(3)
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .unwrap()
    .expect("three lines");
    assert_eq!(first, ["event 0", "event 1", "event 2"]);
    // tail notices the closed pipe at its next write.
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("wait").is_none() && Instant::now() < deadline {
        publish(&server.base, "piped", "more", None).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = tokio::task::spawn_blocking(move || finish(child))
        .await
        .unwrap();
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stderr.is_empty(), "quietly: {}", r.stderr);
}
