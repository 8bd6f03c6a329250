//! What a client without a token can learn with auth on: no stream name from
//! any route open to it (`/metrics`, `/healthz`, `/openapi.json`, `/`, error
//! answers), and rill's own and generation streams stay out of reach of a
//! bare `*`. The admin listener (`--admin-listen`) tells operators
//! everything, without auth, on a separate address.

mod common;

use std::time::Duration;

use common::jwt::{get, grant, hs256, now, post, SECRET};
use common::{sample, SseClient, TestServer};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(5);
/// A stream a token holder is subscribed to while anonymous clients look.
const SECRET_STREAM: &str = "secret-room-7";

fn auth_server(extra: &[&str]) -> TestServer {
    let mut args = vec!["--auth-jwt-secret", SECRET, "--mock-delay-ms", "1"];
    args.extend_from_slice(extra);
    TestServer::start(&args)
}

/// The admin listener's base URL, from its start-up line.
async fn admin_base(s: &TestServer) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let found = s.log.lock().unwrap().iter().find_map(|l| {
            l.find("admin listening on ")
                .map(|i| l[i + "admin listening on ".len()..].trim().to_owned())
        });
        if let Some(base) = found {
            return base;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no `admin listening on` line: {:?}",
            s.log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Opens a subscription to [`SECRET_STREAM`], publishes to it and starts a
/// generation, all with tokens; returns the subscription (keep it open) and the
/// generation's stream name.
async fn traffic(s: &TestServer) -> (SseClient, String) {
    let reader = hs256(grant(&[], &[SECRET_STREAM], 300));
    let sub = SseClient::open(
        &s.url(&format!("/v1/streams/{SECRET_STREAM}")),
        &[("authorization", &format!("Bearer {reader}"))],
    )
    .await;
    assert_eq!(sub.status, 200);
    let writer = hs256(grant(&[SECRET_STREAM], &[], 300));
    let res = post(
        &s.url(&format!("/v1/streams/{SECRET_STREAM}")),
        Some(&writer),
        json!({"data": "psst"}),
    )
    .await;
    assert_eq!(res.status(), 201);
    let gen = hs256(json!({"sub": "u1", "exp": now() + 300, "rill": {"generate": true}}));
    let res = post(
        &s.url("/v1/generations"),
        Some(&gen),
        json!({"prompt": "hi"}),
    )
    .await;
    assert_eq!(res.status(), 201);
    let started: Value = res.json().await.unwrap();
    let stream = started["stream"].as_str().unwrap();
    let name = stream.rsplit('/').next().unwrap().to_owned();
    assert!(name.starts_with("gen-"), "{name}");
    (sub, name)
}

async fn text(url: &str) -> (u16, String) {
    let res = get(url, &[]).await;
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test]
async fn an_anonymous_client_learns_no_stream_name() {
    let s = auth_server(&[]);
    let (_sub, gen) = traffic(&s).await;
    let secrets = [SECRET_STREAM, gen.as_str(), gen.trim_start_matches("gen-")];

    let (status, metrics) = text(&s.url("/metrics")).await;
    assert_eq!(status, 200);
    // Aggregates are there: the subscriber above is counted.
    assert!(
        sample(&metrics, "rill_subscribers").unwrap_or(0.0) >= 1.0,
        "{metrics}"
    );
    assert!(!metrics.contains("stream=\""), "{metrics}");

    let (status, health) = text(&s.url("/healthz")).await;
    assert_eq!(status, 200);
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health, json!({"status": "ok", "store": "ok"}));

    let mut seen = vec![("/metrics".to_owned(), metrics)];
    for path in [
        "/openapi.json".to_owned(),
        "/".to_owned(),
        "/no-such-route".to_owned(),
        "/v1/streams".to_owned(),
        "/dashboard".to_owned(),
        format!("/v1/streams/{SECRET_STREAM}"),
        format!("/v1/streams/{gen}"),
        "/v1/streams/_dashboard".to_owned(),
    ] {
        let (_, body) = text(&s.url(&path)).await;
        seen.push((path, body));
    }
    for (path, body) in &seen {
        for secret in secrets {
            assert!(!body.contains(secret), "{path} names {secret}: {body}");
        }
    }
    // Stream routes stay closed to anonymous clients.
    for path in ["/v1/streams", "/dashboard", "/v1/streams/_dashboard"] {
        assert_eq!(get(&s.url(path), &[]).await.status(), 401, "{path}");
    }
}

