//! `GET /v1/probe` sends its documented schedule, and `rill probe` tells a
//! path that passes events as sent from one that buffers them: directly,
//! through nginx with the example config, and through nginx with
//! `proxy_buffering on` as nginx has it by default (HTTP/1.0 upstream),
//! with and without honouring rill's `X-Accel-Buffering: no`.
mod common;

use std::process::Command;
use std::time::Duration;

use common::nginx::Nginx;
use common::{jwt, SseClient, TestServer};

/// A short schedule: a few seconds a probe.
const QUICK: [&str; 10] = [
    "--idle",
    "2",
    "--keepalive",
    "1",
    "--ticks",
    "6",
    "--interval-ms",
    "200",
    "--pad-bytes",
    "16384",
];

/// Runs `rill probe URL --json` with the quick schedule: exit code, report.
fn probe(url: &str) -> (i32, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_rill"))
        .args(["probe", url, "--json"])
        .args(QUICK)
        .output()
        .expect("run rill probe");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "rill probe printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

fn upstream(server: &TestServer) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

#[tokio::test]
async fn the_probe_stream_is_the_documented_schedule() {
    let server = TestServer::start(&[]);
    let url = server.url("/v1/probe?ticks=2&interval_ms=50&pad_bytes=2048&pad_step=1024&idle_secs=2&keepalive_secs=1");
    let mut sub = SseClient::open(&url, &[]).await;
    assert_eq!(sub.status, 200);
    assert_eq!(sub.headers["cache-control"], "no-cache, no-transform");
    assert_eq!(sub.headers["x-accel-buffering"], "no");
    let events = sub.collect(Duration::from_secs(10)).await;
    let phases: Vec<String> = events
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_str(&e.data).expect("JSON data");
            v["phase"].as_str().expect("phase").to_owned()
        })
        .collect();
    assert_eq!(
        phases,
        ["start", "tick", "tick", "pad", "pad", "after-idle", "done"]
    );
    assert_eq!(events.last().map(|e| e.event_type.as_str()), Some("done"));
    // Each event's offset counts the body bytes before it.
    let text = String::from_utf8(sub.raw.clone()).expect("utf-8");
    for e in &events {
        let v: serde_json::Value = serde_json::from_str(&e.data).expect("JSON data");
        let at = usize::try_from(v["offset"].as_u64().expect("offset")).expect("usize");
        assert!(
            text[at..].starts_with("id: ") || text[at..].starts_with("retry: "),
            "{e:?}"
        );
    }
    // One keep-alive line in the 2 s gap, every second.
    assert_eq!(text.matches("\n:\n").count(), 1, "{text}");

    let bare = SseClient::open(
        &server.url("/v1/probe?ticks=0&pad_bytes=0&idle_secs=0&x_accel_buffering=omit"),
        &[],
    )
    .await;
    assert!(!bare.headers.contains_key("x-accel-buffering"));
    let bad = reqwest::get(server.url("/v1/probe?idle_secs=3600"))
        .await
        .expect("request");
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.expect("body").contains("idle_secs"));
}

#[tokio::test]
async fn the_probe_and_the_client_module_are_open_with_auth_on() {
    let server = TestServer::start(&["--auth-jwt-secret", jwt::SECRET]);
    let res = reqwest::get(server.url("/v1/probe?ticks=0&pad_bytes=0&idle_secs=0"))
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let js = reqwest::get(server.url("/rill.js")).await.expect("request");
    assert_eq!(js.status(), 200);
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(js.headers()["cache-control"], "no-cache");
    let tag = js.headers()["etag"].clone();
    let again = reqwest::Client::new()
        .get(server.url("/rill.js"))
        .header("if-none-match", tag)
        .send()
        .await
        .expect("request");
    assert_eq!(again.status(), 304);
    let types = reqwest::get(server.url("/rill.d.ts"))
        .await
        .expect("request");
    assert_eq!(types.status(), 200);
    let doc: serde_json::Value = reqwest::get(server.url("/openapi.json"))
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    for path in ["/rill.js", "/rill.d.ts", "/v1/probe"] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} in the OpenAPI document"
        );
    }
}

#[tokio::test]
async fn direct_and_through_the_example_nginx_config_the_probe_passes() {
    let server = TestServer::start(&[]);
    let (code, report) = probe(&server.base);
    assert_eq!(report["verdict"]["level"], "pass", "{report:#}");
    assert_eq!(code, 0);

    let nginx = Nginx::start(&upstream(&server), |site| site).await;
    let (code, report) = probe(&nginx.base);
    assert_eq!(report["verdict"]["level"], "pass", "{report:#}");
    assert_eq!(report["main"]["pacing"]["kind"], "streamed", "{report:#}");
    assert_eq!(
        report["main"]["keepalives"]["kind"], "survived",
        "{report:#}"
    );
    assert_eq!(report["main"]["flush_bytes"], serde_json::Value::Null);
    assert_eq!(code, 0);
}

/// The example config with nginx's defaults back: `proxy_buffering on`,
/// and the HTTP/1.0 upstream that makes nginx fill a buffer before it
/// sends anything on.
fn buffering(site: String) -> String {
    assert!(site.contains("proxy_buffering off;") && site.contains("proxy_http_version 1.1;"));
    site.replace("proxy_buffering off;", "proxy_buffering on;")
        .replace("proxy_http_version 1.1;", "")
}

#[tokio::test]
async fn nginx_that_buffers_unless_told_not_to_is_a_warning() {
    let server = TestServer::start(&[]);
    let nginx = Nginx::start(&upstream(&server), buffering).await;
    let (code, report) = probe(&nginx.base);
    // rill's X-Accel-Buffering: no turns nginx's buffering off for the
    // stream; without it, the same path holds events in 4 KiB buffers.
    assert_eq!(report["verdict"]["level"], "warn", "{report:#}");
    assert_eq!(report["main"]["pacing"]["kind"], "streamed", "{report:#}");
    let bare = &report["without_x_accel_buffering"];
    assert_eq!(bare["pacing"]["kind"], "bursts", "{report:#}");
    let flush = bare["flush_bytes"].as_u64().expect("a flush size");
    assert!((2048..=16384).contains(&flush), "{flush}");
    assert_eq!(code, 0);
}

#[tokio::test]
async fn nginx_that_buffers_whatever_rill_says_fails() {
    let server = TestServer::start(&[]);
    let nginx = Nginx::start(&upstream(&server), |site| {
        buffering(site).replace(
            "proxy_buffering on;",
            "proxy_buffering on;\n        proxy_ignore_headers X-Accel-Buffering;",
        )
    })
    .await;
    let (code, report) = probe(&nginx.base);
    assert_eq!(report["verdict"]["level"], "fail", "{report:#}");
    assert_eq!(report["main"]["pacing"]["kind"], "bursts", "{report:#}");
    assert!(
        report["main"]["flush_bytes"].as_u64().is_some(),
        "{report:#}"
    );
    assert_eq!(
        report["main"]["keepalives"]["kind"], "held_back",
        "{report:#}"
    );
    let said = report["verdict"]["findings"].to_string();
    assert!(said.contains("events are buffered"), "{said}");
    assert!(
        said.contains("the first event, sent at once, waited"),
        "{said}"
    );
    assert_eq!(code, 1);
}
