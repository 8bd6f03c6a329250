//! Limits on streams answer with their documented status: `413` for a large
//! event, `400` for a bad name or a reserved event type, `503` with
//! `Retry-After` past the stream limit, and `200` + `retry:` + close for a
//! subscriber past a subscriber limit (any other status would make a
//! browser's `EventSource` give up for good).
mod common;

use std::time::Duration;

use common::{post_raw, publish, SseClient, TestServer};

const WAIT: Duration = Duration::from_secs(20);

async fn metric(base: &str, series: &str) -> f64 {
    common::sample(&common::metrics_text(base).await, series).unwrap_or(0.0)
}

#[tokio::test]
async fn an_event_over_the_size_limit_is_413() {
    let server = TestServer::start(&["--max-event-bytes", "1000"]);
    let b = &server.base;
    let (status, _, _) = post_raw(b, "sized", "x".repeat(1000), "text/plain").await;
    assert_eq!(status, 201, "exactly the limit is fine");
    let (status, _, body) = post_raw(b, "sized", "x".repeat(1001), "text/plain").await;
    assert_eq!(status, 413);
    assert_eq!(body["error"], "too_large");
    assert!(body["message"].as_str().unwrap().contains("1000"));
    // The limit is on the data, not on its JSON escaping.
    let json = serde_json::json!({ "data": "\n".repeat(1000) }).to_string();
    let (status, _, _) = post_raw(b, "sized", json, "application/json").await;
    assert_eq!(status, 201);
    let json = serde_json::json!({ "data": "é".repeat(501) }).to_string();
    let (status, _, _) = post_raw(b, "sized", json, "application/json").await;
    assert_eq!(status, 413, "1002 bytes of UTF-8");
}

#[tokio::test]
async fn bad_stream_names_are_400_on_every_method() {
    let server = TestServer::start(&[]);
    let long = "x".repeat(129);
    let bad = [
        "-lead",
        ".dot",
        "has%20space",
        "semi;colon",
        "%C3%A9t%C3%A9",
        &long,
    ];
    let client = reqwest::Client::new();
    for name in bad {
        let (status, _, body) = post_raw(&server.base, name, "x", "text/plain").await;
        assert_eq!(status, 400, "POST {name}");
        assert_eq!(body["error"], "bad_name");
        let url = server.url(&format!("/v1/streams/{name}"));
        let res = client.get(&url).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 400, "GET {name}");
        let res = client.delete(&url).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 400, "DELETE {name}");
    }
    for good in ["a", "x_", "A-b.c_9", &"y".repeat(128)] {
        let (status, _, _) = post_raw(&server.base, good, "x", "text/plain").await;
        assert_eq!(status, 201, "{good}");
    }
    // `_x` follows the grammar but `_*` streams belong to rill.
    let (status, _, body) = post_raw(&server.base, "_x", "x", "text/plain").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "bad_request");
}

#[tokio::test]
async fn reserved_and_broken_event_types_are_400() {
    let server = TestServer::start(&[]);
    for t in ["reset", "end", "error", "a\nb", "a\rb", ""] {
        let body = serde_json::json!({ "data": "x", "event": t }).to_string();
        let (status, _, json) = post_raw(&server.base, "typed", body, "application/json").await;
        assert_eq!(status, 400, "{t:?}");
        assert!(json["message"].as_str().is_some());
    }
    let (status, _, _) = post_raw(&server.base, "gen-x", "x", "text/plain").await;
    assert_eq!(status, 400, "generation streams are written by generations");
}

#[tokio::test]
async fn publishing_past_the_stream_limit_is_503_with_retry_after() {
    let server = TestServer::start(&["--max-streams", "3"]);
    for s in ["s1", "s2", "s3"] {
        publish(&server.base, s, "x", None).await;
    }
    let (status, headers, body) = post_raw(&server.base, "s4", "x", "text/plain").await;
    assert_eq!(status, 503);
    assert_eq!(body["error"], "too_many_streams");
    let after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(after > 0);
    // Existing streams still take events; deleting one frees a place.
    publish(&server.base, "s1", "y", None).await;
    assert_eq!(
        common::delete(&server.base, "s2").await.status().as_u16(),
        204
    );
    publish(&server.base, "s4", "x", None).await;
}

