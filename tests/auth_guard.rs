//! The auth guard in front of stub handlers: which requests reach a
//! handler, and what they carry there: the `Grant`, plus `OwnerOnly` when
//! only the generation's owner may go on, which the real handler checks.
//! No network and no real handlers: the guard's decisions are the subject.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use common::jwt::{hs256, now, SECRET};
use rill::auth::csrf::AllowedOrigins;
use rill::auth::{Grant, KeySource, Verifier};
use rill::http::auth::{guard, Guard, OwnerOnly};
use serde_json::{json, Value};
use tower::ServiceExt;

/// What a request brought to the handler, in headers (a `HEAD` answer
/// has no body).
async fn reached(req: Request) -> [(&'static str, String); 2] {
    let has = |found: bool| found.to_string();
    [
        ("x-grant", has(req.extensions().get::<Grant>().is_some())),
        (
            "x-owner-only",
            has(req.extensions().get::<OwnerOnly>().is_some()),
        ),
    ]
}

fn app() -> Router {
    let guard_state = Guard {
        verifier: Verifier::new(&KeySource::Secret(SECRET.into()), None).unwrap(),
        query_token_max: Duration::from_secs(300),
        retry_ms: 1000,
        origins: AllowedOrigins::new(&["https://app.example".into()]),
    };
    Router::new()
        .route(
            "/v1/streams/{name}",
            get(reached).post(reached).delete(reached),
        )
        .route("/v1/generations", post(reached))
        .route("/v1/generations/{id}/cancel", post(reached))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::new(guard_state),
            guard,
        ))
}

/// Claims with `sub` (when given) and `rill`.
fn token(sub: Option<&str>, rill: Value) -> String {
    let mut claims = json!({"exp": now() + 300, "rill": rill});
    if let Some(s) = sub {
        claims["sub"] = s.into();
    }
    hs256(claims)
}

/// The guard's answer: `Ok(owner_only)` when the handler was reached,
/// else the status and the body.
async fn ask(method: Method, path: &str, token: Option<&str>) -> Result<bool, (u16, Value)> {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = app()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    if status == StatusCode::OK {
        let header = |name| res.headers().get(name).and_then(|v| v.to_str().ok());
        assert_eq!(
            header("x-grant"),
            Some("true"),
            "{path}: the grant reaches the handler"
        );
        return Ok(header("x-owner-only") == Some("true"));
    }
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    Err((
        status.as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

#[tokio::test]
async fn generation_streams_pass_to_the_handler_for_an_owner_check() {
    let (get, head, post, delete) = (Method::GET, Method::HEAD, Method::POST, Method::DELETE);
    let gen_star = token(
        Some("u"),
        json!({"subscribe": ["gen-*"], "publish": ["gen-1"]}),
    );
    let star = token(Some("u"), json!({"subscribe": ["*"], "publish": ["*"]}));
    let star_no_sub = token(None, json!({"subscribe": ["*"], "publish": ["*"]}));
    let s = "/v1/streams/gen-1";
    // Covered by a pattern: granted outright.
    assert_eq!(ask(get.clone(), s, Some(&gen_star)).await, Ok(false));
    assert_eq!(ask(delete.clone(), s, Some(&gen_star)).await, Ok(false));
    // Not covered, but a `sub` that may own it: the handler decides.
    assert_eq!(ask(get.clone(), s, Some(&star)).await, Ok(true));
    assert_eq!(ask(head, s, Some(&star)).await, Ok(true));
    assert_eq!(ask(delete.clone(), s, Some(&star)).await, Ok(true));
    // Nobody owns anything without a `sub`, or without a token.
    assert_eq!(
        ask(get.clone(), s, Some(&star_no_sub)).await.unwrap_err().0,
        403
    );
    assert_eq!(ask(delete, s, Some(&star_no_sub)).await.unwrap_err().0, 403);
    assert_eq!(ask(get.clone(), s, None).await.unwrap_err().0, 401);
    // Publishing is never an owner's: generations write their own streams.
    assert_eq!(ask(post, s, Some(&star)).await.unwrap_err().0, 403);
    // Other streams get no such pass: a pattern or 403.
    assert_eq!(
        ask(get.clone(), "/v1/streams/chat", Some(&star)).await,
        Ok(false)
    );
    let news = token(Some("u"), json!({"subscribe": ["news"]}));
    assert_eq!(
        ask(get.clone(), "/v1/streams/chat", Some(&news))
            .await
            .unwrap_err()
            .0,
        403
    );
    assert_eq!(
        ask(get.clone(), "/v1/streams/_dashboard", Some(&star))
            .await
            .unwrap_err()
            .0,
        403
    );
    let own = token(None, json!({"subscribe": ["_*"]}));
    assert_eq!(
        ask(get, "/v1/streams/_dashboard", Some(&own)).await,
        Ok(false)
    );
}

#[tokio::test]
async fn cancelling_needs_generate_or_ownership() {
    let cancel = "/v1/generations/1f2e/cancel";
    let generate = token(Some("u"), json!({"generate": true}));
    let reader = token(Some("u"), json!({"subscribe": ["chat"]}));
    let anonymous_reader = token(None, json!({"subscribe": ["chat"]}));
    assert_eq!(ask(Method::POST, cancel, Some(&generate)).await, Ok(false));
    assert_eq!(ask(Method::POST, cancel, Some(&reader)).await, Ok(true));
    assert_eq!(
        ask(Method::POST, cancel, Some(&anonymous_reader))
            .await
            .unwrap_err()
            .0,
        403
    );
    assert_eq!(ask(Method::POST, cancel, None).await.unwrap_err().0, 401);
}

#[tokio::test]
async fn starting_a_generation_needs_generate_and_a_sub() {
    let start = "/v1/generations";
    let with_sub = token(Some("u"), json!({"generate": true}));
    assert_eq!(ask(Method::POST, start, Some(&with_sub)).await, Ok(false));
    let (status, body) = ask(
        Method::POST,
        start,
        Some(&token(None, json!({"generate": true}))),
    )
    .await
    .unwrap_err();
    assert_eq!(status, 403);
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("belongs to the `sub` that starts it"),
        "{message}"
    );
    let no_right = token(Some("u"), json!({"publish": ["*"]}));
    assert_eq!(
        ask(Method::POST, start, Some(&no_right))
            .await
            .unwrap_err()
            .0,
        403
    );
}
