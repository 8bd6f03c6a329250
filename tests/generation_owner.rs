//! A generation belongs to the subject that started it: with auth on, only
//! that `sub`, or a token granted generation streams explicitly, may read,
//! cancel or delete it.
mod common;

use std::time::Duration;

use common::jwt::{hs256, now, SECRET};
use common::{SseClient, TestServer};
use serde_json::json;

fn token(sub: &str, subscribe: &[&str], publish: &[&str]) -> String {
    hs256(json!({
        "sub": sub,
        "exp": now() + 300,
        "rill": {"generate": true, "subscribe": subscribe, "publish": publish}
    }))
}

async fn status(req: reqwest::RequestBuilder, token: &str) -> u16 {
    req.bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn only_the_starter_or_an_explicit_grant_reaches_a_generation() {
    let server = TestServer::start(&[
        "--auth-jwt-secret",
        SECRET,
        "--mock-delay-ms",
        "300",
        "--generation-grace",
        "never",
    ]);
    let alice = token("alice", &[], &[]);
    // Bob may read and write every ordinary stream, but no generation.
    let bob = token("bob", &["*"], &["*"]);
    // An operator granted generation streams by name.
    let ops = token("ops", &["gen-*"], &[]);
    let res = reqwest::Client::new()
        .post(server.url("/v1/generations"))
        .bearer_auth(&alice)
        .json(&json!({"prompt": "Tell me about the planets"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let started: serde_json::Value = res.json().await.unwrap();
    let id = started["id"].as_str().unwrap().to_owned();
    let replay = server.url(started["replay"].as_str().unwrap());

    let client = reqwest::Client::new();
    let read = || client.get(&replay).header("accept", "text/event-stream");
    let cancel = || client.post(server.url(&format!("/v1/generations/{id}/cancel")));
    let delete = || client.delete(server.url(&format!("/v1/streams/gen-{id}")));
    assert_eq!(status(read(), &bob).await, 403, "bob reads");
    assert_eq!(status(cancel(), &bob).await, 403, "bob cancels");
    assert_eq!(status(delete(), &bob).await, 403, "bob deletes");

    for (who, t) in [("alice", &alice), ("ops", &ops)] {
        let auth = format!("Bearer {t}");
        let mut c = SseClient::open(&replay, &[("authorization", &auth)]).await;
        assert_eq!(c.status, 200, "{who} reads");
        let first = c
            .next_event(Duration::from_secs(10))
            .await
            .expect("a token");
        assert_eq!(first.last_event_id, format!("{id}.1"), "{who}");
    }
    assert_eq!(status(cancel(), &alice).await, 202, "alice cancels her own");
}