/// Asserts `c` was turned away the way a browser comes back from.
async fn assert_turned_away(c: &mut SseClient) {
    assert_eq!(c.status, 200);
    assert_eq!(
        c.headers["content-type"],
        "text/event-stream; charset=utf-8"
    );
    assert!(c.collect(WAIT).await.is_empty(), "no events");
    assert!(c.closed, "closed cleanly");
    assert!(c.retry().is_some_and(|ms| ms >= 1000), "a retry: hint");
}

#[tokio::test]
async fn subscribers_past_the_per_stream_limit_get_retry_and_close() {
    let server = TestServer::start(&["--max-subscribers-per-stream", "2", "--keepalive-secs", "1"]);
    let url = server.url("/v1/streams/crowded");
    let mut a = SseClient::open(&url, &[]).await;
    let mut b = SseClient::open(&url, &[]).await;
    let mut c = SseClient::open(&url, &[]).await;
    assert_turned_away(&mut c).await;
    // Another stream is not affected, and the two in still get events.
    let mut other = SseClient::open(&server.url("/v1/streams/quiet"), &[]).await;
    publish(&server.base, "crowded", "hi", None).await;
    assert_eq!(a.take(1, WAIT).await[0].data, "hi");
    assert_eq!(b.take(1, WAIT).await[0].data, "hi");
    assert!(other.next_event(Duration::from_millis(200)).await.is_none());
    assert!(!other.closed);
    let limit = r#"rill_rejected_total{reason="subscriber_limit"}"#;
    assert_eq!(metric(&server.base, limit).await, 1.0);
    // A place frees up when a subscriber leaves.
    drop(a);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut d = SseClient::open(&url, &[]).await;
        if d.next_event(Duration::from_millis(100)).await.is_none() && !d.closed {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no place freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn subscribers_past_the_node_limit_get_retry_and_close() {
    let server = TestServer::start(&["--max-subscribers", "3"]);
    let mut held = Vec::new();
    for s in ["n1", "n2", "n3"] {
        held.push(SseClient::open(&server.url(&format!("/v1/streams/{s}")), &[]).await);
    }
    let mut over = SseClient::open(&server.url("/v1/streams/n4"), &[]).await;
    assert_turned_away(&mut over).await;
    let mut demo = SseClient::open(&server.url("/sse"), &[]).await;
    assert_turned_away(&mut demo).await;
    let limit = r#"rill_rejected_total{reason="subscriber_limit"}"#;
    assert_eq!(metric(&server.base, limit).await, 2.0);
    assert_eq!(metric(&server.base, "rill_subscribers").await, 3.0);
    let started = r#"rill_generations_started_total{backend="mock"}"#;
    assert_eq!(metric(&server.base, started).await, 0.0, "nothing started");
}

#[tokio::test]
async fn concurrent_subscribers_never_overshoot_the_limit() {
    let server = TestServer::start(&["--max-subscribers-per-stream", "3"]);
    let url = server.url("/v1/streams/rush");
    let opens = (0..12).map(|_| SseClient::open(&url, &[]));
    let mut clients = futures_util::future::join_all(opens).await;
    // The turned-away are closed within the wait; the admitted stay open.
    let waits = clients.iter_mut().map(|c| async move {
        assert_eq!(c.status, 200);
        assert!(c.next_event(Duration::from_secs(3)).await.is_none());
        !c.closed
    });
    let admitted = futures_util::future::join_all(waits)
        .await
        .into_iter()
        .filter(|open| *open)
        .count();
    assert_eq!(admitted, 3);
    let limit = r#"rill_rejected_total{reason="subscriber_limit"}"#;
    assert_eq!(metric(&server.base, limit).await, 9.0);
}
