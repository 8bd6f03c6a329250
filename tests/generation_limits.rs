//! What a client may spend on the model: caps on running generations (on
//! the node and per subject), the models and options a request may use,
//! and the output length, all checked before anything starts upstream.
mod common;

use std::time::Duration;

use common::fake_model::{rill_for, After, FakeModel, Reply};
use common::jwt::{hs256, now, SECRET};
use common::TestServer;
use serde_json::{json, Value};

const CHAT: &str = include_str!("data/ollama-chat.ndjson");

async fn start(
    base: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/v1/generations"))
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.json().await.unwrap_or(Value::Null))
}

fn token(sub: &str) -> String {
    hs256(json!({"sub": sub, "exp": now() + 300, "rill": {"generate": true}}))
}

fn assert_capped(status: u16, headers: &reqwest::header::HeaderMap, body: &Value, flag: &str) {
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "too_many_generations");
    assert!(body["message"].as_str().unwrap().contains(flag), "{body}");
    let after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(after > 0);
}

#[tokio::test]
async fn past_a_cap_nothing_starts_and_the_answer_is_429() {
    let server = TestServer::start(&[
        "--auth-jwt-secret",
        SECRET,
        "--mock-delay-ms",
        "1000",
        "--generation-grace",
        "never",
        "--max-generations",
        "3",
        "--max-generations-per-sub",
        "2",
    ]);
    let (alice, bob, carol) = (token("alice"), token("bob"), token("carol"));
    let prompt = json!({"prompt": "Tell me about the planets"});
    for _ in 0..2 {
        assert_eq!(
            start(&server.base, Some(&alice), prompt.clone()).await.0,
            201
        );
    }
    // Alice is at her own cap; Bob is not.
    let (status, headers, body) = start(&server.base, Some(&alice), prompt.clone()).await;
    assert_capped(status, &headers, &body, "--max-generations-per-sub");
    assert_eq!(start(&server.base, Some(&bob), prompt.clone()).await.0, 201);
    // Now the node is full for everyone.
    let (status, headers, body) = start(&server.base, Some(&carol), prompt.clone()).await;
    assert_capped(status, &headers, &body, "--max-generations");
    let text = common::metrics_text(&server.base).await;
    let started: f64 = text
        .lines()
        .filter(|l| l.starts_with("rill_generations_started_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(started, 3.0, "the refused ones started nothing");
}

#[tokio::test]
async fn without_auth_the_per_sub_cap_counts_per_client_address() {
    let server = TestServer::start(&[
        "--mock-delay-ms",
        "1000",
        "--generation-grace",
        "never",
        "--max-generations-per-sub",
        "1",
    ]);
    let prompt = json!({"prompt": "hi"});
    assert_eq!(start(&server.base, None, prompt.clone()).await.0, 201);
    let (status, headers, body) = start(&server.base, None, prompt).await;
    assert_capped(status, &headers, &body, "--max-generations-per-sub");
}

#[tokio::test]
async fn models_options_and_output_length_are_bounded_before_the_model_is_called() {
    let fake = FakeModel::start(Reply::ndjson(CHAT, Duration::ZERO, After::End)).await;
    let rill = rill_for(
        "ollama",
        &fake,
        &["--model", "llama3.1", "--max-output-tokens", "256"],
    );
    let refused = [
        (
            json!({"prompt": "hi", "model": "llama3.1:405b"}),
            "model_not_allowed",
        ),
        (
            json!({"prompt": "hi", "options": {"n": 64}}),
            "one_choice_only",
        ),
        (
            json!({"prompt": "hi", "options": {"max_tokens": 1_000_000}}),
            "output_tokens",
        ),
        (
            json!({"prompt": "hi", "options": {"num_predict": 257}}),
            "output_tokens",
        ),
        (
            json!({"prompt": "hi", "options": {"service_tier": "priority"}}),
            "option_not_allowed",
        ),
        (
            json!({"prompt": "hi", "options": {"store": true}}),
            "option_not_allowed",
        ),
        (
            json!({"prompt": "hi", "options": {"num_ctx": 1_048_576}}),
            "option_not_allowed",
        ),
    ];
    for (body, kind) in refused {
        let (status, _, answer) = start(&rill.base, None, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"], kind, "{body}: {answer}");
    }
    assert!(fake.requests().is_empty(), "nothing reached the model");

    // Allowed: the default model, sampling options, and a length under the
    // cap; with no length asked, the cap is sent.
    let ok = [
        json!({"prompt": "hi", "model": "llama3.1", "options": {"temperature": 0.1, "num_predict": 10}}),
        json!({"prompt": "hi"}),
    ];
    for body in ok {
        assert_eq!(start(&rill.base, None, body).await.0, 201);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while fake.requests().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the model was not called"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut sent: Vec<Value> = fake
        .requests()
        .iter()
        .map(|s| s.body["options"]["num_predict"].clone())
        .collect();
    sent.sort_by_key(|v| v.as_u64());
    assert_eq!(sent, [json!(10), json!(256)]);
}

#[tokio::test]
async fn the_model_allow_list_replaces_the_default() {
    let server = TestServer::start(&["--mock-delay-ms", "1", "--allowed-model", "small,large"]);
    for (model, want) in [("small", 201), ("large", 201), ("llama3.1", 400)] {
        let body = json!({"prompt": "hi", "model": model});
        assert_eq!(start(&server.base, None, body).await.0, want, "{model}");
    }
}
