//! `POST /v1/chat/completions` over real HTTP: the chunk stream and the
//! completion object in OpenAI's exact shapes, the generation behind them,
//! errors in OpenAI's error shape with the status that picks the SDK's
//! exception class, idempotency keys, caps and auth.
mod common;

use std::time::Duration;

use common::fake_model::{After, FakeModel, Reply};
use common::openai::{post, Streamed};
use common::{jwt, SseClient, TestServer};
use futures_util::StreamExt;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

fn weather() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
}

fn ask(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

fn url(server: &TestServer) -> String {
    server.url("/v1/chat/completions")
}

#[tokio::test]
async fn a_stream_in_openai_order_with_reasoning_a_call_usage_and_done() {
    let server = TestServer::start(&["--mock-delay-ms", "1"]);
    let body = json!({"model": "llama3.1", "messages": ask("Think: weather in Paris?"), "tools": weather(),
        "stream": true, "stream_options": {"include_usage": true}});
    let s = Streamed::read(post(&url(&server), &body, &[]).await).await;
    assert_eq!(s.status, 200);
    assert!(s.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    s.assert_sdk_framing();
    assert!(s.raw.ends_with("data: [DONE]\n\n"));
    assert!(
        s.events.iter().all(|e| e.event_type == "message"),
        "chat chunks name no event"
    );
    let chunks = s.json();
    let id = s.headers["x-generation-id"].to_str().unwrap().to_owned();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], format!("chatcmpl-{id}"));
        assert_eq!(c["model"], "llama3.1");
    }
    let delta = |i: usize| &chunks[i]["choices"][0]["delta"];
    assert_eq!(*delta(0), json!({"role": "assistant", "content": ""}));
    let n = chunks.len();
    for c in &chunks[1..n - 3] {
        assert!(
            c["choices"][0]["delta"]["reasoning_content"].is_string(),
            "{c}"
        );
    }
    let call = &delta(n - 3)["tool_calls"][0];
    assert_eq!(call["index"], 0);
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(chunks[n - 2]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(*delta(n - 2), json!({}));
    assert_eq!(chunks[n - 1]["choices"], json!([]));
    assert!(chunks[n - 1]["usage"]["total_tokens"].as_u64().unwrap() > 0);

    // The generation behind it, in rill's own events, with the same call.
    let gen = format!("/v1/streams/gen-{id}?lastEventId=0");
    let events = SseClient::open(&server.url(&gen), &[])
        .await
        .collect(WAIT)
        .await;
    let own = events.iter().find(|e| e.event_type == "tool_call").unwrap();
    let own: Value = serde_json::from_str(&own.data).unwrap();
    assert_eq!(own["id"], call["id"]);
}

