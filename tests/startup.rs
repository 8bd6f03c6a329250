//! What a user sees when start-up goes wrong, or is given an address in a
//! form other servers accept: `--listen` forms, a port in use, and a bad
//! `RILL_*` value reported under the variable's name.

mod common;

use std::process::{Command, Output, Stdio};

use common::TestServer;

/// Runs `rill args` with `env` to the end (these runs fail at start-up).
fn rill(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rill"));
    cmd.args(args)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn rill");
    // Start-up errors come at once; a server that starts instead is a
    // failure of the test, not a hang.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bad_environment_value_is_reported_under_the_variable() {
    let cases = [
        ("RILL_MOCK_DELAY_MS", "abc", "invalid digit"),
        (
            "RILL_BACKEND",
            "gpt",
            "possible values: mock, ollama, openai",
        ),
        ("RILL_LISTEN", "nowhere:80", "localhost:PORT"),
        ("RILL_REDIS_READERS", "99", "1..=64"),
        ("RILL_GENERATION_GRACE", "soon", "never"),
    ];
    for (var, value, reason) in cases {
        let args: &[&str] = match var {
            "RILL_LISTEN" => &["serve"],
            _ => &["serve", "--listen", "127.0.0.1:0"],
        };
        let out = rill(args, &[(var, value)]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{var}: {err}");
        assert!(
            err.contains(&format!("'{value}' in the environment variable {var}")),
            "{var}: {err}"
        );
        assert!(err.contains(reason), "{var}: {err}");
    }
    // `rill config` reads the same variables.
    let out = rill(&["config"], &[("RILL_RETRY_MS", "-1")]);
    assert!(stderr(&out).contains("environment variable RILL_RETRY_MS"));
}

#[test]
fn a_bad_flag_is_still_reported_under_the_flag() {
    let out = rill(
        &["serve", "--mock-delay-ms", "abc"],
        &[("RILL_MOCK_DELAY_MS", "xyz")],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("'abc' for '--mock-delay-ms"), "{err}");
    assert!(!err.contains("RILL_MOCK_DELAY_MS"), "{err}");
}

#[tokio::test]
async fn a_flag_overrides_a_bad_variable_and_client_commands_ignore_serve_ones() {
    let server = TestServer::start_exact(
        &["serve", "--listen", "127.0.0.1:0"],
        &[("RILL_LISTEN", "nowhere:80")],
    );
    let base = server.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        rill(
            &["publish", &base, "news", "hello"],
            &[("RILL_MOCK_DELAY_MS", "abc"), ("RILL_LISTEN", "nowhere:80")],
        )
    })
    .await
    .expect("join");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).trim().ends_with(".1"));
}

#[test]
fn listen_takes_localhost_and_a_bare_port() {
    let server = TestServer::start_exact(&["serve", "--listen", "localhost:0"], &[]);
    assert!(
        server.base.starts_with("http://127.0.0.1:"),
        "{}",
        server.base
    );
    // Printed as resolved, without binding every interface in a test.
    let out = rill(&["config", "--listen", ":8080"], &[]);
    let toml = String::from_utf8_lossy(&out.stdout);
    assert!(toml.contains("listen = \"0.0.0.0:8080\""), "{toml}");
    let out = rill(&["config", "--listen", "[::1]:8080"], &[]);
    let toml = String::from_utf8_lossy(&out.stdout);
    assert!(toml.contains("listen = \"[::1]:8080\""), "{toml}");
    let out = rill(&["config", "--listen", "example.com:8080"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("127.0.0.1:8080") && err.contains(":PORT for all interfaces"),
        "the accepted forms are shown: {err}"
    );
}

#[test]
fn a_config_file_takes_the_same_listen_forms() {
    let path = std::env::temp_dir().join(format!("rill-startup-{}.toml", std::process::id()));
    std::fs::write(&path, "listen = \"localhost:9090\"\n").expect("write config");
    let out = rill(
        &["config", "--config", path.to_str().expect("utf-8 path")],
        &[],
    );
    let _ = std::fs::remove_file(&path);
    let toml = String::from_utf8_lossy(&out.stdout);
    assert!(
        toml.contains("listen = \"127.0.0.1:9090\""),
        "{toml}{}",
        stderr(&out)
    );
}

#[test]
fn a_port_in_use_says_what_to_do() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().expect("addr").port();
    let addr = format!("127.0.0.1:{port}");
    let out = rill(&["serve", "--listen", &addr], &[]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "cannot listen on {addr}: address already in use — another process \
             (perhaps another rill) holds this port"
        )),
        "{err}"
    );
    let next = format!(
        "--listen 127.0.0.1:{} (or RILL_LISTEN)",
        port.wrapping_add(1)
    );
    assert!(err.contains(&next), "{err}");
    drop(holder);
}
