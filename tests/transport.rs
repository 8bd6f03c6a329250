//! Transport over real connections: HTTP/2 with prior knowledge (h2c) and
//! over TLS (ALPN), many event streams on one connection, CORS, and the
//! graceful drain at shutdown.

mod common;

use std::time::Duration;

use common::secure::{metric as metric_value, scrape, tls_args, tls_client};
use common::{SseClient, TestServer};

const WAIT: Duration = Duration::from_secs(10);
const STREAMS: usize = 20;

fn tls_server() -> TestServer {
    let args = tls_args();
    TestServer::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The value of an unlabelled metric in `/metrics`, read over `client`.
async fn metric(client: &reqwest::Client, s: &TestServer, name: &str) -> f64 {
    let text = scrape(client, &s.base).await;
    metric_value(&text, name).unwrap_or_else(|| panic!("{name} not in metrics:\n{text}"))
}

/// Opens `STREAMS` subscriptions over `client`, publishes one event over
/// it, and checks every subscription got it, all on one connection.
async fn many_streams_on_one_connection(s: &TestServer, client: &reqwest::Client) {
    let url = s.url("/v1/streams/fan");
    let mut subs = Vec::new();
    for _ in 0..STREAMS {
        let sub = SseClient::open_with(client, &url, &[]).await;
        assert_eq!(sub.status, 200);
        assert_eq!(sub.version, reqwest::Version::HTTP_2);
        subs.push(sub);
    }
    // All are open at once: the server counts them as live subscribers, on
    // a single connection (this metrics request rides the same one).
    assert_eq!(metric(client, s, "rill_subscribers").await, STREAMS as f64);
    assert_eq!(metric(client, s, "rill_connections").await, 1.0);
    let res = client
        .post(&url)
        .json(&serde_json::json!({"data": "to everyone"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    let got = futures_util::future::join_all(subs.iter_mut().map(|s| s.next_event(WAIT))).await;
    for e in got {
        assert_eq!(e.expect("event").data, "to everyone");
    }
}

#[tokio::test]
async fn h2c_prior_knowledge_carries_many_streams_on_one_connection() {
    let s = TestServer::start(&[]);
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    many_streams_on_one_connection(&s, &client).await;
}

#[tokio::test]
async fn tls_negotiates_h2_and_carries_many_streams_on_one_connection() {
    let s = tls_server();
    assert!(s.base.starts_with("https://"), "{}", s.base);
    let client = tls_client(reqwest::Client::builder());
    many_streams_on_one_connection(&s, &client).await;
}

#[tokio::test]
async fn tls_still_serves_http1_clients() {
    let s = tls_server();
    let client = tls_client(reqwest::Client::builder().http1_only());
    let mut sub = SseClient::open_with(&client, &s.url("/sse"), &[]).await;
    assert_eq!(sub.status, 200);
    assert_eq!(sub.version, reqwest::Version::HTTP_11);
    assert!(sub.next_event(WAIT).await.is_some());
    // A plain-HTTP request to the TLS port gets no HTTP answer.
    let plain = s.base.replace("https://", "http://");
    assert!(reqwest::get(format!("{plain}/healthz")).await.is_err());
}

#[tokio::test]
async fn cors_preflight_and_credentials_for_explicit_origins() {
    let s = TestServer::start(&[
        "--cors-origin",
        "https://app.example",
        "--cors-origin",
        "http://localhost:3000",
    ]);
    let client = reqwest::Client::new();
    let pre = client
        .request(reqwest::Method::OPTIONS, s.url("/v1/streams/x"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, last-event-id",
        )
        .send()
        .await
        .unwrap();
    assert!(pre.status().is_success(), "{}", pre.status());
    let h = pre.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert_eq!(h["access-control-allow-credentials"], "true");
    let allowed = h["access-control-allow-headers"].to_str().unwrap();
    for name in ["authorization", "content-type", "last-event-id"] {
        assert!(allowed.contains(name), "{allowed}");
    }
    assert!(h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));

    let sub = SseClient::open(&s.url("/sse"), &[("origin", "http://localhost:3000")]).await;
    assert_eq!(
        sub.headers["access-control-allow-origin"],
        "http://localhost:3000"
    );
    assert_eq!(sub.headers["access-control-allow-credentials"], "true");

    let other = client
        .get(s.url("/healthz"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn cors_any_origin_has_no_credentials() {
    let s = TestServer::start(&["--cors-origin", "*"]);
    let res = reqwest::Client::new()
        .get(s.url("/healthz"))
        .header("origin", "https://anywhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    assert!(res
        .headers()
        .get("access-control-allow-credentials")
        .is_none());
}

#[tokio::test]
async fn without_cors_origins_no_cors_headers_are_sent() {
    let s = TestServer::start(&[]);
    let res = reqwest::Client::new()
        .get(s.url("/healthz"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn shutdown_ends_open_streams_with_a_jittered_retry_and_exits() {
    let mut s = TestServer::start(&["--retry-ms", "1000", "--shutdown-timeout-secs", "5"]);
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut subs = Vec::new();
    for i in 0..8 {
        let url = s.url(&format!("/v1/streams/drain-{i}"));
        let sub = if i % 2 == 0 {
            SseClient::open(&url, &[]).await
        } else {
            SseClient::open_with(&h2, &url, &[]).await
        };
        assert_eq!(sub.status, 200);
        subs.push(sub);
    }
    // Let every subscription read its opening `retry:`.
    for sub in &mut subs {
        assert!(sub.next_event(Duration::from_millis(300)).await.is_none());
        assert_eq!(sub.retry(), Some(1000));
    }
    // Wait for the exit off the runtime, so the clients' connections keep
    // being served (an HTTP/2 client must answer the server's GOAWAY ping).
    let (status, s) = tokio::task::spawn_blocking(move || {
        let status = s.terminate(Duration::from_secs(8));
        (status, s)
    })
    .await
    .unwrap();
    let status = status.expect("rill exits within the drain");
    assert!(status.success(), "{status:?}");
    // Every connection closed on its own; none was cut at the drain limit.
    let log = wait_for_log(&s, "shutting down").await;
    assert!(!log.contains("exiting anyway"), "{log}");
    let mut hints = Vec::new();
    for sub in &mut subs {
        sub.collect(WAIT).await;
        assert!(sub.closed);
        let hint = sub.retry().expect("a retry hint");
        assert!((1000..=4000).contains(&hint), "{hint}");
        hints.push(hint);
    }
    hints.sort();
    hints.dedup();
    // Jitter: eight draws from 3001 values are very unlikely to be equal.
    assert!(hints.len() > 1, "{hints:?}");
}

/// The server's log once it contains `line`, waiting up to ten seconds, plus
/// a moment for any lines after it.
async fn wait_for_log(s: &TestServer, line: &str) -> String {
    for _ in 0..100 {
        let log = s.log.lock().unwrap().join("\n");
        if log.contains(line) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            return s.log.lock().unwrap().join("\n");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("`{line}` never logged");
}
