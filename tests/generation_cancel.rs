//! Stopping generations: an explicit cancel and the no-listener grace close
//! the upstream request (the fake model server sees its body dropped);
//! `--generation-grace never` lets the model finish for later readers.
mod common;

use std::time::Duration;

use common::fake_model::{
    cancel_generation, json, read_generation, recorded_text, rill_for, split_generation,
    start_generation, After, FakeModel, Reply,
};
use common::SseClient;
use serde_json::json;

/// A recorded `/api/chat` answer: 40 tokens and the statistics line.
const CHAT: &str = include_str!("data/ollama-chat.ndjson");
const WAIT: Duration = Duration::from_secs(10);

/// A model that keeps talking: the recording, a token every 100 ms.
fn slow_model() -> Reply {
    Reply::ndjson(CHAT, Duration::from_millis(100), After::End)
}

#[tokio::test]
async fn cancel_stops_at_once_and_hangs_up_on_the_model() {
    let fake = FakeModel::start(slow_model()).await;
    let rill = rill_for("ollama", &fake, &[]);
    let (id, stream) = start_generation(&rill.base, json!({"prompt": "hi"})).await;
    let mut client = SseClient::open(&rill.url(&stream), &[]).await;
    let mut events = Vec::new();
    for _ in 0..3 {
        events.push(client.next_event(WAIT).await.expect("a token"));
    }
    let res = reqwest::Client::new()
        .post(rill.url(&format!("/v1/generations/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    let answer: serde_json::Value = res.json().await.unwrap();
    assert_eq!(answer, json!({"id": id, "cancelled": true}));

    assert!(FakeModel::reaches(&fake.disconnects, 1, WAIT).await);
    assert_eq!(*fake.completed.borrow(), 0);
    events.extend(client.collect(WAIT).await);
    assert!(client.closed);
    let (text, end) = split_generation(events);
    let full = recorded_text(CHAT);
    assert!(text.starts_with("Mars is red"), "{text:?}");
    assert!(
        full.starts_with(&text) && text.len() < full.len(),
        "{text:?}"
    );
    assert_eq!(end.event_type, "done");
    let done = json(&end);
    assert_eq!(done["done_reason"], "cancelled");
    assert_eq!(done["cancelled_by"], "request");
    assert_eq!(done["model"], "llama3.1");
    // Far fewer than the 41 lines were ever sent.
    assert!(*fake.sent.borrow() < 30, "sent {}", *fake.sent.borrow());

    // It is over: a second cancel finds nothing running.
    assert_eq!(cancel_generation(&rill.base, &id).await, 404);
}

#[tokio::test]
async fn nobody_listening_for_the_grace_cancels_upstream() {
    let fake = FakeModel::start(slow_model()).await;
    let rill = rill_for("ollama", &fake, &["--generation-grace", "0.3"]);
    let (_, stream) = start_generation(&rill.base, json!({"prompt": "hi"})).await;
    assert!(FakeModel::reaches(&fake.disconnects, 1, WAIT).await);
    assert_eq!(*fake.completed.borrow(), 0);
    let (text, end) = read_generation(&rill.base, &stream).await;
    let full = recorded_text(CHAT);
    assert!(
        full.starts_with(&text) && text.len() < full.len(),
        "{text:?}"
    );
    let done = json(&end);
    assert_eq!(done["done_reason"], "cancelled");
    assert_eq!(done["cancelled_by"], "no_listeners");
}

#[tokio::test]
async fn a_listener_keeps_the_generation_alive_past_the_grace() {
    let fake = FakeModel::start(Reply::ndjson(CHAT, Duration::from_millis(25), After::End)).await;
    let rill = rill_for("ollama", &fake, &["--generation-grace", "0.3"]);
    let (_, stream) = start_generation(&rill.base, json!({"prompt": "hi"})).await;
    let (text, end) = read_generation(&rill.base, &stream).await;
    assert!(text.ends_with("than ours."));
    assert_eq!(json(&end)["done_reason"], "stop");
    assert_eq!(*fake.disconnects.borrow(), 0);
}

#[tokio::test]
async fn grace_never_lets_the_model_finish_for_later_readers() {
    let fake = FakeModel::start(Reply::ndjson(CHAT, Duration::from_millis(25), After::End)).await;
    let rill = rill_for("ollama", &fake, &["--generation-grace", "never"]);
    let (_, stream) = start_generation(&rill.base, json!({"prompt": "hi"})).await;
    assert!(FakeModel::reaches(&fake.completed, 1, WAIT).await);
    assert_eq!(*fake.disconnects.borrow(), 0);
    let (text, end) = read_generation(&rill.base, &stream).await;
    assert!(text.starts_with("Mars is red") && text.ends_with("than ours."));
    let done = json(&end);
    assert_eq!(done["done_reason"], "stop");
    assert_eq!(done["completion_tokens"], 40);
}

#[tokio::test]
async fn cancel_of_an_unknown_generation_is_404() {
    let rill = common::TestServer::start(&[]);
    assert_eq!(cancel_generation(&rill.base, "0123456789abcdef").await, 404);
}
