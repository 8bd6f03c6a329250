//! `rill generate`: the answer as it streams, and a non-zero exit when the
//! generation fails or the server refuses.

use std::time::Duration;

use super::common::{SseClient, TestServer};
use super::fake_sse::{self, Reply};
use super::{rill, seed_answer, WAIT};

#[tokio::test]
async fn prints_the_answer_and_exits_zero_on_done() {
    let server = TestServer::start(&["--mock-delay-ms", "1"]);
    let r = rill(&["generate", &server.base, "Tell me about the planets"]).await;
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout
            .starts_with("Here is a two-line summary about the planets:"),
        "{}",
        r.stdout
    );
    assert_eq!(r.stdout, seed_answer());
    let mut notes = r.stderr.lines();
    let id = notes
        .next()
        .and_then(|l| l.strip_prefix("generation "))
        .unwrap_or_else(|| panic!("first note names the generation: {}", r.stderr))
        .to_owned();
    assert!(notes.any(|l| l.starts_with("[done] {")), "{}", r.stderr);
    // The id printed is the generation's: its stream holds the same answer.
    let url = server.url(&format!("/v1/streams/gen-{id}?lastEventId={id}.0"));
    let events = SseClient::open(&url, &[]).await.collect(WAIT).await;
    let replayed: String = events
        .iter()
        .filter(|e| e.event_type == "message")
        .map(|e| e.data.as_str())
        .collect();
    assert_eq!(replayed, r.stdout);
}

#[tokio::test]
async fn passes_the_model_and_reports_http_errors() {
    let server = TestServer::start(&["--mock-delay-ms", "1", "--allowed-model", "tiny"]);
    let r = rill(&["generate", &server.base, "hi", "--model", "tiny"]).await;
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.starts_with("You asked: \"hi\"."), "{}", r.stdout);
    assert!(r.stderr.contains(r#""model":"tiny""#), "{}", r.stderr);
    let r = rill(&["generate", &server.base, "  "]).await;
    assert_ne!(r.code, Some(0), "{r:?}");
    assert!(r.stderr.contains("400"), "{}", r.stderr);
}

fn fails_midway(_request: &str) -> Reply {
    Reply {
        body: "retry: 50\n\nid: g1.1\ndata: partial\n\nid: g1.2\nevent: failed\n\
               data: {\"error\":\"upstream\",\"message\":\"model server unreachable\"}\n\n"
            .into(),
        headers: vec!["x-generation-id: g1".into()],
        hold: true,
    }
}

#[tokio::test]
async fn a_failed_generation_exits_non_zero_with_its_message() {
    let fake = fake_sse::start(fails_midway).await;
    let r = rill(&["generate", &fake.base, "Tell me", "--model", "m"]).await;
    assert_ne!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stdout, "partial");
    assert!(
        r.stderr.contains("upstream: model server unreachable"),
        "{}",
        r.stderr
    );
    let requests = fake.requests.lock().unwrap().clone();
    let request = requests.first().expect("one request");
    assert!(request.starts_with("POST /v1/generations "), "{request}");
    assert!(
        request
            .to_ascii_lowercase()
            .contains("accept: text/event-stream"),
        "{request}"
    );
    let body = request.split("\r\n\r\n").nth(1).unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(body).expect("JSON body");
    assert_eq!(body, serde_json::json!({"prompt": "Tell me", "model": "m"}));
}

/// The POST's answer stops after one token; the rest comes from the
/// generation's stream, asked for after the last id printed.
fn cut_short(request: &str) -> Reply {
    if request.starts_with("POST ") {
        return Reply {
            body: "retry: 50\n\nid: g2.1\ndata: Hello\n\n".into(),
            headers: vec!["x-generation-id: g2".into()],
            hold: false,
        };
    }
    let resumed = request
        .to_ascii_lowercase()
        .contains("\r\nlast-event-id: g2.1\r\n");
    let body = if request.starts_with("GET /v1/streams/gen-g2 ") && resumed {
        "id: g2.2\ndata: , world\n\nid: g2.3\nevent: done\ndata: {}\n\n"
    } else {
        "event: failed\ndata: resumed from the wrong place\n\n"
    };
    Reply {
        body: body.into(),
        headers: Vec::new(),
        hold: true,
    }
}

#[tokio::test]
async fn a_response_cut_short_is_resumed_from_the_stream() {
    let fake = fake_sse::start(cut_short).await;
    let r = tokio::time::timeout(
        WAIT + Duration::from_secs(1),
        rill(&["generate", &fake.base, "hi"]),
    )
    .await
    .expect("finished");
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stdout, "Hello, world");
}
