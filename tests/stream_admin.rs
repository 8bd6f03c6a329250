//! Around the streams: listing, deleting, health, metrics, the OpenAPI
//! document, and the `rill publish` / `rill tail` commands run as
//! subprocesses.
mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{delete, epoch, get_json, publish, seq, SseClient, TestServer};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn list_shows_name_last_id_retained_and_subscribers() {
    let server = TestServer::start(&["--retention-events", "4"]);
    for i in 0..6 {
        publish(&server.base, "b-stream", &i.to_string(), None).await;
    }
    publish(&server.base, "a-stream", "x", None).await;
    let _one = SseClient::open(&server.url("/v1/streams/b-stream"), &[]).await;
    let _two = SseClient::open(&server.url("/v1/streams/b-stream"), &[]).await;
    let list = get_json(server.url("/v1/streams")).await;
    let streams = list["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2);
    let a = &streams[0];
    assert_eq!(a["name"], "a-stream");
    assert_eq!(seq(a["last_id"].as_str().unwrap()), 1);
    assert_eq!(a["retained_events"], 1);
    assert_eq!(a["subscribers"], 0);
    let b = &streams[1];
    assert_eq!(b["name"], "b-stream");
    assert_eq!(seq(b["last_id"].as_str().unwrap()), 6);
    assert_eq!(b["retained_events"], 4);
    assert_eq!(b["subscribers"], 2);
    assert_eq!(b["finished"], false);
    assert!(b["retained_bytes"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn delete_ends_the_stream_for_live_subscribers() {
    let server = TestServer::start(&[]);
    let first = publish(&server.base, "doomed", "first", None).await;
    let mut live = SseClient::open(&server.url("/v1/streams/doomed?lastEventId=0"), &[]).await;
    assert_eq!(live.take(1, WAIT).await[0].data, "first");
    assert_eq!(delete(&server.base, "doomed").await.status().as_u16(), 204);
    let rest = live.collect(WAIT).await;
    assert!(live.closed, "the connection closed");
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0].event_type, "end");
    assert_eq!(rest[0].last_event_id, format!("{}.2", epoch(&first)));
    let end: serde_json::Value = serde_json::from_str(&rest[0].data).unwrap();
    assert_eq!(end["reason"], "deleted");
    assert_eq!(end["stream"], "doomed");

    let list = get_json(server.url("/v1/streams")).await;
    assert!(list["streams"].as_array().unwrap().is_empty());
    assert_eq!(delete(&server.base, "doomed").await.status().as_u16(), 404);
    let res = delete(&server.base, "never-was").await;
    assert_eq!(res.status().as_u16(), 404);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
}

#[tokio::test]
async fn healthz_answers_ok() {
    let server = TestServer::start(&[]);
    let body = get_json(server.url("/healthz")).await;
    assert_eq!(body["status"], "ok");
}

/// Every metric name declared in `src/metrics.rs`.
fn declared_metrics() -> Vec<String> {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/metrics.rs"))
        .expect("read src/metrics.rs");
    src.lines()
        .filter(|l| l.trim_start().starts_with("pub const"))
        .filter_map(|l| l.split('"').nth(1).map(str::to_owned))
        .collect()
}

/// The value of `series`, which must be present.
fn sample(text: &str, series: &str) -> f64 {
    common::sample(text, series).unwrap_or_else(|| {
        panic!(
            "no sample {series} in
{text}"
        )
    })
}

#[tokio::test]
async fn metrics_list_every_name_with_sensible_values() {
    let server = TestServer::start(&["--mock-delay-ms", "1", "--retention-events", "3"]);
    for i in 1..5 {
        publish(&server.base, "counted", &i.to_string(), None).await;
    }
    let first = publish(&server.base, "counted", "0", None).await;
    let one = format!("/v1/streams/counted?lastEventId={}.1", epoch(&first));
    let mut c = SseClient::open(&server.url(&one), &[]).await;
    assert_eq!(c.take(4, WAIT).await[0].event_type, "reset");
    let mut demo = SseClient::open(&server.url("/sse"), &[]).await;
    assert_eq!(demo.collect(WAIT).await.len(), 70);
    // A generation read to its end: 71 events published and delivered
    // (69 tokens, the usage the model reported, done).
    let res = reqwest::Client::new()
        .post(server.url("/v1/generations"))
        .header("accept", "text/event-stream")
        .json(&serde_json::json!({"prompt": "Tell me about the planets"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap().matches("\nid: ").count(), 71);
    let _ = reqwest::get(server.url("/v1/streams/-bad")).await.unwrap();

    let text = common::metrics_text(&server.base).await;
    for name in declared_metrics() {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing from\n{text}"
        );
    }
    // 5 published + 71 by the generation; the demo publishes nothing (it
    // plays the recording).
    assert_eq!(sample(&text, "rill_events_published_total"), 76.0);
    // 3 replayed + 70 of the demo + 71 of the generation.
    assert_eq!(sample(&text, "rill_events_delivered_total"), 144.0);
    assert_eq!(sample(&text, "rill_resumes_total"), 1.0);
    assert_eq!(sample(&text, r#"rill_resets_total{reason="expired"}"#), 1.0);
    assert_eq!(
        sample(&text, r#"rill_rejected_total{reason="bad_name"}"#),
        1.0
    );
    assert_eq!(sample(&text, "rill_subscribers"), 1.0);
    assert_eq!(
        sample(&text, r#"rill_stream_subscribers{stream="counted"}"#),
        1.0
    );
    assert!(sample(&text, "rill_connections") >= 1.0);
    assert_eq!(sample(&text, "rill_generations_active"), 0.0);
    assert_eq!(sample(&text, "rill_slow_consumer_catchups_total"), 0.0);
}

#[tokio::test]
async fn openapi_lists_every_route() {
    let server = TestServer::start(&[]);
    let doc = get_json(server.url("/openapi.json")).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc["info"]["title"], "rill");
    let routes = [
        ("/", "get"),
        ("/sse", "get"),
        ("/rill.js", "get"),
        ("/rill.d.ts", "get"),
        ("/v1/probe", "get"),
        ("/v1/streams", "get"),
        ("/v1/streams/{name}", "get"),
        ("/v1/streams/{name}", "post"),
        ("/v1/streams/{name}", "delete"),
        ("/v1/stream/{name}", "get"),
        ("/v1/stream/{name}", "head"),
        ("/v1/stream/{name}", "put"),
        ("/v1/stream/{name}", "post"),
        ("/v1/stream/{name}", "delete"),
        ("/v1/generations", "post"),
        ("/v1/generations/{id}/cancel", "post"),
        ("/v1/chat/completions", "post"),
        ("/v1/responses", "post"),
        ("/v1/responses/{id}", "get"),
        ("/v1/responses/{id}/cancel", "post"),
        ("/v1/models", "get"),
        ("/healthz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
        ("/dashboard", "get"),
    ];
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in routes {
        let op = &paths.get(path).unwrap_or_else(|| panic!("{path} missing"))[method];
        assert!(op.is_object(), "{method} {path} missing");
        assert!(
            op["responses"].is_object(),
            "{method} {path} has no responses"
        );
    }
    assert_eq!(paths.len(), 19, "no route left out or invented");
    // Schemas the operations refer to exist.
    let text = doc.to_string();
    for reference in text.split("#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap();
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{name} dangling"
        );
    }
}

fn rill(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rill"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rill");
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn cli_publish_and_tail() {
    let server = TestServer::start(&[]);
    let base = server.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        let a = rill(&["publish", &base, "cli", "from an argument"], None);
        let b = rill(&["publish", &base, "cli", "-"], Some("from\nstdin"));
        let c = rill(&["publish", &base, "cli", "--event", "note", "typed"], None);
        let bad = rill(&["publish", &base, "a b", "x"], None);
        let tail = rill(
            &[
                "tail", &base, "cli", "--from", "0", "--json", "--count", "3",
            ],
            None,
        );
        let two = format!("{}.2", epoch(b.1.trim()));
        let tail_from = rill(
            &["tail", &base, "cli", "--from", &two, "--count", "1"],
            None,
        );
        (a, b, c, bad, tail, tail_from)
    })
    .await
    .unwrap();
    let (a, b, c, bad, tail, tail_from) = out;
    let incarnation = epoch(a.1.trim()).to_owned();
    let id = |n: u64| format!("{incarnation}.{n}");
    assert_eq!((a.0, a.1.trim()), (true, id(1).as_str()), "{}", a.2);
    assert_eq!((b.0, b.1.trim()), (true, id(2).as_str()), "{}", b.2);
    assert_eq!((c.0, c.1.trim()), (true, id(3).as_str()), "{}", c.2);
    assert!(!bad.0, "a refused publish fails");
    assert!(bad.2.contains("400"), "{}", bad.2);
    assert!(tail.0, "{}", tail.2);
    let lines: Vec<serde_json::Value> = tail
        .1
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(
        lines,
        [
            serde_json::json!({"id": id(1), "event": "message", "data": "from an argument"}),
            serde_json::json!({"id": id(2), "event": "message", "data": "from\nstdin"}),
            serde_json::json!({"id": id(3), "event": "note", "data": "typed"}),
        ]
    );
    assert!(tail_from.0);
    assert_eq!(tail_from.1, "[note] typed\n");
}

#[tokio::test]
async fn cli_tail_stops_at_the_end_of_a_stream() {
    let server = TestServer::start(&[]);
    publish(&server.base, "ending", "one", None).await;
    let base = server.base.clone();
    let tail = tokio::task::spawn_blocking(move || {
        let child = Command::new(env!("CARGO_BIN_EXE_rill"))
            .args(["tail", &base, "ending", "--from", "0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        child
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(delete(&server.base, "ending").await.status().as_u16(), 204);
    let out = tokio::time::timeout(
        WAIT,
        tokio::task::spawn_blocking(move || tail.wait_with_output()),
    )
    .await
    .expect("tail ended")
    .unwrap()
    .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("one\n[end] "), "{text}");
}

#[tokio::test]
async fn a_running_generation_stream_cannot_be_deleted() {
    let server = TestServer::start(&["--mock-delay-ms", "200"]);
    let client = reqwest::Client::new();
    let started: serde_json::Value = client
        .post(server.url("/v1/generations"))
        .json(&serde_json::json!({ "prompt": "planets" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = started["id"].as_str().unwrap();
    let stream = format!("gen-{id}");
    let res = delete(&server.base, &stream).await;
    assert_eq!(res.status().as_u16(), 409);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "conflict");
    let res = client
        .post(server.url(&format!("/v1/generations/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let mut c = SseClient::open(
        &server.url(&format!("/v1/streams/{stream}?lastEventId={id}.0")),
        &[],
    )
    .await;
    let events = c.collect(WAIT).await;
    let done: serde_json::Value = serde_json::from_str(&events.last().unwrap().data).unwrap();
    assert_eq!(done["done_reason"], "cancelled");
    // Ended: now it can go.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = delete(&server.base, &stream).await.status().as_u16();
        if status == 204 {
            break;
        }
        assert_eq!(status, 409);
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
