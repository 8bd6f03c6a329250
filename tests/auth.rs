//! Auth over real HTTP: tokens from the header, the cookie and the URL;
//! publish versus subscribe rights; patterns; and expiry ending an open
//! stream. Bad tokens and key types are in `auth_tokens.rs`.

mod common;

use std::time::Duration;

use common::jwt::{get, grant, hs256, now, post, server, SECRET};
use common::{SseClient, TestServer};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn without_a_token_stream_routes_answer_401_and_open_routes_stay_open() {
    let s = server();
    for res in [
        get(
            &s.url("/v1/streams/chat"),
            &[("accept", "text/event-stream")],
        )
        .await,
        get(&s.url("/v1/streams"), &[]).await,
        post(&s.url("/v1/streams/chat"), None, json!({"data": "x"})).await,
        post(&s.url("/v1/generations"), None, json!({"prompt": "x"})).await,
    ] {
        assert_eq!(res.status(), 401);
        let challenge = res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized");
    }
    for path in ["/", "/healthz", "/openapi.json", "/metrics"] {
        assert_eq!(get(&s.url(path), &[]).await.status(), 200, "{path}");
    }
    let mut demo = SseClient::open(&s.url("/sse"), &[]).await;
    assert_eq!(demo.status, 200);
    assert!(demo.next_event(WAIT).await.is_some());
}

#[tokio::test]
async fn header_token_publishes_and_subscribes_where_its_patterns_allow() {
    let s = server();
    let t = hs256(grant(&["chat-*"], &["chat-*"], 300));
    let res = post(
        &s.url("/v1/streams/chat-1"),
        Some(&t),
        json!({"data": "hi"}),
    )
    .await;
    assert_eq!(res.status(), 201);
    let res = post(&s.url("/v1/streams/news"), Some(&t), json!({"data": "no"})).await;
    assert_eq!(res.status(), 403);
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));
    let bearer = format!("Bearer {t}");
    let mut sub = SseClient::open(
        &s.url("/v1/streams/chat-1?lastEventId=0"),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(sub.status, 200);
    assert_eq!(sub.next_event(WAIT).await.unwrap().data, "hi");
    let denied = SseClient::open(&s.url("/v1/streams/news"), &[("authorization", &bearer)]).await;
    assert_eq!(denied.status, 403);
}

