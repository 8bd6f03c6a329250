//! Generations from a fake Ollama that replays recorded `/api/generate` and
//! `/api/chat` NDJSON streams over real HTTP on loopback.
mod common;

use std::time::Duration;

use common::fake_model::{
    first_lines, json, read_generation, recorded_text, rill_for, start_generation, After,
    FakeModel, Reply,
};
use serde_json::json;

/// The seed's recording: Ollama's `/api/generate` answer, as streamed.
const GENERATE: &str = include_str!("data/ollama-generate.ndjson");
/// A recorded `/api/chat` answer, ending with Ollama's statistics line.
const CHAT: &str = include_str!("data/ollama-chat.ndjson");
const MS: Duration = Duration::from_millis(1);
const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn prompt_streams_the_generate_recording_exactly() {
    let fake = FakeModel::start(Reply::ndjson(GENERATE, MS, After::End)).await;
    let rill = rill_for("ollama", &fake, &[]);
    let body = json!({"prompt": "Tell me about the planets", "model": "llama3.1",
        "options": {"temperature": 0.1, "seed": 42}});
    let (_, stream) = start_generation(&rill.base, body).await;
    let (text, end) = read_generation(&rill.base, &stream).await;
    assert_eq!(text, recorded_text(GENERATE));
    assert!(text.starts_with("Here is a two-line summary about the planets:\n\n Our"));
    assert_eq!(end.event_type, "done");
    let done = json(&end);
    assert_eq!(done["model"], "llama3.1");
    assert_eq!(done["done_reason"], "stop");
    assert_eq!(done["tokens"], 69);
    // The seed's last line carries no counts.
    assert_eq!(done["completion_tokens"], serde_json::Value::Null);

    let seen = fake.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/api/generate");
    assert_eq!(seen[0].body["prompt"], "Tell me about the planets");
    assert_eq!(seen[0].body["stream"], true);
    // The caller's options, and the output cap (--max-output-tokens).
    assert_eq!(
        seen[0].body["options"],
        json!({"temperature": 0.1, "seed": 42, "num_predict": 4096})
    );
}

