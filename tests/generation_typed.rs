//! The typed events of a generation's stream — `reasoning`, `tool_call`,
//! `usage`, `done` with `finish_reason` — from the mock and from fake Ollama
//! and OpenAI-compatible servers speaking their real wire formats, split
//! anywhere (UTF-8 too), and what a malformed tool call does: `failed`,
//! never a hang.
mod common;

use std::time::Duration;

use axum::body::Bytes;
use common::fake_model::{json, read_generation, start_generation, After, FakeModel, Reply};
use common::TestServer;
use rill::sse::ParsedEvent;
use serde_json::{json, Value};

const OLLAMA: &str = include_str!("data/ollama-chat-tools.ndjson");
const OPENAI: &str = include_str!("data/openai-chat-tools.sse");
const WAIT: Duration = Duration::from_secs(30);
const MS: Duration = Duration::from_millis(1);

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
}

/// Reads a generation to its end: all its events.
async fn events_of(base: &str, body: Value) -> Vec<ParsedEvent> {
    let (_, stream) = start_generation(base, body).await;
    let mut client = common::SseClient::open(&format!("{base}{stream}"), &[]).await;
    let events = client.collect(WAIT).await;
    assert!(client.closed, "the stream ends after its terminal event");
    events
}

fn of_type<'a>(events: &'a [ParsedEvent], t: &str) -> Vec<&'a ParsedEvent> {
    events.iter().filter(|e| e.event_type == t).collect()
}

