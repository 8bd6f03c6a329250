//! The Responses API over real HTTP: events numbered from 0 with item ids
//! that match, background mode whose replay after any `starting_after` is
//! exactly the rest of the first reading (during the run and after it),
//! snapshots, the three ends (completed, incomplete, failed), cancel, and
//! what cannot be replayed.
mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::fake_model::{start_generation, After, FakeModel, Reply};
use common::openai::{post, Streamed};
use common::{jwt, TestServer};
use futures_util::StreamExt;
use rill::sse::Parser;
use serde_json::{json, Value};

const MS: Duration = Duration::from_millis(1);
const WAIT: Duration = Duration::from_secs(30);

async fn create(server: &TestServer, body: Value) -> Streamed {
    Streamed::read(post(&server.url("/v1/responses"), &body, &[]).await).await
}

async fn get(server: &TestServer, path: &str) -> reqwest::Response {
    reqwest::get(server.url(path)).await.expect("get")
}

async fn replay(server: &TestServer, id: &str, after: Option<u64>) -> Vec<Value> {
    let q = after.map_or(String::new(), |n| format!("&starting_after={n}"));
    let s = Streamed::read(get(server, &format!("/v1/responses/{id}?stream=true{q}")).await).await;
    assert_eq!(s.status, 200);
    s.assert_sdk_framing();
    s.json()
}

/// Checks what the SDKs' stream helpers check.
fn assert_well_formed(events: &[Value]) {
    let mut items: HashMap<u64, String> = HashMap::new();
    for (n, e) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], n as u64, "{e}");
        if let Some(i) = e["output_index"].as_u64() {
            if e["type"] == "response.output_item.added" {
                assert_eq!(i as usize, items.len(), "items are added in order");
                items.insert(i, e["item"]["id"].as_str().unwrap().to_owned());
            }
            if let Some(id) = e["item_id"].as_str() {
                assert_eq!(items[&i], id, "{e}");
            }
        }
    }
    assert_eq!(events[0]["type"], "response.created");
    assert_eq!(events[1]["type"], "response.in_progress");
    let added = events
        .iter()
        .filter(|e| e["type"] == "response.output_item.added")
        .count();
    let done = events
        .iter()
        .filter(|e| e["type"] == "response.output_item.done")
        .count();
    assert_eq!(added, done, "every item is done");
}

