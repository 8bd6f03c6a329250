//! Retries are safe: a publish or a generation start sent again with the
//! same `Idempotency-Key` returns the first answer and stores (or starts)
//! nothing new; the same key with a different request is refused.
mod common;

use common::{SseClient, TestServer};
use serde_json::{json, Value};

async fn publish_keyed(base: &str, stream: &str, key: &str, data: &str) -> (u16, bool, Value) {
    let res = reqwest::Client::new()
        .post(format!("{base}/v1/streams/{stream}"))
        .header("idempotency-key", key)
        .json(&json!({ "data": data }))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let replayed = res.headers().get("idempotent-replayed").is_some();
    (status, replayed, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_retried_publish_is_stored_once() {
    let server = TestServer::start(&[]);
    let (status, replayed, first) = publish_keyed(&server.base, "orders", "k-1", "paid").await;
    assert_eq!((status, replayed), (201, false));
    common::publish(&server.base, "orders", "other", None).await;
    let (status, replayed, again) = publish_keyed(&server.base, "orders", "k-1", "paid").await;
    assert_eq!((status, replayed), (201, true));
    assert_eq!(again["id"], first["id"], "the first answer");
    let (status, _, body) = publish_keyed(&server.base, "orders", "k-1", "refunded").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "idempotency_key_reused");
    // Keys are per stream.
    let (status, replayed, _) = publish_keyed(&server.base, "other", "k-1", "paid").await;
    assert_eq!((status, replayed), (201, false));
    let mut c = SseClient::open(&server.url("/v1/streams/orders?lastEventId=0"), &[]).await;
    let events = c.take(2, std::time::Duration::from_secs(5)).await;
    assert_eq!(events[0].data, "paid");
    assert_eq!(events[1].data, "other");
    assert!(
        c.next_event(std::time::Duration::from_millis(300))
            .await
            .is_none(),
        "stored once"
    );
    for bad in ["", "has space", &"k".repeat(256)] {
        let (status, _, _) = publish_keyed(&server.base, "orders", bad, "x").await;
        assert_eq!(status, 400, "{bad:?}");
    }
}

#[tokio::test]
async fn a_retried_generation_start_starts_one_generation() {
    let server = TestServer::start(&["--mock-delay-ms", "1"]);
    let start = |key: &'static str, prompt: &'static str| {
        let base = server.base.clone();
        async move {
            let res = reqwest::Client::new()
                .post(format!("{base}/v1/generations"))
                .header("idempotency-key", key)
                .json(&json!({ "prompt": prompt }))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let replayed = res.headers().get("idempotent-replayed").is_some();
            (
                status,
                replayed,
                res.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, replayed, first) = start("g-1", "Tell me about the planets").await;
    assert_eq!((status, replayed), (201, false));
    let (status, replayed, again) = start("g-1", "Tell me about the planets").await;
    assert_eq!((status, replayed), (201, true));
    assert_eq!(again["id"], first["id"]);
    let (status, _, body) = start("g-1", "something else").await;
    assert_eq!(status, 422, "{body}");
    let text = common::metrics_text(&server.base).await;
    assert_eq!(
        common::sample(&text, "rill_generations_started_total{backend=\"mock\"}"),
        Some(1.0)
    );
}
