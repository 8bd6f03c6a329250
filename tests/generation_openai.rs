//! Generations from a fake OpenAI-compatible server that replays a recorded
//! `chat.completion.chunk` event stream (usage chunk and `[DONE]` included)
//! over real HTTP on loopback.
mod common;

use std::time::Duration;

use common::fake_model::{json, read_generation, start_generation, After, FakeModel, Reply};
use common::TestServer;
use serde_json::json;

/// A recorded streamed chat completion with `include_usage`.
const RECORDING: &str = include_str!("data/openai-chat.sse");
const MS: Duration = Duration::from_millis(1);

/// The text a recording streams: every `choices[0].delta.content`.
fn recorded_text(sse: &str) -> String {
    sse.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<serde_json::Value>(d).unwrap())
        .map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// rill on `--backend openai` against `fake`, its key in `RILL_TEST_KEY`.
fn rill(fake: &FakeModel, extra: &[&str]) -> TestServer {
    let base = format!("{}/v1", fake.base);
    let mut args = vec!["--backend", "openai", "--backend-url", base.as_str()];
    args.extend_from_slice(&["--api-key-env", "RILL_TEST_KEY"]);
    args.extend_from_slice(extra);
    TestServer::start_with_env(&args, &[("RILL_TEST_KEY", "sk-test-123")])
}

#[tokio::test]
async fn a_prompt_streams_the_recording_exactly_with_usage() {
    let fake = FakeModel::start(Reply::sse(RECORDING, MS, After::End)).await;
    let server = rill(&fake, &["--model", "gpt-4o-mini"]);
    let body =
        json!({"prompt": "Name the planets.", "options": {"temperature": 0.2, "max_tokens": 64}});
    let (_, stream) = start_generation(&server.base, body).await;
    let (text, end) = read_generation(&server.base, &stream).await;
    assert_eq!(text, recorded_text(RECORDING));
    assert!(text.contains("planets;\nJupiter"));
    assert_eq!(end.event_type, "done");
    let done = json(&end);
    assert_eq!(done["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(done["done_reason"], "stop");
    assert_eq!(done["tokens"], 25);
    assert_eq!(done["prompt_tokens"], 14);
    assert_eq!(done["completion_tokens"], 25);

    let seen = fake.requests();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(req.headers["authorization"], "Bearer sk-test-123");
    assert_eq!(req.body["model"], "gpt-4o-mini");
    assert_eq!(
        req.body["messages"],
        json!([{"role": "user", "content": "Name the planets."}])
    );
    assert_eq!(req.body["stream"], true);
    assert_eq!(req.body["stream_options"], json!({"include_usage": true}));
    assert_eq!(req.body["temperature"], 0.2);
    assert_eq!(req.body["max_tokens"], 64);
}

#[tokio::test]
async fn messages_pass_through_and_no_key_sends_no_authorization() {
    let fake = FakeModel::start(Reply::sse(RECORDING, MS, After::End)).await;
    let base = format!("{}/v1/", fake.base);
    let server = TestServer::start(&[
        "--backend",
        "openai",
        "--backend-url",
        &base,
        "--api-key-env",
        "RILL_TEST_UNSET_KEY",
    ]);
    let messages = json!([{"role": "system", "content": "Terse."},
        {"role": "user", "content": "Planets?"}]);
    let (_, stream) = start_generation(&server.base, json!({ "messages": messages })).await;
    let (text, _) = read_generation(&server.base, &stream).await;
    assert_eq!(text, recorded_text(RECORDING));
    let seen = fake.requests();
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].body["messages"], messages);
    assert!(seen[0].headers.get("authorization").is_none());
}

/// The recording's first `n` events.
fn first_events(n: usize) -> String {
    RECORDING.split_inclusive("\n\n").take(n).collect()
}

async fn failing(reply: Reply) -> (String, String, serde_json::Value) {
    let fake = FakeModel::start(reply).await;
    let server = rill(&fake, &[]);
    let (_, stream) = start_generation(&server.base, json!({"prompt": "hi"})).await;
    let (text, end) = read_generation(&server.base, &stream).await;
    (text, end.event_type.clone(), json(&end))
}

#[tokio::test]
async fn a_stream_cut_before_done_is_an_error() {
    let (text, kind, err) = failing(Reply::sse(&first_events(4), MS, After::End)).await;
    assert_eq!(text, "Mercury, Venus");
    assert_eq!(kind, "failed");
    assert_eq!(err["error"], "truncated");
}

#[tokio::test]
async fn a_broken_connection_is_an_error() {
    let (text, _, err) = failing(Reply::sse(&first_events(3), MS, After::Abort)).await;
    assert_eq!(text, "Mercury,");
    assert_eq!(err["error"], "interrupted");
}

#[tokio::test]
async fn invalid_json_in_a_chunk_is_an_error() {
    let body = first_events(2) + "data: {\"choices\":[{\"delta\":{\"content\":\n\n";
    let (text, kind, err) = failing(Reply::sse(&body, MS, After::End)).await;
    assert_eq!(text, "Mercury");
    assert_eq!(kind, "failed");
    assert_eq!(err["error"], "protocol");
}

#[tokio::test]
async fn an_error_chunk_mid_stream_is_an_error() {
    let body = first_events(2)
        + "data: {\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\"}}\n\n";
    let (_, kind, err) = failing(Reply::sse(&body, MS, After::End)).await;
    assert_eq!(kind, "failed");
    assert_eq!(err["error"], "upstream");
    assert!(err["message"].as_str().unwrap().contains("had an error"));
}

#[tokio::test]
async fn an_error_status_carries_the_upstream_status() {
    let body = r#"{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
    let (text, kind, err) = failing(Reply::Status(401, body)).await;
    assert_eq!(text, "");
    assert_eq!(kind, "failed");
    assert_eq!(err["error"], "status");
    assert_eq!(err["upstream_status"], 401);
    assert!(err["message"]
        .as_str()
        .unwrap()
        .contains("Incorrect API key"));
}

#[tokio::test]
async fn a_server_that_ignores_stream_true_is_an_error() {
    let completion = r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Mercury."},"finish_reason":"stop"}]}"#;
    let reply = Reply::Stream {
        content_type: "application/json",
        chunks: vec![completion.into()],
        delay: MS,
        after: After::End,
    };
    let (text, kind, err) = failing(reply).await;
    assert_eq!(text, "");
    assert_eq!(kind, "failed");
    assert_eq!(err["error"], "protocol");
    assert!(err["message"].as_str().unwrap().contains("chat.completion"));
}

#[tokio::test]
async fn a_silent_upstream_times_out() {
    let fake = FakeModel::start(Reply::sse(&first_events(2), MS, After::Hang)).await;
    let server = rill(&fake, &["--upstream-timeout-secs", "1"]);
    let (_, stream) = start_generation(&server.base, json!({"prompt": "hi"})).await;
    let (text, end) = read_generation(&server.base, &stream).await;
    assert_eq!(text, "Mercury");
    assert_eq!(json(&end)["error"], "timeout");
    let wait = Duration::from_secs(10);
    assert!(FakeModel::reaches(&fake.disconnects, 1, wait).await);
}

#[test]
fn a_bad_backend_url_stops_start_up_with_a_clear_error() {
    for url in ["not a url", "ftp://127.0.0.1/v1", "http://"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rill"))
            .args(["serve", "--listen", "127.0.0.1:0", "--backend", "openai"])
            .args(["--backend-url", url])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{url}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--backend-url"), "{url}: {stderr}");
    }
}