#[tokio::test]
async fn a_bare_star_does_not_reach_rill_or_generation_streams() {
    let s = auth_server(&[]);
    let (_sub, gen) = traffic(&s).await;
    let star = hs256(grant(&["*"], &["*"], 300));
    let bearer = format!("Bearer {star}");
    let dash = SseClient::open(
        &s.url("/v1/streams/_dashboard"),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(dash.status, 403);
    let res = get(&s.url("/v1/streams"), &[("authorization", &bearer)]).await;
    assert_eq!(res.status(), 200);
    let listed = res.text().await.unwrap();
    assert!(listed.contains(SECRET_STREAM), "{listed}");
    assert!(!listed.contains(&gen), "{listed}");
    // A pattern that names the reserved prefix reaches them.
    let own = hs256(grant(&[], &["_*", "gen-*"], 300));
    let bearer = format!("Bearer {own}");
    let dash = SseClient::open(
        &s.url("/v1/streams/_dashboard"),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(dash.status, 200);
    let res = get(&s.url("/v1/streams"), &[("authorization", &bearer)]).await;
    assert!(res.text().await.unwrap().contains(&gen));
}

#[tokio::test]
async fn a_token_without_sub_cannot_start_a_generation() {
    let s = auth_server(&[]);
    let no_sub = hs256(json!({"exp": now() + 300, "rill": {"generate": true}}));
    let res = post(
        &s.url("/v1/generations"),
        Some(&no_sub),
        json!({"prompt": "hi"}),
    )
    .await;
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "forbidden");
    assert!(
        body["message"].as_str().unwrap().contains("`sub`"),
        "{body}"
    );
}

#[tokio::test]
async fn the_admin_listener_serves_operators_and_the_public_one_does_not() {
    let s = auth_server(&["--admin-listen", "127.0.0.1:0"]);
    let admin = admin_base(&s).await;
    assert_ne!(admin, s.base);
    // The public address is the one tests and scripts read first.
    assert_eq!(get(&s.url("/v1/streams"), &[]).await.status(), 401);
    let (_sub, gen) = traffic(&s).await;

    for path in ["/metrics", "/dashboard"] {
        assert_eq!(get(&s.url(path), &[]).await.status(), 404, "{path}");
        let t = hs256(grant(&["*"], &["*", "_*"], 300));
        let res = get(&s.url(path), &[("authorization", &format!("Bearer {t}"))]).await;
        assert_eq!(res.status(), 404, "{path} with a token");
    }
    let (_, doc) = text(&s.url("/openapi.json")).await;
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert!(
        doc["paths"]["/metrics"].is_null(),
        "public /openapi.json lists /metrics"
    );
    assert!(doc["paths"]["/v1/streams/{name}"].is_object());

    // Per-stream series, health and the dashboard, without a token.
    let (status, metrics) = text(&format!("{admin}/metrics")).await;
    assert_eq!(status, 200);
    let series = format!("rill_stream_subscribers{{stream=\"{SECRET_STREAM}\"}}");
    assert_eq!(sample(&metrics, &series), Some(1.0), "{metrics}");
    assert_eq!(
        serde_json::from_str::<Value>(&text(&format!("{admin}/healthz")).await.1).unwrap(),
        json!({"status": "ok", "store": "ok"})
    );
    let (status, page) = text(&format!("{admin}/dashboard")).await;
    assert_eq!(status, 200);
    assert!(page.contains("/v1/streams/_dashboard"));
    let mut dash = SseClient::open(&format!("{admin}/v1/streams/_dashboard"), &[]).await;
    assert_eq!(dash.status, 200);
    let snapshot = dash.next_event(WAIT).await.expect("a dashboard snapshot");
    let snapshot: Value = serde_json::from_str(&snapshot.data).unwrap();
    assert!(snapshot["subscribers"].as_u64().unwrap() >= 2, "{snapshot}");

    // Only the dashboard's stream: no other stream is readable there.
    for path in [
        format!("/v1/streams/{SECRET_STREAM}"),
        format!("/v1/streams/{gen}"),
        "/v1/streams".to_owned(),
    ] {
        let res = get(
            &format!("{admin}{path}"),
            &[("accept", "text/event-stream")],
        )
        .await;
        assert_eq!(res.status(), 404, "admin {path}");
    }
    let res = reqwest::Client::new()
        .post(format!("{admin}/v1/streams/_dashboard"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
}

#[tokio::test]
async fn with_auth_off_the_admin_listener_still_takes_metrics_and_dashboard() {
    let s = TestServer::start(&["--admin-listen", "127.0.0.1:0"]);
    let admin = admin_base(&s).await;
    for path in ["/metrics", "/dashboard"] {
        assert_eq!(get(&s.url(path), &[]).await.status(), 404, "{path}");
        assert_eq!(
            get(&format!("{admin}{path}"), &[]).await.status(),
            200,
            "admin {path}"
        );
    }
    // Everything else on the public listener is as without the flag.
    let _sub = SseClient::open(&s.url("/v1/streams/open-room"), &[]).await;
    let (status, _) = text(&s.url("/healthz")).await;
    assert_eq!(status, 200);
    let (_, metrics) = text(&format!("{admin}/metrics")).await;
    assert!(
        metrics.contains("rill_stream_subscribers{stream=\"open-room\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn with_auth_off_public_metrics_keep_per_stream_series() {
    let s = TestServer::start(&[]);
    let _sub = SseClient::open(&s.url("/v1/streams/open-room"), &[]).await;
    let (status, metrics) = text(&s.url("/metrics")).await;
    assert_eq!(status, 200);
    assert_eq!(
        sample(&metrics, "rill_stream_subscribers{stream=\"open-room\"}"),
        Some(1.0),
        "{metrics}"
    );
}
