//! The dashboard's data stream reflects what the node is doing.
mod common;

use std::time::Duration;

use common::{publish, SseClient, TestServer};

#[tokio::test]
async fn dashboard_stream_reports_subscribers_and_event_rates() {
    let server = TestServer::start(&[]);
    let page = reqwest::get(server.url("/dashboard")).await.expect("page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("new EventSource('/v1/streams/_dashboard')"));
    assert!(!html.contains("innerHTML"));

    let mut watchers = Vec::new();
    for _ in 0..3 {
        watchers.push(SseClient::open(&server.url("/v1/streams/busy"), &[]).await);
    }
    let mut dash = SseClient::open(&server.url("/v1/streams/_dashboard"), &[]).await;
    assert_eq!(dash.status, 200);
    let mut seen_rate = false;
    let mut seen_top = false;
    for round in 0..8 {
        for i in 0..20 {
            publish(&server.base, "busy", &format!("{round}-{i}"), None).await;
        }
        let ev = dash
            .next_event(Duration::from_secs(5))
            .await
            .expect("a snapshot each second");
        let s: serde_json::Value = serde_json::from_str(&ev.data).expect("snapshot JSON");
        // Three subscribers on `busy`, plus this one on `_dashboard`.
        assert_eq!(s["subscribers"], 4, "{s}");
        assert!(s["published_total"].as_u64().unwrap_or(0) >= 20, "{s}");
        seen_rate |= s["events_per_sec"].as_f64().unwrap_or(0.0) > 0.0
            && s["deliveries_per_sec"].as_f64().unwrap_or(0.0) > 0.0;
        seen_top |=
            s["top_streams"][0]["name"] == "busy" && s["top_streams"][0]["subscribers"] == 3;
        if seen_rate && seen_top {
            break;
        }
    }
    assert!(seen_rate, "event rates never showed traffic");
    assert!(seen_top, "busiest stream never listed");
    let refused = reqwest::Client::new()
        .post(server.url("/v1/streams/_dashboard"))
        .body("x")
        .send()
        .await
        .expect("post");
    assert_eq!(
        refused.status(),
        400,
        "rill's own streams are not publishable"
    );
}

#[tokio::test]
async fn dashboard_shows_generations_in_flight_and_time_to_first_token() {
    let server = TestServer::start(&["--mock-delay-ms", "200"]);
    let mut dash = SseClient::open(&server.url("/v1/streams/_dashboard"), &[]).await;
    let res = reqwest::Client::new()
        .post(server.url("/v1/generations"))
        .json(&serde_json::json!({ "prompt": "the planets, please" }))
        .send()
        .await
        .expect("start");
    assert_eq!(res.status(), 201);
    let started: serde_json::Value = res.json().await.expect("json");
    let stream = started["stream"].as_str().expect("stream path").to_owned();
    let mut reader = SseClient::open(&server.url(&stream), &[]).await;
    reader
        .next_event(Duration::from_secs(5))
        .await
        .expect("first token");
    let mut ok = false;
    for _ in 0..6 {
        let ev = dash
            .next_event(Duration::from_secs(5))
            .await
            .expect("snapshot");
        let s: serde_json::Value = serde_json::from_str(&ev.data).expect("json");
        if s["generations_active"] == 1 && s["ttft_p50_ms"].as_f64().is_some() {
            ok = true;
            break;
        }
    }
    assert!(
        ok,
        "no snapshot showed the running generation and its first-token time"
    );
}