#[tokio::test]
async fn publish_and_subscribe_rights_are_separate() {
    let s = server();
    let reader = hs256(grant(&[], &["*"], 300));
    let writer = hs256(grant(&["*"], &[], 300));
    assert_eq!(
        post(&s.url("/v1/streams/a"), Some(&reader), json!({"data": "x"}))
            .await
            .status(),
        403
    );
    assert_eq!(
        post(&s.url("/v1/streams/a"), Some(&writer), json!({"data": "x"}))
            .await
            .status(),
        201
    );
    let del = |t: String| {
        let url = s.url("/v1/streams/a");
        async move {
            reqwest::Client::new()
                .delete(url)
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(del(reader.clone()).await, 403);
    let r = SseClient::open(
        &s.url("/v1/streams/a"),
        &[("authorization", &format!("Bearer {writer}"))],
    )
    .await;
    assert_eq!(r.status, 403);
    let r = SseClient::open(
        &s.url("/v1/streams/a"),
        &[("authorization", &format!("Bearer {reader}"))],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(del(writer).await, 204);
}

#[tokio::test]
async fn cookie_token_works_for_event_source() {
    let s = server();
    let writer = hs256(grant(&["room"], &[], 300));
    post(
        &s.url("/v1/streams/room"),
        Some(&writer),
        json!({"data": "from cookie"}),
    )
    .await;
    let t = hs256(grant(&[], &["room"], 300));
    let cookie = format!("theme=dark; rill_token={t}; other=1");
    let mut sub = SseClient::open(
        &s.url("/v1/streams/room?lastEventId=0"),
        &[("cookie", &cookie)],
    )
    .await;
    assert_eq!(sub.status, 200);
    assert_eq!(sub.next_event(WAIT).await.unwrap().data, "from cookie");
    let wrong = hs256(grant(&[], &["other"], 300));
    let sub = SseClient::open(
        &s.url("/v1/streams/room"),
        &[("cookie", &format!("rill_token={wrong}"))],
    )
    .await;
    assert_eq!(sub.status, 403);
}

#[tokio::test]
async fn query_token_must_be_short_lived() {
    let s = TestServer::start(&[
        "--auth-jwt-secret",
        SECRET,
        "--auth-query-token-max-secs",
        "120",
    ]);
    let short = hs256(grant(&[], &["q"], 60));
    let sub = SseClient::open(&s.url(&format!("/v1/streams/q?access_token={short}")), &[]).await;
    assert_eq!(sub.status, 200);
    let long = hs256(grant(&[], &["q"], 3600));
    let res = get(&s.url(&format!("/v1/streams/q?access_token={long}")), &[]).await;
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("must expire within"));
}

#[tokio::test]
async fn list_shows_only_streams_the_token_may_read() {
    let s = server();
    let writer = hs256(grant(&["*"], &[], 300));
    for name in ["team-a", "team-b", "private"] {
        post(
            &s.url(&format!("/v1/streams/{name}")),
            Some(&writer),
            json!({"data": "x"}),
        )
        .await;
    }
    let t = hs256(grant(&[], &["team-*"], 300));
    let res = get(
        &s.url("/v1/streams"),
        &[("authorization", &format!("Bearer {t}"))],
    )
    .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let mut names: Vec<&str> = body["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["team-a", "team-b"]);
}

#[tokio::test]
async fn generations_need_the_generate_right() {
    let s = server();
    let plain = hs256(grant(&["*"], &["*"], 300));
    let res = post(
        &s.url("/v1/generations"),
        Some(&plain),
        json!({"prompt": "hi"}),
    )
    .await;
    assert_eq!(res.status(), 403);
    let gen = hs256(json!({
        "sub": "starter",
        "exp": now() + 300,
        "rill": {"generate": true, "subscribe": ["gen-*"]}
    }));
    let res = post(
        &s.url("/v1/generations"),
        Some(&gen),
        json!({"prompt": "hi"}),
    )
    .await;
    assert_eq!(res.status(), 201);
    let started: Value = res.json().await.unwrap();
    let stream = started["stream"].as_str().unwrap();
    let mut sub = SseClient::open(
        &s.url(&format!("{stream}?lastEventId=0")),
        &[("authorization", &format!("Bearer {gen}"))],
    )
    .await;
    assert_eq!(sub.status, 200);
    let events = sub.collect(Duration::from_secs(20)).await;
    assert_eq!(events.last().unwrap().event_type, "done");
}

#[tokio::test]
async fn an_expired_token_ends_the_open_stream_and_cannot_reconnect() {
    let s = server();
    let t = hs256(grant(&["clock"], &["clock"], 4));
    let bearer = format!("Bearer {t}");
    let mut sub = SseClient::open(&s.url("/v1/streams/clock"), &[("authorization", &bearer)]).await;
    assert_eq!(sub.status, 200);
    post(
        &s.url("/v1/streams/clock"),
        Some(&t),
        json!({"data": "before expiry"}),
    )
    .await;
    assert_eq!(sub.next_event(WAIT).await.unwrap().data, "before expiry");
    // The server closes the body at expiry, within a few seconds.
    let rest = sub.collect(Duration::from_secs(10)).await;
    assert!(rest.is_empty(), "{rest:?}");
    assert!(sub.closed, "the stream should end at the token's expiry");
    let raw = String::from_utf8_lossy(&sub.raw);
    assert!(raw.ends_with(": token expired\nretry: 2000\n"), "{raw:?}");
    let again = get(&s.url("/v1/streams/clock"), &[("authorization", &bearer)]).await;
    assert_eq!(again.status(), 401);
}

#[tokio::test]
async fn percent_encoded_names_are_checked_as_the_handler_reads_them() {
    let s = server();
    let t = hs256(grant(&["chat-1"], &["chat-1"], 300));
    let res = post(
        &s.url("/v1/streams/chat%2D1"),
        Some(&t),
        json!({"data": "x"}),
    )
    .await;
    assert_eq!(res.status(), 201);
    let res = post(
        &s.url("/v1/streams/chat%2D2"),
        Some(&t),
        json!({"data": "x"}),
    )
    .await;
    assert_eq!(res.status(), 403);
    // A name outside the grammar is a 400 for a token holder, not a way in.
    let res = post(
        &s.url("/v1/streams/..%2Fchat-1"),
        Some(&t),
        json!({"data": "x"}),
    )
    .await;
    assert_eq!(res.status(), 400);
    let res = post(
        &s.url("/v1/streams/..%2Fchat-1"),
        None,
        json!({"data": "x"}),
    )
    .await;
    assert_eq!(res.status(), 401);
}