#[tokio::test]
async fn a_stream_is_numbered_and_its_events_name_their_items() {
    let server = TestServer::start(&["--mock-delay-ms", "1"]);
    let tools = json!([{"type": "function", "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    let s = create(
        &server,
        json!({"input": "Think: weather in Paris?", "tools": tools, "stream": true,
        "instructions": "Be brief.", "metadata": {"k": "v"}}),
    )
    .await;
    assert_eq!(s.status, 200);
    s.assert_sdk_framing();
    for e in &s.events {
        let data: Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(
            e.event_type,
            data["type"].as_str().unwrap(),
            "event: names the type"
        );
    }
    let events = s.json();
    assert_well_formed(&events);
    let id = s.headers["x-generation-id"].to_str().unwrap();
    let last = &events.last().unwrap()["response"];
    assert_eq!(last["id"], format!("resp_{id}"));
    assert_eq!(last["status"], "completed");
    assert_eq!(last["instructions"], "Be brief.");
    assert_eq!(last["metadata"], json!({"k": "v"}));
    assert_eq!(last["tools"][0]["name"], "get_weather");
    assert_eq!(last["output"][0]["type"], "reasoning");
    assert_eq!(last["output"][1]["type"], "function_call");
    assert_eq!(last["output"][1]["arguments"], "{\"city\":\"Paris\"}");
    assert!(last["usage"]["output_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn background_replays_are_the_rest_of_the_first_reading() {
    let server = TestServer::start(&["--mock-delay-ms", "10", "--generation-grace", "1"]);
    let res = post(
        &server.url("/v1/responses"),
        &json!({"input": "a river story", "background": true, "stream": true}),
        &[],
    )
    .await;
    // Read a little, then drop the connection mid-run.
    let mut body = res.bytes_stream();
    let mut parser = Parser::default();
    let mut first = Vec::new();
    while first.len() < 6 {
        parser.feed(&body.next().await.unwrap().unwrap()).unwrap();
        while let Some(e) = parser.next_event() {
            first.push(serde_json::from_str::<Value>(&e.data).unwrap());
        }
    }
    drop(body);
    let id = first[0]["response"]["id"].as_str().unwrap().to_owned();
    assert_eq!(first[0]["response"]["status"], "queued");
    let mid = replay(&server, &id, Some(5)).await;
    assert_eq!(mid[0]["sequence_number"], 6);
    // The run outlived the grace with nobody reading: background runs on.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let all = replay(&server, &id, None).await;
    assert_well_formed(&all);
    assert_eq!(all.last().unwrap()["type"], "response.completed");
    assert_eq!(all[6..], mid[..], "the live reading and the replay agree");
    let n = all.len() as u64;
    for after in [0, 1, 7, n - 2, n - 1, n + 5] {
        let rest = replay(&server, &id, Some(after)).await;
        let want: Vec<Value> = all
            .iter()
            .filter(|e| e["sequence_number"].as_u64().unwrap() > after)
            .cloned()
            .collect();
        assert_eq!(rest, want, "after {after}");
    }
    // The snapshot is the last event's response.
    let snap: Value = get(&server, &format!("/v1/responses/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(snap, all.last().unwrap()["response"]);
}

#[tokio::test]
async fn a_snapshot_mid_run_and_a_background_create_without_stream() {
    let server = TestServer::start(&["--mock-delay-ms", "50"]);
    let res = post(
        &server.url("/v1/responses"),
        &json!({"input": "planets", "background": true}),
        &[],
    )
    .await;
    assert_eq!(res.status().as_u16(), 200);
    let r: Value = res.json().await.unwrap();
    assert_eq!(
        (r["status"].as_str(), r["background"].as_bool()),
        (Some("queued"), Some(true))
    );
    assert_eq!(r["output"], json!([]));
    let id = r["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let snap: Value = get(&server, &format!("/v1/responses/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(snap["status"], "in_progress");
    assert_eq!(snap["output"][0]["status"], "in_progress");
    assert!(snap["output"][0]["content"][0]["text"]
        .as_str()
        .unwrap()
        .starts_with("Here is"));
    let c: Value = reqwest::Client::new()
        .post(server.url(&format!("/v1/responses/{id}/cancel")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(c["status"], "cancelled");
    assert_eq!(c["output"][0]["status"], "incomplete");
}

#[tokio::test]
async fn the_ends_incomplete_and_failed() {
    let recording = include_str!("data/ollama-chat.ndjson");
    let lines: Vec<&str> = recording.lines().collect();
    let cut = lines[..3].join("\n")
        + "\n"
        + &lines
            .last()
            .unwrap()
            .replace("\"done_reason\":\"stop\"", "\"done_reason\":\"length\"")
        + "\n";
    assert!(cut.contains("\"length\""));
    let fake = FakeModel::start(Reply::ndjson(&cut, MS, After::End)).await;
    let server = TestServer::start(&["--backend", "ollama", "--backend-url", &fake.base]);
    let events = create(&server, json!({"input": "hi", "stream": true}))
        .await
        .json();
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.incomplete");
    assert_eq!(
        last["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );

    let fake = FakeModel::start(Reply::ndjson(
        &(lines[..2].join("\n") + "\n{\"error\":\"out of memory\"}\n"),
        MS,
        After::End,
    ))
    .await;
    let server = TestServer::start(&["--backend", "ollama", "--backend-url", &fake.base]);
    let events = create(&server, json!({"input": "hi", "stream": true}))
        .await
        .json();
    assert_well_formed(&events);
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.failed");
    assert_eq!(last["response"]["status"], "failed");
    assert!(last["response"]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("out of memory"));
    assert_eq!(last["response"]["output"][0]["status"], "incomplete");
}

#[tokio::test]
async fn cancel_and_lookups_answer_as_openai_does() {
    let server = TestServer::start(&["--mock-delay-ms", "1"]);
    let cancel = |id: String| {
        let url = server.url(&format!("/v1/responses/{id}/cancel"));
        async move {
            reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .send()
                .await
                .unwrap()
        }
    };
    // Finished before the cancel: answered as it ended.
    let r = create(
        &server,
        json!({"input": "hi", "background": true, "stream": true}),
    )
    .await
    .json();
    let id = r[0]["response"]["id"].as_str().unwrap().to_owned();
    let c: Value = cancel(id.clone()).await.json().await.unwrap();
    assert_eq!(c["status"], "completed");
    // Not a background response.
    let r: Value = post(&server.url("/v1/responses"), &json!({"input": "hi"}), &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "completed");
    let res = cancel(r["id"].as_str().unwrap().to_owned()).await;
    assert_eq!(res.status().as_u16(), 400);
    // Unknown, malformed, and a generation that is no response.
    for id in [
        "resp_0123456789abcdef".to_owned(),
        "nope".to_owned(),
        "resp_%2E%2E%2Fx".to_owned(),
    ] {
        let res = get(&server, &format!("/v1/responses/{id}")).await;
        assert_eq!(res.status().as_u16(), 404, "{id}");
        let e: Value = res.json().await.unwrap();
        assert_eq!(e["error"]["type"], "not_found_error");
    }
    let (gen, _) = start_generation(&server.base, json!({"prompt": "hi"})).await;
    assert_eq!(
        get(&server, &format!("/v1/responses/resp_{gen}"))
            .await
            .status()
            .as_u16(),
        404
    );
    // What rill cannot do is a 400 naming the field.
    let res = post(
        &server.url("/v1/responses"),
        &json!({"input": "hi", "previous_response_id": id}),
        &[],
    )
    .await;
    assert_eq!(res.status().as_u16(), 400);
    let e: Value = res.json().await.unwrap();
    assert_eq!(e["error"]["param"], "previous_response_id");
}

#[tokio::test]
async fn a_response_whose_start_is_past_retention_is_not_replayed() {
    // A generation keeps its whole answer by count; bytes still bound it.
    let server = TestServer::start(&[
        "--mock-delay-ms",
        "1",
        "--max-event-bytes",
        "100",
        "--retention-bytes",
        "300",
    ]);
    let r = create(
        &server,
        json!({"input": "planets", "background": true, "stream": true}),
    )
    .await
    .json();
    let id = r[0]["response"]["id"].as_str().unwrap().to_owned();
    for path in [
        format!("/v1/responses/{id}?stream=true"),
        format!("/v1/responses/{id}"),
    ] {
        let res = get(&server, &path).await;
        assert_eq!(res.status().as_u16(), 404, "{path}");
        let e: Value = res.json().await.unwrap();
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("retention"),
            "{e}"
        );
    }
}

#[tokio::test]
async fn a_response_is_its_owners() {
    let server = jwt::server();
    let token = |sub: &str| {
        jwt::hs256(json!({"sub": sub, "exp": jwt::now() + 600, "rill": {"generate": true}}))
    };
    let (alice, bob) = (token("alice"), token("bob"));
    let res = reqwest::Client::new()
        .post(server.url("/v1/responses"))
        .bearer_auth(&alice)
        .json(&json!({"input": "hi", "background": true}))
        .send()
        .await
        .unwrap();
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let as_bob = reqwest::Client::new()
        .get(server.url(&format!("/v1/responses/{id}")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(as_bob.status().as_u16(), 403);
    let e: Value = as_bob.json().await.unwrap();
    assert_eq!(e["error"]["type"], "permission_error");
    let cancel = reqwest::Client::new()
        .post(server.url(&format!("/v1/responses/{id}/cancel")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status().as_u16(), 403);
    let anonymous = get(&server, &format!("/v1/responses/{id}")).await;
    assert_eq!(anonymous.status().as_u16(), 401);
    let as_alice = reqwest::Client::new()
        .get(server.url(&format!("/v1/responses/{id}?stream=true")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(as_alice.status().as_u16(), 200);
    let s = tokio::time::timeout(WAIT, Streamed::read(as_alice))
        .await
        .unwrap();
    assert_eq!(s.json().last().unwrap()["type"], "response.completed");
}

#[tokio::test]
async fn a_retry_with_its_key_gets_the_first_response() {
    let server = TestServer::start(&["--mock-delay-ms", "1"]);
    let url = server.url("/v1/responses");
    let body = json!({"input": "hi", "background": true, "metadata": {"try": 1}});
    let key = [("idempotency-key", "resp-key-1")];
    let first: Value = post(&url, &body, &key).await.json().await.unwrap();
    let again = post(&url, &body, &key).await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["created_at"], first["created_at"]);
    let other = post(&url, &json!({"input": "other"}), &key).await;
    assert_eq!(other.status().as_u16(), 422);
}