#[tokio::test]
async fn without_include_usage_no_usage_and_a_plain_completion() {
    let server = TestServer::start(&["--mock-delay-ms", "1"]);
    let body = json!({"model": "llama3.1", "messages": ask("hello"), "stream": true});
    let s = Streamed::read(post(&url(&server), &body, &[]).await).await;
    assert!(s.json().iter().all(|c| c.get("usage").is_none()));
    let text: String = s
        .json()
        .iter()
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(text.starts_with("You asked: \"hello\"."));

    let body = json!({"model": "llama3.1", "messages": ask("hello"), "temperature": 0.1, "max_completion_tokens": 50});
    let res = post(&url(&server), &body, &[]).await;
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.headers().contains_key("x-generation-id"));
    let c: Value = res.json().await.unwrap();
    assert_eq!(c["object"], "chat.completion");
    assert!(c["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(c["created"].is_u64());
    let choice = &c["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], text);
    assert!(choice["message"].get("tool_calls").is_none());
    assert_eq!(
        c["usage"]["completion_tokens"].as_u64().unwrap()
            + c["usage"]["prompt_tokens"].as_u64().unwrap(),
        c["usage"]["total_tokens"].as_u64().unwrap()
    );
}

async fn error_of(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    (status, res.json().await.unwrap())
}

#[tokio::test]
async fn errors_take_openai_shape_and_status() {
    let server = TestServer::start(&["--mock-delay-ms", "1"]);
    let u = url(&server);
    let (status, e) =
        error_of(post(&u, &json!({"model": "gpt-5", "messages": ask("x")}), &[]).await).await;
    assert_eq!(status, 404);
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert_eq!(e["error"]["code"], "model_not_found");
    assert_eq!(e["error"]["param"], "model");
    assert!(e["error"]["message"].as_str().unwrap().contains("gpt-5"));
    for (body, param) in [
        (json!({"messages": ask("x"), "n": 2}), "n"),
        (json!({"messages": ask("x"), "logprobs": true}), "logprobs"),
        (json!({"messages": ask("x"), "max_tokens": 0}), "max_tokens"),
        (
            json!({"messages": [{"role": "wizard", "content": "x"}]}),
            "messages[0]",
        ),
    ] {
        let (status, e) = error_of(post(&u, &body, &[]).await).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(e["error"]["param"], param, "{body}");
        assert!(e["error"]["message"].is_string());
    }
    let res = reqwest::Client::new()
        .post(&u)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    let (status, e) = error_of(res).await;
    assert_eq!(
        (status, e["error"]["type"].as_str()),
        (400, Some("invalid_request_error"))
    );
    let res = reqwest::Client::new()
        .post(&u)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 415);
    // Nothing started.
    let list = reqwest::get(server.url("/v1/streams"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!list.contains("gen-"), "{list}");
}

#[tokio::test]
async fn caps_answer_429_and_keys_make_retries_safe() {
    let server = TestServer::start(&["--mock-delay-ms", "100", "--max-generations-per-sub", "1"]);
    let u = url(&server);
    let body = json!({"messages": ask("planets"), "stream": true});
    let key = [("idempotency-key", "k-1")];
    let first = post(&u, &body, &key).await;
    assert_eq!(first.status().as_u16(), 200);
    let id = first.headers()["x-generation-id"].clone();
    // The same request, retried with its key: the same generation.
    let again = post(&u, &body, &key).await;
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(again.headers()["x-generation-id"], id);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    // The key with another request.
    let (status, _) = error_of(post(&u, &json!({"messages": ask("other")}), &key).await).await;
    assert_eq!(status, 422);
    // Another generation is over the cap.
    let res = post(&u, &json!({"messages": ask("more")}), &[]).await;
    assert_eq!(res.headers()["retry-after"], "5");
    let (status, e) = error_of(res).await;
    assert_eq!(status, 429);
    assert_eq!(e["error"]["type"], "rate_limit_error");
    drop((first, again));
}

#[tokio::test]
async fn a_failing_model_and_a_cancel_end_the_stream_with_an_error() {
    let recording = include_str!("data/openai-chat.sse");
    let cut: String = recording
        .split_inclusive("\n\n")
        .take(3)
        .collect::<String>()
        + "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n";
    let fake = FakeModel::start(Reply::sse(&cut, Duration::from_millis(1), After::End)).await;
    let base = format!("{}/v1", fake.base);
    let server = TestServer::start(&[
        "--backend",
        "openai",
        "--backend-url",
        &base,
        "--model",
        "m",
    ]);
    let body = json!({"messages": ask("hi"), "stream": true});
    let s = Streamed::read(post(&url(&server), &body, &[]).await).await;
    s.assert_sdk_framing();
    let last = s.json().pop().unwrap();
    assert_eq!(last["error"]["code"], "upstream");
    assert!(last["error"]["message"]
        .as_str()
        .unwrap()
        .contains("overloaded"));
    assert!(!s.raw.contains("[DONE]"));
    // Without stream: 502, still naming the generation.
    let res = post(&url(&server), &json!({"messages": ask("hi")}), &[]).await;
    assert!(res.headers().contains_key("x-generation-id"));
    let (status, e) = error_of(res).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (502, Some("upstream"))
    );

    let server = TestServer::start(&["--mock-delay-ms", "50"]);
    let body = json!({"messages": ask("planets"), "stream": true});
    let res = post(&url(&server), &body, &[]).await;
    let id = res.headers()["x-generation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut body = res.bytes_stream();
    body.next().await.unwrap().unwrap();
    let cancel = reqwest::Client::new()
        .post(server.url(&format!("/v1/generations/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status().as_u16(), 202);
    let mut rest = Vec::new();
    while let Some(Ok(b)) = tokio::time::timeout(WAIT, body.next()).await.unwrap() {
        rest.extend_from_slice(&b);
    }
    let rest = String::from_utf8(rest).unwrap();
    let last = rest.trim_end().rsplit("data: ").next().unwrap();
    let last: Value = serde_json::from_str(last).unwrap();
    assert_eq!(last["error"]["code"], "cancelled");
}

#[tokio::test]
async fn with_auth_the_bearer_token_is_the_api_key_and_refusals_are_openai_shaped() {
    let server = jwt::server();
    let u = url(&server);
    let res = post(&u, &json!({"messages": ask("hi")}), &[]).await;
    assert!(res.headers().contains_key("www-authenticate"));
    let (status, e) = error_of(res).await;
    assert_eq!(status, 401);
    assert_eq!(e["error"]["type"], "authentication_error");
    let reader = jwt::hs256(jwt::grant(&[], &["news"], 600));
    let auth = format!("Bearer {reader}");
    let (status, e) = error_of(
        post(
            &u,
            &json!({"messages": ask("hi")}),
            &[("authorization", &auth)],
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, e["error"]["type"].as_str()),
        (403, Some("permission_error"))
    );
    let maker =
        jwt::hs256(json!({"sub": "maker", "exp": jwt::now() + 600, "rill": {"generate": true}}));
    let auth = format!("Bearer {maker}");
    let res = post(
        &u,
        &json!({"messages": ask("hi")}),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(res.status().as_u16(), 200);
    let models = reqwest::Client::new()
        .get(server.url("/v1/models"))
        .bearer_auth(&maker)
        .send()
        .await
        .unwrap();
    let models: Value = models.json().await.unwrap();
    assert_eq!(
        models,
        json!({"object": "list", "data": [{"id": "llama3.1", "object": "model", "created": 0, "owned_by": "rill"}]})
    );
}