fn reasoning(events: &[ParsedEvent]) -> String {
    of_type(events, "reasoning")
        .iter()
        .map(|e| json(e)["text"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_mock_reasons_calls_a_tool_and_answers_its_result() {
    let server = TestServer::start(&["--mock-delay-ms", "1"]);
    let ask = json!({"role": "user", "content": "Think: what is the weather in Paris?"});
    let events = events_of(
        &server.base,
        json!({"messages": [ask], "tools": weather_tool()}),
    )
    .await;
    assert!(reasoning(&events).starts_with("The user asks: \"Think:"));
    let calls = of_type(&events, "tool_call");
    assert_eq!(calls.len(), 1);
    let call = json(calls[0]);
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["arguments"], json!({"city": "Paris"}));
    assert!(of_type(&events, "message").is_empty(), "a call, no text");
    let n = events.len();
    assert_eq!(events[n - 2].event_type, "usage");
    let usage = json(&events[n - 2]);
    assert_eq!(
        usage["total_tokens"],
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
    let done = json(&events[n - 1]);
    assert_eq!(done["finish_reason"], "tool_calls");
    assert_eq!(done["done_reason"], "stop", "the model's own reason stays");

    // The call goes back as rill wrote it, with the tool's result.
    let result = json!({"role": "tool", "tool_call_id": call["id"], "content": "21 C"});
    let turn = json!({"role": "assistant", "content": null, "tool_calls": [call]});
    let body = json!({"messages": [ask, turn, result], "tools": weather_tool()});
    let (_, stream) = start_generation(&server.base, body).await;
    let (text, end) = read_generation(&server.base, &stream).await;
    assert_eq!(text, "The tool answered: 21 C");
    assert_eq!(json(&end)["finish_reason"], "stop");
}

#[tokio::test]
async fn tool_choice_none_means_text_and_plain_prompts_stay_plain() {
    let server = TestServer::start(&["--mock-delay-ms", "1"]);
    let body =
        json!({"prompt": "Weather in Paris?", "tools": weather_tool(), "tool_choice": "none"});
    let events = events_of(&server.base, body).await;
    assert!(of_type(&events, "tool_call").is_empty());
    assert!(of_type(&events, "reasoning").is_empty());
    assert!(!of_type(&events, "message").is_empty());
}

/// `text` in pieces of `n` bytes: lines and UTF-8 characters split anywhere.
fn pieces(text: &str, n: usize) -> Vec<Bytes> {
    text.as_bytes()
        .chunks(n)
        .map(Bytes::copy_from_slice)
        .collect()
}

fn stream_reply(content_type: &'static str, chunks: Vec<Bytes>) -> Reply {
    Reply::Stream {
        content_type,
        chunks,
        delay: MS,
        after: After::End,
    }
}

async fn generation_from(
    backend: &str,
    reply: Reply,
    body: Value,
) -> (FakeModel, Vec<ParsedEvent>) {
    let fake = FakeModel::start(reply).await;
    let url = match backend {
        "openai" => format!("{}/v1", fake.base),
        _ => fake.base.clone(),
    };
    let server = TestServer::start(&["--backend", backend, "--backend-url", &url, "--model", "m"]);
    let events = events_of(&server.base, body).await;
    (fake, events)
}

fn ask() -> Value {
    json!({"messages": [{"role": "user", "content": "Weather in Zürich and 東京?"}], "tools": weather_tool()})
}

fn cities(events: &[ParsedEvent]) -> Vec<(String, String)> {
    of_type(events, "tool_call")
        .iter()
        .map(|e| {
            let c = json(e);
            (
                c["id"].as_str().unwrap().to_owned(),
                c["arguments"]["city"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn ollama_thinking_and_whole_tool_calls_split_every_seven_bytes() {
    let reply = stream_reply("application/x-ndjson", pieces(OLLAMA, 7));
    let (fake, events) = generation_from("ollama", reply, ask()).await;
    assert_eq!(
        reasoning(&events),
        "The user wants the weather in Zürich and 東京; I will call get_weather twice."
    );
    let text: String = of_type(&events, "message")
        .iter()
        .map(|e| e.data.as_str())
        .collect();
    assert_eq!(text, "Let me check both cities.");
    assert_eq!(
        cities(&events),
        [
            ("call_k3j9x0ab".into(), "Zürich".into()),
            ("call_p2m8q1zc".into(), "東京".into())
        ]
    );
    let done = json(events.last().unwrap());
    assert_eq!(done["finish_reason"], "tool_calls");
    assert_eq!(done["prompt_tokens"], 26);
    // Reasoning first, then text, then the calls, as Ollama sent them.
    let order: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let first_call = order.iter().position(|t| *t == "tool_call").unwrap();
    assert!(
        order[..first_call].iter().rposition(|t| *t == "reasoning")
            < order.iter().position(|t| *t == "message")
    );
    // What Ollama was asked: /api/chat with the tools.
    let seen = &fake.requests()[0];
    assert_eq!(seen.path, "/api/chat");
    assert_eq!(seen.body["tools"][0]["function"]["name"], "get_weather");
}

#[tokio::test]
async fn ollama_calls_without_ids_get_one_and_a_malformed_call_fails() {
    let no_ids = OLLAMA.replace("\"id\":\"call_k3j9x0ab\",", "");
    let reply = Reply::ndjson(&no_ids, MS, After::End);
    let (_, events) = generation_from("ollama", reply, ask()).await;
    let got = cities(&events);
    assert!(
        got[0].0.starts_with("call_") && got[0].0 != got[1].0,
        "{got:?}"
    );

    let bad = OLLAMA.replace(
        "\"arguments\":{\"city\":\"東京\",\"unit\":\"celsius\"}",
        "\"arguments\":\"{oops\"",
    );
    let (_, events) = generation_from("ollama", Reply::ndjson(&bad, MS, After::Hang), ask()).await;
    let end = events.last().unwrap();
    assert_eq!(end.event_type, "failed");
    assert_eq!(json(end)["error"], "protocol");
    assert!(
        of_type(&events, "tool_call").is_empty(),
        "no half-made call: {events:?}"
    );
}

#[tokio::test]
async fn openai_reasoning_and_interleaved_call_fragments_split_every_five_bytes() {
    // CRLF line endings and a comment, as some servers send them.
    let crlf = format!(": proxy keep-alive\r\n\r\n{}", OPENAI.replace('\n', "\r\n"));
    let reply = stream_reply("text/event-stream", pieces(&crlf, 5));
    let (fake, events) = generation_from("openai", reply, ask()).await;
    assert_eq!(
        reasoning(&events),
        "The user wants the weather in Zürich and 東京."
    );
    assert_eq!(
        cities(&events),
        [
            ("call_a1b2".into(), "Zürich".into()),
            ("call_c3d4".into(), "東京".into())
        ]
    );
    let n = events.len();
    assert_eq!(json(&events[n - 2])["total_tokens"], 73);
    assert_eq!(json(&events[n - 1])["finish_reason"], "tool_calls");
    assert_eq!(fake.requests()[0].body["tools"][0]["type"], "function");
}

#[tokio::test]
async fn vllm_names_reasoning_differently_and_it_reads_the_same() {
    let vllm = OPENAI.replace("reasoning_content", "reasoning");
    let (_, events) = generation_from("openai", Reply::sse(&vllm, MS, After::End), ask()).await;
    assert_eq!(
        reasoning(&events),
        "The user wants the weather in Zürich and 東京."
    );
}

#[tokio::test]
async fn malformed_call_fragments_fail_the_generation() {
    // The arguments of call 1 never become JSON.
    let broken = OPENAI.replace("京\\\"}", "京");
    let (_, events) = generation_from("openai", Reply::sse(&broken, MS, After::Hang), ask()).await;
    let end = events.last().unwrap();
    assert_eq!(end.event_type, "failed");
    let err = json(end);
    assert_eq!(err["error"], "protocol");
    assert!(
        err["message"].as_str().unwrap().contains("get_weather"),
        "{err}"
    );
    // A call without a name.
    let nameless = OPENAI.replace("\"name\":\"get_weather\",", "");
    let (_, events) =
        generation_from("openai", Reply::sse(&nameless, MS, After::Hang), ask()).await;
    assert_eq!(json(events.last().unwrap())["error"], "protocol");
}

#[tokio::test]
async fn an_upstream_that_stops_mid_call_times_out() {
    let first: String = OPENAI.split_inclusive("\n\n").take(9).collect();
    let fake = FakeModel::start(Reply::sse(&first, MS, After::Hang)).await;
    let url = format!("{}/v1", fake.base);
    let server = TestServer::start(&[
        "--backend",
        "openai",
        "--backend-url",
        &url,
        "--upstream-timeout-secs",
        "1",
    ]);
    let events = events_of(&server.base, ask()).await;
    let end = events.last().unwrap();
    assert_eq!(json(end)["error"], "timeout");
    assert!(of_type(&events, "tool_call").is_empty());
}
