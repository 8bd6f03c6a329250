//! Bad tokens and key types over real HTTP: wrong secret, wrong or `none`
//! algorithm, algorithm confusion, missing `exp`, absurd times, bad claims
//! and garbage are all `401`; RS256 and ES256 tokens verify against public
//! keys.

mod common;

use std::time::Duration;

use common::jwt::{get, grant, hs256, key_path, now, post, server, SECRET};
use common::{SseClient, TestServer};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

#[tokio::test]
async fn bad_tokens_are_refused_with_401() {
    let s = server();
    let wrong_secret = encode(
        &Header::new(Algorithm::HS256),
        &grant(&["*"], &["*"], 300),
        &EncodingKey::from_secret(b"another-secret-0123456789abcdef!!"),
    )
    .unwrap();
    let hs384 = encode(
        &Header::new(Algorithm::HS384),
        &grant(&["*"], &["*"], 300),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    // An unsigned token: header {"alg":"none"}.
    let none = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        base64url(&serde_json::to_vec(&grant(&["*"], &["*"], 300)).unwrap())
    );
    let expired = hs256(grant(&["*"], &["*"], 0));
    let no_exp = hs256(json!({"rill": {"publish": ["*"]}}));
    let bad_claim = hs256(json!({"exp": now() + 300, "rill": {"publish": ["no spaces"]}}));
    for t in [
        wrong_secret,
        hs384,
        none,
        expired,
        no_exp,
        bad_claim,
        "garbage".into(),
        "a.b.c".into(),
    ] {
        let res = post(&s.url("/v1/streams/x"), Some(&t), json!({"data": "x"})).await;
        assert_eq!(res.status(), 401, "{t}");
        assert!(res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token"));
    }
    let res = get(
        &s.url("/v1/streams"),
        &[("authorization", "Basic dXNlcjpwYXNz")],
    )
    .await;
    assert_eq!(res.status(), 401);
}

/// Times that overflow `SystemTime` or `Instant` arithmetic, or are too far
/// ahead to be meant, must be a plain `401`, never a panic in the request.
#[tokio::test]
async fn absurd_times_are_refused_and_the_server_keeps_serving() {
    let s = server();
    let twenty_years = 20 * 365 * 24 * 3600;
    let rill = json!({"subscribe": ["*"]});
    let cases = [
        (
            "exp 2^63",
            json!({"sub": "t", "exp": 1u64 << 63, "rill": rill}),
        ),
        (
            "exp u64::MAX",
            json!({"sub": "t", "exp": u64::MAX, "rill": rill}),
        ),
        (
            "exp now + 20 years",
            json!({"sub": "t", "exp": now() + twenty_years, "rill": rill}),
        ),
        (
            "nbf u64::MAX",
            json!({"sub": "t", "exp": now() + 300, "nbf": u64::MAX, "rill": rill}),
        ),
        (
            "nbf not a number",
            json!({"sub": "t", "exp": now() + 300, "nbf": "soon", "rill": rill}),
        ),
    ];
    for (what, claims) in cases {
        let bearer = format!("Bearer {}", hs256(claims));
        let res = reqwest::Client::new()
            .get(s.url("/v1/streams/clock"))
            .header("accept", "text/event-stream")
            .header("authorization", &bearer)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: no answer (did the request panic?): {e}"));
        assert_eq!(res.status(), 401, "{what}");
        assert!(
            res.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token"),
            "{what}"
        );
    }
    // Still serving: a sound token streams, and health is fine.
    let good = hs256(grant(&["clock"], &["clock"], 300));
    let mut sub = SseClient::open(
        &s.url("/v1/streams/clock"),
        &[("authorization", &format!("Bearer {good}"))],
    )
    .await;
    assert_eq!(sub.status, 200);
    let res = post(
        &s.url("/v1/streams/clock"),
        Some(&good),
        json!({"data": "t"}),
    )
    .await;
    assert_eq!(res.status(), 201);
    assert_eq!(
        sub.next_event(Duration::from_secs(5)).await.unwrap().data,
        "t"
    );
    assert_eq!(get(&s.url("/healthz"), &[]).await.status(), 200);
    let log = s.log.lock().unwrap().join("\n");
    assert!(!log.contains("panicked"), "{log}");
}

fn base64url(bytes: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, &b| (acc << 8) | b as u32) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

async fn asymmetric(alg: Algorithm, flag: &str, public: &str, private: &str) {
    let s = TestServer::start(&[
        "--auth-jwt-public-key",
        &key_path(public),
        "--auth-jwt-alg",
        flag,
    ]);
    let pem = std::fs::read(key_path(private)).unwrap();
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
        _ => EncodingKey::from_ec_pem(&pem).unwrap(),
    };
    let good = encode(&Header::new(alg), &grant(&["k"], &[], 300), &key).unwrap();
    let res = post(
        &s.url("/v1/streams/k"),
        Some(&good),
        json!({"data": "signed"}),
    )
    .await;
    assert_eq!(res.status(), 201, "{flag}");
    // An HS256 token "signed" with the public key must not pass.
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &grant(&["k"], &[], 300),
        &EncodingKey::from_secret(&std::fs::read(key_path(public)).unwrap()),
    )
    .unwrap();
    let res = post(
        &s.url("/v1/streams/k"),
        Some(&confused),
        json!({"data": "x"}),
    )
    .await;
    assert_eq!(res.status(), 401, "{flag} alg confusion");
    let other = hs256(grant(&["k"], &[], 300));
    let res = post(&s.url("/v1/streams/k"), Some(&other), json!({"data": "x"})).await;
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn rs256_tokens_from_a_public_key() {
    asymmetric(
        Algorithm::RS256,
        "RS256",
        "test-only-jwt-rs256-public.pem",
        "test-only-jwt-rs256-private.pem",
    )
    .await;
}

#[tokio::test]
async fn es256_tokens_from_a_public_key() {
    asymmetric(
        Algorithm::ES256,
        "ES256",
        "test-only-jwt-es256-public.pem",
        "test-only-jwt-es256-private.pem",
    )
    .await;
}

#[test]
fn auth_settings_that_cannot_work_stop_start_up() {
    let rs_public = key_path("test-only-jwt-rs256-public.pem");
    let cases: [(&[&str], &str); 5] = [
        (&["--auth-jwt-secret", "short"], "at least 32 bytes"),
        (
            &["--auth-jwt-public-key", &rs_public],
            "--auth-jwt-alg RS256 or ES256",
        ),
        (
            &[
                "--auth-jwt-public-key",
                &rs_public,
                "--auth-jwt-alg",
                "ES256",
            ],
            "test-only-jwt-rs256-public.pem",
        ),
        (
            &["--auth-jwt-alg", "RS256"],
            "needs --auth-jwt-secret or --auth-jwt-public-key",
        ),
        (
            &["--cors-origin", "*", "--cors-origin", "https://a.example"],
            "cannot be mixed",
        ),
    ];
    for (args, message) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rill"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .expect("run rill");
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}
