//! The Responses API across nodes on one Redis: a background response
//! started on one node is resumed, read and cancelled on another, with the
//! same sequence numbers, because both derive them from the one stream.
mod common;

use std::time::Duration;

use common::cluster::{redis_url, Keys};
use common::openai::{post, Streamed};
use common::TestServer;
use futures_util::StreamExt;
use rill::sse::Parser;
use serde_json::{json, Value};

async fn replay(node: &TestServer, id: &str, after: u64) -> Vec<Value> {
    let url = node.url(&format!(
        "/v1/responses/{id}?stream=true&starting_after={after}"
    ));
    let s = Streamed::read(reqwest::get(url).await.unwrap()).await;
    assert_eq!(s.status, 200);
    s.json()
}

#[tokio::test]
async fn a_background_response_resumes_and_cancels_on_another_node() {
    let keys = Keys::new(&redis_url(), "responses");
    let a = keys.node(&["--mock-delay-ms", "20"]);
    let b = keys.node(&[]);
    let body = json!({"input": "a river story", "background": true, "stream": true});
    let res = post(&a.url("/v1/responses"), &body, &[]).await;
    let mut stream = res.bytes_stream();
    let mut parser = Parser::default();
    let mut first: Vec<Value> = Vec::new();
    while first.len() < 5 {
        parser.feed(&stream.next().await.unwrap().unwrap()).unwrap();
        while let Some(e) = parser.next_event() {
            first.push(serde_json::from_str(&e.data).unwrap());
        }
    }
    drop(stream);
    let id = first[0]["response"]["id"].as_str().unwrap().to_owned();
    let last_seen = first.last().unwrap()["sequence_number"].as_u64().unwrap();

    // Node B goes on from there, live, to the end.
    let rest = replay(&b, &id, last_seen).await;
    assert_eq!(rest[0]["sequence_number"], last_seen + 1);
    assert_eq!(rest.last().unwrap()["type"], "response.completed");
    // Both nodes replay alike after the end.
    assert_eq!(replay(&a, &id, 3).await, replay(&b, &id, 3).await);
    let snap: Value = reqwest::get(b.url(&format!("/v1/responses/{id}")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(snap["status"], "completed");

    // A cancel sent to B stops a background response running on A.
    let slow = keys.node(&["--mock-delay-ms", "200"]);
    let r: Value = post(
        &slow.url("/v1/responses"),
        &json!({"input": "planets", "background": true}),
        &[],
    )
    .await
    .json()
    .await
    .unwrap();
    let id = r["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c: Value = reqwest::Client::new()
        .post(b.url(&format!("/v1/responses/{id}/cancel")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(c["status"], "cancelled");
    let snap: Value = reqwest::get(slow.url(&format!("/v1/responses/{id}")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(snap["status"], "cancelled");
}
