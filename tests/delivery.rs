//! The two paths of an HTTP/1.1 event stream: parked (rill's own, the
//! default: after the head the connection leaves hyper and one writer per
//! stream serves it) and hyper (`--delivery hyper`). Both must put the same
//! bytes on the wire; the parked path must also notice a client that hangs
//! up at once, and hand a connection whose first answer is not a stream
//! back to hyper for what comes next.
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{publish, SseClient, TestServer};

/// Sends `request` on a fresh connection and reads until `until` appears in
/// what came back (or 5 s pass); returns what came back.
fn exchange(s: &mut TcpStream, request: &str, until: &str) -> String {
    s.write_all(request.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !String::from_utf8_lossy(&got).contains(until) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn connect(server: &TestServer) -> TcpStream {
    TcpStream::connect(server.base.trim_start_matches("http://")).unwrap()
}

/// The response head's lines, lower-cased, without the date.
fn head_lines(raw: &str) -> Vec<String> {
    let head = raw.split("\r\n\r\n").next().unwrap_or_default();
    let mut lines: Vec<String> = head
        .lines()
        .map(str::to_ascii_lowercase)
        .filter(|l| !l.starts_with("date:"))
        .collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn both_paths_send_the_same_head_and_body() {
    let mut seen = Vec::new();
    for delivery in ["parked", "hyper"] {
        let server = TestServer::start(&["--delivery", delivery]);
        let first = publish(&server.base, "same", "one\ntwo", None).await;
        publish(&server.base, "same", "", Some("typed")).await;
        let epoch = common::epoch(&first).to_owned();
        let mut s = connect(&server);
        let raw = tokio::task::spawn_blocking(move || {
            let req = "GET /v1/streams/same?lastEventId=0 HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n";
            exchange(&mut s, req, "event: typed")
        })
        .await
        .unwrap();
        let body = raw
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        seen.push((head_lines(&raw), body.replace(&epoch, "E")));
    }
    assert_eq!(seen[0], seen[1], "parked vs hyper");
    assert!(seen[0].0.contains(&"transfer-encoding: chunked".to_owned()));
    assert!(seen[0]
        .0
        .contains(&"content-type: text/event-stream; charset=utf-8".to_owned()));
}

#[tokio::test]
async fn a_client_that_hangs_up_gives_its_place_back_at_once() {
    // Keep-alives once a minute: nothing is written that would notice.
    let server = TestServer::start(&["--keepalive-secs", "60"]);
    let url = server.url("/v1/streams/quiet");
    let stay = SseClient::open(&url, &[]).await;
    let leave: Vec<SseClient> =
        futures_util::future::join_all((0..3).map(|_| SseClient::open(&url, &[]))).await;
    let count = |text: &str, series: &str| common::sample(text, series).unwrap_or(-1.0);
    let text = common::metrics_text(&server.base).await;
    assert_eq!(count(&text, "rill_subscribers"), 4.0);
    assert_eq!(count(&text, "rill_parked_subscribers"), 4.0, "all parked");
    drop(leave);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = common::metrics_text(&server.base).await;
        if count(&text, "rill_subscribers") == 1.0 && count(&text, "rill_parked_subscribers") == 1.0
        {
            break;
        }
        assert!(Instant::now() < deadline, "places not given back:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(stay);
}

#[tokio::test]
async fn an_answer_that_is_not_a_stream_leaves_the_connection_to_hyper() {
    let server = TestServer::start(&[]);
    let mut s = connect(&server);
    let (first, second) = tokio::task::spawn_blocking(move || {
        let bad = exchange(
            &mut s,
            "GET /v1/streams/-bad HTTP/1.1\r\nHost: x\r\n\r\n",
            "}",
        );
        let next = exchange(&mut s, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "}");
        (bad, next)
    })
    .await
    .unwrap();
    assert!(first.starts_with("HTTP/1.1 400 "), "{first}");
    assert!(
        first.to_ascii_lowercase().contains("content-length: "),
        "{first}"
    );
    assert!(first.contains("\"bad_name\""), "{first}");
    assert!(second.starts_with("HTTP/1.1 200 "), "{second}");
    assert!(second.contains("\"status\":\"ok\""), "{second}");
}

#[tokio::test]
async fn odd_heads_get_the_same_answer_on_both_paths() {
    let odd = [
        "GET /v1/streams/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
        "GET /v1/streams/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET /v1/streams/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        "GET /v1/streams/x HTTP/1.1\r\nHost: x\r\n folded: header\r\n\r\n",
        "GET /v1/streams/x HTTP/1.1\r\nHo st: x\r\n\r\n",
        "GET /v1/streams/x HTTP/1.0\r\n\r\n",
        "GET /v1/streams/%zz HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /v1/streams/x?lastEventId=%ff HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    let mut answers = Vec::new();
    for delivery in ["parked", "hyper"] {
        let server = TestServer::start(&["--delivery", delivery]);
        let mut got = Vec::new();
        for req in odd {
            let mut s = connect(&server);
            let answer = tokio::task::spawn_blocking(move || exchange(&mut s, req, "\r\n\r\n"))
                .await
                .unwrap();
            got.push(answer.lines().next().unwrap_or("(closed)").to_owned());
        }
        answers.push(got);
    }
    assert_eq!(answers[0], answers[1], "parked vs hyper");
    let refused = answers[0].iter().filter(|a| a.contains(" 400 ")).count();
    assert!(refused >= 4, "the odd ones are refused: {:?}", answers[0]);
}

#[tokio::test]
async fn publishes_get_the_same_answers_on_both_paths() {
    type Case = (
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
    );
    let cases: [Case; 7] = [
        ("ok", "hello", &[("content-type", "text/plain")]),
        (
            "ok",
            r#"{"data": {"n": 1}, "event": "tick"}"#,
            &[("content-type", "application/json")],
        ),
        (
            "ok",
            r#"{"data": "x", "event": "error"}"#,
            &[("content-type", "application/json")],
        ),
        ("ok", "{broken", &[("content-type", "application/json")]),
        ("-bad", "x", &[]),
        ("gen-x", "x", &[]),
        ("ok", "again", &[("idempotency-key", "has space")]),
    ];
    let mut answers = Vec::new();
    for delivery in ["parked", "hyper"] {
        let server = TestServer::start(&["--delivery", delivery, "--max-event-bytes", "1000"]);
        let client = reqwest::Client::new();
        let mut got = Vec::new();
        for (stream, body, headers) in cases {
            let mut req = client
                .post(server.url(&format!("/v1/streams/{stream}")))
                .body(body);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let v: serde_json::Value = res.json().await.unwrap_or_default();
            // Ids differ by incarnation: compare their number only.
            let shown = match v["id"].as_str() {
                Some(id) => serde_json::json!({ "n": common::seq(id) }),
                None => v,
            };
            got.push((status, shown));
        }
        let big = client
            .post(server.url("/v1/streams/ok"))
            .body("x".repeat(10_000))
            .send()
            .await
            .unwrap();
        got.push((big.status().as_u16(), serde_json::Value::Null));
        answers.push(got);
    }
    assert_eq!(answers[0], answers[1], "parked vs hyper");
    let statuses: Vec<u16> = answers[0].iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [201, 201, 400, 400, 400, 400, 400, 413]);
}

#[tokio::test]
async fn a_connection_can_publish_and_subscribe_in_turn() {
    let server = TestServer::start(&[]);
    let mut s = connect(&server);
    let raw = tokio::task::spawn_blocking(move || {
        let one = exchange(
            &mut s,
            "POST /v1/streams/turns HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none",
            "}",
        );
        let two = exchange(
            &mut s,
            "POST /v1/streams/turns HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\ntwo",
            "}",
        );
        let sub = exchange(
            &mut s,
            "GET /v1/streams/turns?lastEventId=0 HTTP/1.1\r\nHost: x\r\n\r\n",
            "data: two",
        );
        (one, two, sub, s)
    })
    .await
    .unwrap();
    assert!(raw.0.starts_with("HTTP/1.1 201 "), "{}", raw.0);
    assert!(raw.1.starts_with("HTTP/1.1 201 "), "{}", raw.1);
    assert!(
        raw.2.contains("data: one") && raw.2.contains("data: two"),
        "{}",
        raw.2
    );
    let text = common::metrics_text(&server.base).await;
    assert_eq!(common::sample(&text, "rill_parked_subscribers"), Some(1.0));
}

/// A stream with many parked subscribers, written one `send` each or in
/// io_uring batches (`--fanout-writes`), one of which stops reading: the
/// others get every event once and in order, and the slow one, when it
/// reads again, gets them all too (caught up by its drain), never a gap.
#[tokio::test]
async fn both_fanout_writes_deliver_every_event_to_every_member() {
    const READERS: usize = 39;
    const EVENTS: usize = 150;
    for writes in ["send", "uring"] {
        let server = TestServer::start(&["--fanout-writes", writes, "--send-buffer-bytes", "4096"]);
        let url = format!("{}/v1/streams/many", server.base);
        let mut readers = Vec::new();
        for _ in 0..READERS {
            readers.push(SseClient::open(&url, &[]).await);
        }
        // The slow member: its head is read, then nothing until the end.
        let mut slow = connect(&server);
        let head = exchange(
            &mut slow,
            "GET /v1/streams/many HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n",
            "\r\n\r\n",
        );
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let body = "x".repeat(2000);
        for i in 0..EVENTS {
            publish(&server.base, "many", &format!("{i} {body}"), None).await;
        }
        for (r, reader) in readers.iter_mut().enumerate() {
            for i in 0..EVENTS {
                let e = reader.next_event(Duration::from_secs(10)).await;
                let e = e.unwrap_or_else(|| panic!("{writes}: reader {r} stopped at {i}"));
                assert_eq!(e.data, format!("{i} {body}"), "{writes}: reader {r}");
            }
        }
        let got = tokio::task::spawn_blocking(move || {
            let mut parser = rill::sse::Parser::new(64 * 1024);
            let mut seen = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut buf = [0u8; 16384];
            slow.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            while seen.len() < EVENTS && Instant::now() < deadline {
                match slow.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        // The body is chunked: a chunk-size line reads as
                        // an unknown field, which the parser ignores, and a
                        // chunk's closing CRLF as an empty line with nothing
                        // pending.
                        parser.feed(&buf[..n]).unwrap();
                        while let Some(e) = parser.next_event() {
                            seen.push(e);
                        }
                    }
                    Err(_) => {}
                }
            }
            seen
        })
        .await
        .unwrap();
        let want: Vec<String> = (0..EVENTS).map(|i| format!("{i} {body}")).collect();
        let got: Vec<String> = got.into_iter().map(|e| e.data).collect();
        assert_eq!(got.len(), want.len(), "{writes}: the slow member's events");
        assert!(
            got == want,
            "{writes}: the slow member got a gap or a repeat"
        );
    }
}
