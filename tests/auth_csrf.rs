//! Cross-site request forgery: a browser attaches the `rill_token` cookie to
//! requests any site makes, so a token from the cookie may change something
//! (`POST`, `DELETE`) only in a JSON request whose `Origin` is allowed. A
//! bearer or `?access_token=` token is never attached by a browser on its
//! own, so it is not affected.

mod common;

use common::jwt::{grant, hs256, SECRET};
use common::TestServer;
use serde_json::Value;

const APP: &str = "https://app.example";

fn server() -> TestServer {
    TestServer::start(&["--auth-jwt-secret", SECRET, "--cors-origin", APP])
}

/// Sends `method` to `url` with the `rill_token` cookie (when `cookie`) or a
/// bearer token, the given content type and `Origin`; returns the status
/// and the body as JSON (`Null` when it is not JSON).
async fn send(
    method: reqwest::Method,
    url: &str,
    token: &str,
    cookie: bool,
    content_type: Option<&str>,
    origin: Option<&str>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, url);
    req = if cookie {
        req.header("cookie", format!("rill_token={token}"))
    } else {
        req.bearer_auth(token)
    };
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    let body = match content_type {
        Some(ct) if ct.contains("json") => r#"{"data": "x"}"#,
        _ => "x",
    };
    let res = req.body(body).send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn assert_csrf(status: u16, body: &Value, what: &str) {
    assert_eq!(status, 403, "{what}: {body}");
    assert_eq!(body["error"], "csrf", "{what}: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Authorization: Bearer"),
        "{what}: {message}"
    );
}

#[tokio::test]
async fn a_cookie_token_publishes_only_in_json_from_an_allowed_origin() {
    let s = server();
    let t = hs256(grant(&["room"], &["room"], 300));
    let url = s.url("/v1/streams/room");
    let same_origin = s.base.clone();
    let post = reqwest::Method::POST;
    let json = Some("application/json");

    // What a cross-site form or `fetch` without a preflight can send.
    let (status, body) = send(post.clone(), &url, &t, true, Some("text/plain"), None).await;
    assert_csrf(status, &body, "text/plain, no Origin");
    let (status, body) = send(
        post.clone(),
        &url,
        &t,
        true,
        Some("text/plain"),
        Some(&same_origin),
    )
    .await;
    assert_csrf(status, &body, "text/plain, same origin");
    let (status, body) = send(
        post.clone(),
        &url,
        &t,
        true,
        Some("application/x-www-form-urlencoded"),
        Some(APP),
    )
    .await;
    assert_csrf(status, &body, "form, allowed origin");
    // JSON, but from a site that is not allowed, or from nowhere said.
    let (status, body) = send(
        post.clone(),
        &url,
        &t,
        true,
        json,
        Some("https://evil.example"),
    )
    .await;
    assert_csrf(status, &body, "JSON, foreign origin");
    let (status, body) = send(post.clone(), &url, &t, true, json, Some("null")).await;
    assert_csrf(status, &body, "JSON, opaque origin");
    let (status, body) = send(post.clone(), &url, &t, true, json, None).await;
    assert_csrf(status, &body, "JSON, no Origin");

    // JSON from a --cors-origin, or from the page rill itself serves.
    let (status, body) = send(post.clone(), &url, &t, true, json, Some(APP)).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = send(
        post.clone(),
        &url,
        &t,
        true,
        Some("application/merge-patch+json; charset=utf-8"),
        Some(&same_origin),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn bearer_and_query_tokens_are_not_affected() {
    let s = server();
    let t = hs256(grant(&["room"], &[], 300));
    let url = s.url("/v1/streams/room");
    let (status, body) = send(
        reqwest::Method::POST,
        &url,
        &t,
        false,
        Some("text/plain"),
        Some("https://evil.example"),
    )
    .await;
    assert_eq!(status, 201, "bearer + text/plain: {body}");
    let short = hs256(grant(&["room"], &[], 60));
    let res = reqwest::Client::new()
        .post(format!("{url}?access_token={short}"))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "query token + text/plain");
}

#[tokio::test]
async fn a_cookie_token_deletes_only_from_an_allowed_origin_and_reads_from_anywhere() {
    let s = server();
    let t = hs256(grant(&["room"], &["room"], 300));
    let url = s.url("/v1/streams/room");
    let (status, _) = send(
        reqwest::Method::POST,
        &url,
        &t,
        false,
        Some("text/plain"),
        None,
    )
    .await;
    assert_eq!(status, 201);
    // An event stream is a read: the cookie works from any page.
    let res = reqwest::Client::new()
        .get(format!("{url}?lastEventId=0"))
        .header("accept", "text/event-stream")
        .header("cookie", format!("rill_token={t}"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    drop(res);
    let (status, body) = send(
        reqwest::Method::DELETE,
        &url,
        &t,
        true,
        None,
        Some("https://evil.example"),
    )
    .await;
    assert_csrf(status, &body, "DELETE, foreign origin");
    let (status, body) = send(
        reqwest::Method::DELETE,
        &url,
        &t,
        true,
        Some("application/json"),
        Some(APP),
    )
    .await;
    assert_eq!(status, 204, "{body}");
}
