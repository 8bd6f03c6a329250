//! The Durable Streams protocol at `/v1/stream/{name}`, over real HTTP:
//! what the official conformance suite (run by `scripts/test`) cannot see
//! because it is about rill: that a protocol stream is a rill stream (rill
//! subscribers read it, and the protocol reads rill's streams and
//! generations), that rill's limits, retention and auth apply, and that
//! several nodes on one Redis serve one stream.

mod common;

use std::time::Duration;

use common::cluster::{redis_url, Keys};
use common::{jwt, publish, SseClient, TestServer};
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);
const SEED: &str = include_str!("data/ollama-generate.ndjson");

fn seed_text() -> String {
    SEED.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| v["response"].as_str().unwrap().to_owned())
        .collect()
}

fn header(res: &Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

async fn put(url: &str, content_type: &str, body: &'static [u8]) -> Response {
    Client::new()
        .put(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn post(url: &str, content_type: &str, body: Vec<u8>, extra: &[(&str, &str)]) -> Response {
    let mut req = Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

async fn get(url: &str) -> Response {
    Client::new().get(url).send().await.unwrap()
}

/// Reads a stream from `offset` to its tail by catch-up reads.
async fn read_all(url: &str, mut offset: String) -> (Vec<u8>, String, bool) {
    let mut out = Vec::new();
    loop {
        let res = get(&format!("{url}?offset={offset}")).await;
        assert_eq!(res.status(), StatusCode::OK);
        let up_to_date = header(&res, "stream-up-to-date").is_some();
        let closed = header(&res, "stream-closed").is_some();
        offset = header(&res, "stream-next-offset").expect("an offset");
        out.extend_from_slice(&res.bytes().await.unwrap());
        if up_to_date {
            return (out, offset, closed);
        }
    }
}

#[tokio::test]
async fn a_protocol_stream_is_a_rill_stream_both_ways() {
    let server = TestServer::start(&[]);
    let url = server.url("/v1/stream/notes");
    let res = put(&url, "text/plain", b"first line\n").await;
    assert_eq!(res.status(), StatusCode::CREATED);
    // Bytes SSE cannot carry as text (a CR, invalid UTF-8) come back exact.
    let odd = b"\r\x00\xff".to_vec();
    let res = post(&url, "text/plain", odd.clone(), &[]).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let (body, tail, closed) = read_all(&url, "-1".into()).await;
    let mut want = b"first line\n".to_vec();
    want.extend_from_slice(&odd);
    assert_eq!(body, want);
    assert!(!closed);

    // rill's own subscribers see one event per append; the close is the
    // stream's terminal event, after which rill's SSE ends.
    let mut sub =
        SseClient::open(&server.url("/v1/streams/notes"), &[("last-event-id", "0")]).await;
    let replay = sub.take(2, WAIT).await;
    assert_eq!(replay[0].data, "first line\n");
    assert_eq!(
        replay[1].event_type, "bytes",
        "base64 of bytes SSE cannot carry"
    );
    let res = post(&url, "text/plain", Vec::new(), &[("stream-closed", "true")]).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let end = sub.next_event(WAIT).await.expect("the close");
    assert_eq!(end.event_type, "closed");
    assert!(sub.next_event(Duration::from_secs(2)).await.is_none());
    let (_, after, closed) = read_all(&url, tail).await;
    assert!(closed);
    assert!(after > "0".repeat(16), "{after}");

    // The other way: a stream published with rill's API reads as JSON
    // messages, one per event, and cannot be appended to by the protocol.
    let id = publish(&server.base, "feed", r#"{"n":1}"#, Some("tick")).await;
    publish(&server.base, "feed", "plain text", None).await;
    let res = get(&server.url("/v1/stream/feed?offset=-1")).await;
    assert_eq!(
        header(&res, "content-type").as_deref(),
        Some("application/json")
    );
    let messages: Value = res.json().await.unwrap();
    assert_eq!(
        messages,
        json!([
            {"id": id, "event": "tick", "data": {"n": 1}},
            {"id": format!("{}.2", common::epoch(&id)), "event": "message", "data": "plain text"},
        ])
    );
    let res = post(
        &server.url("/v1/stream/feed"),
        "application/json",
        b"1".to_vec(),
        &[],
    )
    .await;
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_generation_reads_through_the_protocol_to_its_end() {
    let server = TestServer::start(&["--mock-delay-ms", "1"]);
    let res = Client::new()
        .post(server.url("/v1/generations"))
        .json(&json!({"prompt": "planets"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    let id = created["id"].as_str().expect("an id");
    let url = server.url(&format!("/v1/stream/gen-{id}"));
    // Long-poll from the start until the generation's end closes it.
    let mut offset = "-1".to_owned();
    let mut messages = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the generation never closed"
        );
        let res = get(&format!("{url}?offset={offset}&live=long-poll")).await;
        let closed = header(&res, "stream-closed").is_some();
        let status = res.status();
        offset =
            header(&res, "stream-next-offset").unwrap_or_else(|| panic!("an offset in {status}"));
        if status == StatusCode::OK {
            let page: Vec<Value> = res.json().await.unwrap();
            messages.extend(page);
        }
        if closed {
            break;
        }
    }
    let text: String = messages
        .iter()
        .filter(|m| m["event"] == "message")
        .map(|m| m["data"].as_str().unwrap())
        .collect();
    assert_eq!(text, seed_text());
    assert_eq!(messages.last().unwrap()["event"], "done");
    // Only rill writes a generation's stream.
    let res = post(&url, "application/json", b"1".to_vec(), &[]).await;
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn retention_and_limits_apply() {
    let server = TestServer::start(&["--retention-events", "3", "--max-event-bytes", "8"]);
    let url = server.url("/v1/stream/short");
    assert_eq!(
        put(&url, "text/plain", b"").await.status(),
        StatusCode::CREATED
    );
    let mut offsets = Vec::new();
    for i in 0..5 {
        let res = post(&url, "text/plain", format!("e{i}").into_bytes(), &[]).await;
        offsets.push(header(&res, "stream-next-offset").unwrap());
    }
    // Events 1 and 2 are gone: reading after event 1 would skip event 2.
    let res = get(&format!("{url}?offset={}", offsets[0])).await;
    assert_eq!(res.status(), StatusCode::GONE);
    let res = get(&format!("{url}?offset={}", offsets[1])).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap(), "e2e3e4");
    let res = post(&url, "text/plain", b"nine bytes".to_vec(), &[]).await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn token_rights_map_onto_the_protocol() {
    let server = jwt::server();
    let url = server.url("/v1/stream/team.log");
    let writer = jwt::hs256(jwt::grant(&["team.*"], &["team.*"], 600));
    let reader = jwt::hs256(jwt::grant(&[], &["team.*"], 600));
    let call = |method: reqwest::Method, token: Option<&str>| {
        let mut req = Client::new()
            .request(method, &url)
            .header("content-type", "text/plain");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req
    };
    let res = call(reqwest::Method::PUT, None).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = call(reqwest::Method::PUT, Some(&reader))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = call(reqwest::Method::PUT, Some(&writer))
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = call(reqwest::Method::POST, Some(&reader))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = call(reqwest::Method::GET, Some(&reader))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        header(&res, "cache-control")
            .unwrap()
            .starts_with("private"),
        "an authenticated read is not for shared caches"
    );
    assert_eq!(res.text().await.unwrap(), "hi");
    let res = call(reqwest::Method::HEAD, Some(&reader))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = call(reqwest::Method::DELETE, Some(&reader))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = call(reqwest::Method::DELETE, Some(&writer))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn nodes_on_one_redis_serve_one_stream() {
    let keys = Keys::new(&redis_url(), "durable");
    let a = keys.node(&["--long-poll-secs", "5"]);
    let b = keys.node(&["--long-poll-secs", "5"]);
    let on_a = a.url("/v1/stream/shared");
    let on_b = b.url("/v1/stream/shared");
    let res = put(&on_a, "application/json", b"[]").await;
    assert_eq!(res.status(), StatusCode::CREATED);
    // The same create on the other node finds it made alike.
    assert_eq!(
        put(&on_b, "application/json", b"[]").await.status(),
        StatusCode::OK
    );

    // A long-poll on B at the tail is answered by an append on A.
    let tail = header(
        &get(&format!("{on_b}?offset=now")).await,
        "stream-next-offset",
    )
    .unwrap();
    let poll = tokio::spawn({
        let url = format!("{on_b}?offset={tail}&live=long-poll");
        async move { get(&url).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stamp = [
        ("producer-id", "p1"),
        ("producer-epoch", "0"),
        ("producer-seq", "0"),
    ];
    let res = post(
        &on_a,
        "application/json",
        br#"[{"n":1},{"n":2}]"#.to_vec(),
        &stamp,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let polled = poll.await.unwrap();
    assert_eq!(polled.status(), StatusCode::OK);
    let got: Value = polled.json().await.unwrap();
    assert_eq!(got, json!([{"n": 1}, {"n": 2}]));

    // The producer's retry through the other node is a duplicate.
    let res = post(
        &on_b,
        "application/json",
        br#"[{"n":1},{"n":2}]"#.to_vec(),
        &stamp,
    )
    .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    // An SSE reader on B sees the whole stream, then an append made on A.
    let mut sse = SseClient::open(&format!("{on_b}?offset=-1&live=sse"), &[]).await;
    let first = sse.take(2, WAIT).await;
    assert_eq!(first[0].event_type, "data");
    assert_eq!(
        serde_json::from_str::<Value>(&first[0].data).unwrap(),
        json!([{"n": 1}, {"n": 2}])
    );
    assert_eq!(first[1].event_type, "control");
    let stamp = [
        ("producer-id", "p1"),
        ("producer-epoch", "0"),
        ("producer-seq", "1"),
    ];
    let res = post(&on_a, "application/json", br#"{"n":3}"#.to_vec(), &stamp).await;
    assert_eq!(res.status(), StatusCode::OK);
    let more = sse.take(2, WAIT).await;
    assert_eq!(
        serde_json::from_str::<Value>(&more[0].data).unwrap(),
        json!([{"n": 3}])
    );
    let control: Value = serde_json::from_str(&more[1].data).unwrap();
    assert_eq!(control["upToDate"], true);

    let (body, _, _) = read_all(&on_b, "-1".into()).await;
    let all: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        all,
        json!([{"n": 1}, {"n": 2}, {"n": 3}]),
        "the retry stored nothing"
    );

    // Deleted on A, gone on B.
    let res = Client::new().delete(&on_a).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(get(&on_b).await.status(), StatusCode::NOT_FOUND);
}
