//! With auth on, the commands carry `--token` / `RILL_TOKEN`, and without
//! one they say what the `401` means and what to pass.

use serde_json::json;

use super::common::jwt::{self, grant, hs256};
use super::{command, rill, run};

#[tokio::test]
async fn publish_and_tail_carry_the_token() {
    let server = jwt::server();
    let token = hs256(grant(&["cli"], &["cli"], 300));
    let published = rill(&["publish", &server.base, "cli", "hello", "--token", &token]).await;
    assert_eq!(published.code, Some(0), "{published:?}");
    assert!(published.stdout.trim().ends_with(".1"), "{published:?}");
    // The token from the environment, as a script would set it.
    let mut tail = command(&["tail", &server.base, "cli", "--from", "0", "--count", "1"]);
    tail.env("RILL_TOKEN", &token);
    let tailed = run(tail).await;
    assert_eq!(
        (tailed.code, tailed.stdout.as_str()),
        (Some(0), "hello\n"),
        "{tailed:?}"
    );
}

#[tokio::test]
async fn without_a_token_the_commands_say_to_pass_one() {
    let server = jwt::server();
    let base = server.base.as_str();
    for args in [
        vec!["publish", base, "cli", "hello"],
        vec!["tail", base, "cli", "--from", "0"],
        vec!["generate", base, "Tell me about the planets"],
    ] {
        let r = rill(&args).await;
        assert_ne!(r.code, Some(0), "{args:?}: {r:?}");
        assert!(r.stderr.contains("401"), "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("--token") && r.stderr.contains("RILL_TOKEN"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(r.stdout.is_empty(), "{args:?}: {r:?}");
    }
}

#[tokio::test]
async fn a_refused_token_is_called_refused() {
    let server = jwt::server();
    let expired = hs256(json!({"exp": jwt::now() - 600, "rill": {"publish": ["*"]}}));
    let r = rill(&["publish", &server.base, "cli", "x", "--token", &expired]).await;
    assert_ne!(r.code, Some(0), "{r:?}");
    assert!(
        r.stderr.contains("401") && r.stderr.contains("token was refused"),
        "{}",
        r.stderr
    );
}

#[tokio::test]
async fn generate_carries_the_token() {
    let server = jwt::server();
    let token = hs256(json!({"sub": "cli", "exp": jwt::now() + 300, "rill": {"generate": true}}));
    let mut cmd = command(&["generate", &server.base, "hello"]);
    cmd.env("RILL_TOKEN", &token);
    let r = run(cmd).await;
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.starts_with("You asked: \"hello\"."), "{r:?}");
}
