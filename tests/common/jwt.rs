//! Tokens for auth tests: an HS256 secret, claims builders, and requests
//! that carry a bearer token.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::TestServer;

/// The HS256 secret test servers are started with.
pub const SECRET: &str = "test-only-secret-0123456789abcdef";

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `claims` signed with [`SECRET`].
pub fn hs256(claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// Claims granting `publish` and `subscribe` patterns for `ttl` seconds.
pub fn grant(publish: &[&str], subscribe: &[&str], ttl: u64) -> Value {
    json!({"sub": "tester", "exp": now() + ttl, "rill": {"publish": publish, "subscribe": subscribe}})
}

/// rill with auth on ([`SECRET`]) and a fast mock model.
pub fn server() -> TestServer {
    TestServer::start(&["--auth-jwt-secret", SECRET, "--mock-delay-ms", "1"])
}

/// POSTs JSON `body`, with `token` as a bearer token if given.
pub async fn post(url: &str, token: Option<&str>, body: Value) -> reqwest::Response {
    let mut req = reqwest::Client::new().post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

/// GETs `url` with `headers`.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// A file under `tests/data`.
pub fn key_path(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}