#[tokio::test]
async fn messages_stream_the_chat_recording_with_its_counts() {
    let fake = FakeModel::start(Reply::ndjson(CHAT, MS, After::End)).await;
    let rill = rill_for("ollama", &fake, &["--model", "llama3.1:8b"]);
    let messages = json!([{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Why is Mars red?"}]);
    let (_, stream) = start_generation(&rill.base, json!({ "messages": messages })).await;
    let (text, end) = read_generation(&rill.base, &stream).await;
    assert_eq!(text, recorded_text(CHAT));
    assert!(text.contains("rust.\n\nFun fact"));
    let done = json(&end);
    assert_eq!(end.event_type, "done");
    assert_eq!(done["done_reason"], "stop");
    assert_eq!(done["tokens"], 40);
    assert_eq!(done["prompt_tokens"], 17);
    assert_eq!(done["completion_tokens"], 40);
    assert!(done["time_to_first_token_ms"].is_u64());

    let seen = fake.requests();
    assert_eq!(seen[0].path, "/api/chat");
    assert_eq!(seen[0].body["model"], "llama3.1:8b");
    assert_eq!(seen[0].body["messages"], messages);
    assert_eq!(seen[0].body["stream"], true);
}

/// Streams `chunks` of NDJSON, then `after`; returns the text before the
/// end and the terminal event's JSON.
async fn failing(
    chunks: &str,
    after: After,
    flags: &[&str],
) -> (String, String, serde_json::Value) {
    let fake = FakeModel::start(Reply::ndjson(chunks, MS, after)).await;
    let rill = rill_for("ollama", &fake, flags);
    let (_, stream) = start_generation(&rill.base, json!({"prompt": "hi"})).await;
    let (text, end) = read_generation(&rill.base, &stream).await;
    (text, end.event_type.clone(), json(&end))
}

#[tokio::test]
async fn an_error_line_mid_stream_ends_with_an_error_event() {
    let lines = first_lines(CHAT, 3)
        + "{\"error\":\"an error was encountered while running the model: unexpected EOF\"}\n";
    let (text, kind, err) = failing(&lines, After::End, &[]).await;
    assert_eq!(text, "Mars is red");
    assert_eq!(kind, "failed");
    assert_eq!(err["error"], "upstream");
    assert!(err["message"].as_str().unwrap().contains("unexpected EOF"));
    assert_eq!(err["upstream_status"], serde_json::Value::Null);
}

#[tokio::test]
async fn a_broken_connection_mid_stream_ends_with_an_error_event() {
    let (text, kind, err) = failing(&first_lines(CHAT, 3), After::Abort, &[]).await;
    assert_eq!(text, "Mars is red");
    assert_eq!(kind, "failed");
    assert_eq!(err["error"], "interrupted");
}

#[tokio::test]
async fn a_stream_that_ends_without_done_is_an_error() {
    let (text, kind, err) = failing(&first_lines(CHAT, 5), After::End, &[]).await;
    assert_eq!(text, "Mars is red because its");
    assert_eq!(kind, "failed");
    assert_eq!(err["error"], "truncated");
}

#[tokio::test]
async fn garbage_is_an_error() {
    let lines = first_lines(CHAT, 1) + "<html><body>502 Bad Gateway</body></html>\n";
    let (text, kind, err) = failing(&lines, After::End, &[]).await;
    assert_eq!(text, "Mars");
    assert_eq!(kind, "failed");
    assert_eq!(err["error"], "protocol");
}

#[tokio::test]
async fn a_silent_upstream_times_out_and_is_hung_up_on() {
    let fake = FakeModel::start(Reply::ndjson(&first_lines(CHAT, 2), MS, After::Hang)).await;
    let rill = rill_for("ollama", &fake, &["--upstream-timeout-secs", "1"]);
    let (_, stream) = start_generation(&rill.base, json!({"prompt": "hi"})).await;
    let (text, end) = read_generation(&rill.base, &stream).await;
    assert_eq!(text, "Mars is");
    assert_eq!(end.event_type, "failed");
    assert_eq!(json(&end)["error"], "timeout");
    assert!(FakeModel::reaches(&fake.disconnects, 1, WAIT).await);
}

#[tokio::test]
async fn an_error_status_carries_the_upstream_status() {
    let body = r#"{"error":"model \"llama9\" not found, try pulling it first"}"#;
    let fake = FakeModel::start(Reply::Status(404, body)).await;
    let rill = rill_for("ollama", &fake, &["--allowed-model", "llama9"]);
    let (_, stream) =
        start_generation(&rill.base, json!({"prompt": "hi", "model": "llama9"})).await;
    let (text, end) = read_generation(&rill.base, &stream).await;
    assert_eq!(text, "");
    let err = json(&end);
    assert_eq!(end.event_type, "failed");
    assert_eq!(err["error"], "status");
    assert_eq!(err["upstream_status"], 404);
    assert!(err["message"].as_str().unwrap().contains("not found"));
}

#[tokio::test]
async fn an_upstream_500_is_an_error_with_its_status() {
    let fake = FakeModel::start(Reply::Status(
        500,
        r#"{"error":"llama runner process has terminated"}"#,
    ))
    .await;
    let rill = rill_for("ollama", &fake, &[]);
    let (_, stream) = start_generation(&rill.base, json!({"prompt": "hi"})).await;
    let (_, end) = read_generation(&rill.base, &stream).await;
    assert_eq!(json(&end)["upstream_status"], 500);
    let metrics = reqwest::get(rill.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = |prefix: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .map(str::to_owned)
    };
    assert_eq!(
        line("rill_upstream_errors_total{kind=\"status\"}").as_deref(),
        Some("rill_upstream_errors_total{kind=\"status\"} 1")
    );
    let failed = line("rill_generations_ended_total{outcome=\"failed\"").unwrap();
    assert!(failed.ends_with(" 1"), "{failed}");
}

#[tokio::test]
async fn an_upstream_that_is_down_is_an_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let rill = common::TestServer::start(&["--backend", "ollama", "--backend-url", &url]);
    let (_, stream) = start_generation(&rill.base, json!({"prompt": "hi"})).await;
    let (_, end) = read_generation(&rill.base, &stream).await;
    let err = json(&end);
    assert_eq!(end.event_type, "failed");
    assert_eq!(err["error"], "connect");
    assert_eq!(err["upstream_status"], serde_json::Value::Null);
}

#[tokio::test]
async fn an_answer_sent_as_one_json_object_still_arrives() {
    let whole = r#"{"model":"llama3.1","created_at":"2024-08-29T05:15:02.318279Z","response":"Mars looks red because of iron oxide.","done":true,"done_reason":"stop","context":[128006,882,128007],"total_duration":901234567,"load_duration":20113458,"prompt_eval_count":15,"prompt_eval_duration":120000000,"eval_count":9,"eval_duration":760000000}"#;
    let reply = Reply::Stream {
        content_type: "application/json; charset=utf-8",
        chunks: vec![whole.into()],
        delay: MS,
        after: After::End,
    };
    let fake = FakeModel::start(reply).await;
    let rill = rill_for("ollama", &fake, &[]);
    let (_, stream) = start_generation(&rill.base, json!({"prompt": "Why is Mars red?"})).await;
    let (text, end) = read_generation(&rill.base, &stream).await;
    assert_eq!(text, "Mars looks red because of iron oxide.");
    let done = json(&end);
    assert_eq!(end.event_type, "done");
    assert_eq!(
        (
            done["prompt_tokens"].as_u64(),
            done["completion_tokens"].as_u64()
        ),
        (Some(15), Some(9))
    );
}
