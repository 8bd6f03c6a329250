//! `POST /v1/generations` on the `mock` back-end: both answer modes, the
//! known and the unknown prompt, validation, and the generation metrics.
mod common;

use std::time::Duration;

use common::fake_model::{
    cancel_generation, json, read_generation, split_generation, start_generation,
};
use common::{SseClient, TestServer};
use rill::sse::Parser;
use serde_json::json;

const SEED: &str = include_str!("data/ollama-generate.ndjson");
const WAIT: Duration = Duration::from_secs(20);

fn seed_text() -> String {
    SEED.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| v["response"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_planet_prompt_replays_the_seed_answer_exactly() {
    // The fixture is the seed's recording, byte for byte.
    assert_eq!(SEED, include_str!("../data/llama3.1-planets.ndjson"));
    let server = TestServer::start(&["--mock-delay-ms", "1"]);
    let body = json!({"prompt": "Give me a two-line summary about the planets"});
    let (_, stream) = start_generation(&server.base, body).await;
    let (text, end) = read_generation(&server.base, &stream).await;
    assert_eq!(text, seed_text());
    assert_eq!(end.event_type, "done");
    let done = json(&end);
    assert_eq!(done["model"], "llama3.1");
    assert_eq!(done["done_reason"], "stop");
    assert_eq!(done["tokens"], 69);
    assert!(done["duration_ms"].is_u64());
}

#[tokio::test]
async fn an_unknown_prompt_gets_the_same_made_up_answer_each_time() {
    let server = TestServer::start(&["--mock-delay-ms", "1", "--allowed-model", "tiny"]);
    let body = json!({"messages": [{"role": "user", "content": "What is rill?"}], "model": "tiny"});
    let (_, first) = start_generation(&server.base, body.clone()).await;
    let (_, second) = start_generation(&server.base, body).await;
    assert_ne!(first, second);
    let (a, end) = read_generation(&server.base, &first).await;
    let (b, _) = read_generation(&server.base, &second).await;
    assert_eq!(a, b);
    assert!(a.starts_with("You asked: \"What is rill?\"."), "{a}");
    let done = json(&end);
    assert_eq!(done["model"], "tiny");
    assert_eq!(done["tokens"], done["completion_tokens"]);
}

#[tokio::test]
async fn accept_event_stream_answers_with_the_stream_itself() {
    let server = TestServer::start(&["--mock-delay-ms", "1"]);
    let res = reqwest::Client::new()
        .post(server.url("/v1/generations"))
        .header("accept", "text/event-stream")
        .json(&json!({"prompt": "planets"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let id = res.headers()["x-generation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let raw = tokio::time::timeout(WAIT, res.bytes())
        .await
        .unwrap()
        .unwrap();
    let mut parser = Parser::default();
    parser.feed(&raw).unwrap();
    let events: Vec<_> = std::iter::from_fn(|| parser.next_event()).collect();
    // 69 tokens, the usage the model reported, and the end.
    assert_eq!(events.len(), 71);
    assert_eq!(events[0].last_event_id, format!("{id}.1"));
    assert_eq!(events[69].event_type, "usage");
    assert_eq!(events[70].last_event_id, format!("{id}.71"));
    let (text, end) = split_generation(events);
    assert_eq!(text, seed_text());
    assert_eq!(end.event_type, "done");

    // The same generation stays readable by id, and resumes after an id.
    let url = server.url(&format!("/v1/streams/gen-{id}"));
    let mut late = SseClient::open(&url, &[("last-event-id", &format!("{id}.68"))]).await;
    let tail = late.collect(WAIT).await;
    assert_eq!(tail.len(), 3);
    assert_eq!(tail[0].data, ".");
    assert_eq!(tail[1].event_type, "usage");
    assert_eq!(tail[2].event_type, "done");
}

#[tokio::test]
async fn bad_requests_are_400_with_a_reason() {
    let server = TestServer::start(&[]);
    let client = reqwest::Client::new();
    let bodies = [
        "",
        "not json",
        "{}",
        r#"{"prompt": ""}"#,
        r#"{"prompt": "   "}"#,
        r#"{"messages": []}"#,
        r#"{"prompt": 7}"#,
        r#"{"messages": [{"content": "no role"}]}"#,
        r#"{"prompt": "hi", "tools": [{"type": "web_search"}]}"#,
        r#"{"prompt": "hi", "tool_choice": "sometimes"}"#,
        r#"{"prompt": "hi", "temperature": 0.5}"#,
        r#"{"prompt": "hi", "options": [1]}"#,
    ];
    for body in bodies {
        let res = client
            .post(server.url("/v1/generations"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 400, "{body}");
        let text = res.text().await.unwrap();
        assert!(!text.is_empty(), "{body}");
    }
    // Nothing was started by any of them.
    let list: serde_json::Value = client
        .get(server.url("/v1/streams"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!list.to_string().contains("gen-"), "{list}");
}

/// The value of the metric line starting with `name` and containing all
/// `labels`, or 0.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn generations_are_counted_and_timed() {
    let server = TestServer::start(&["--mock-delay-ms", "40"]);
    let (_, done_stream) = start_generation(&server.base, json!({"prompt": "hi there"})).await;
    read_generation(&server.base, &done_stream).await;
    let (id, cancel_stream) = start_generation(&server.base, json!({"prompt": "planets"})).await;
    let mut reader = SseClient::open(&server.url(&cancel_stream), &[]).await;
    assert!(reader.next_event(WAIT).await.is_some());
    assert_eq!(cancel_generation(&server.base, &id).await, 202);
    let rest = reader.collect(WAIT).await;
    let done = json(rest.last().unwrap());
    assert_eq!(done["done_reason"], "cancelled");
    assert_eq!(done["cancelled_by"], "request");
    assert_eq!(done["model"], "llama3.1");

    // The task leaves the active gauge just after publishing its end.
    let mut text = String::new();
    for _ in 0..100 {
        text = reqwest::get(server.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metric(&text, "rill_generations_active", &[]) == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = metric(
        &text,
        "rill_generations_started_total",
        &["backend=\"mock\""],
    );
    assert_eq!(started, 2.0, "{text}");
    let ended = "rill_generations_ended_total";
    assert_eq!(metric(&text, ended, &["outcome=\"finished\""]), 1.0);
    assert_eq!(metric(&text, ended, &["outcome=\"cancelled\""]), 1.0);
    assert_eq!(metric(&text, ended, &["outcome=\"failed\""]), 0.0);
    assert_eq!(metric(&text, "rill_generations_active", &[]), 0.0);
    assert_eq!(
        metric(&text, "rill_time_to_first_token_seconds_count", &[]),
        2.0
    );
    // 33 words in the made-up answer: 32 gaps (the cancelled one adds its own).
    assert!(metric(&text, "rill_inter_token_seconds_count", &[]) >= 32.0);
}

#[tokio::test]
async fn a_generation_stream_that_does_not_exist_is_404_not_a_wait() {
    let server = TestServer::start(&["--mock-delay-ms", "1"]);
    let missing = SseClient::open(&server.url("/v1/streams/gen-0000000000000000"), &[]).await;
    assert_eq!(missing.status, 404);
    // A real one is found, from its first event.
    let (_, stream) = start_generation(&server.base, json!({"prompt": "hello"})).await;
    let mut found = SseClient::open(&server.url(&format!("{stream}?lastEventId=0")), &[]).await;
    assert_eq!(found.status, 200);
    assert!(found.next_event(WAIT).await.is_some());
}
