//! The deployment examples in `deploy/` work as shipped: the systemd unit
//! verifies and its command line starts rill with the example settings, and
//! nginx with the example proxy config passes events through unbuffered.
mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::nginx::Nginx;
use common::{publish, SseClient, TestServer};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn temp_dir(tag: &str) -> PathBuf {
    let n: u64 = rand::random();
    let dir = std::env::temp_dir().join(format!("rill-{tag}-{n:x}"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The example settings with the address swapped for a free port.
fn example_config(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo("deploy/rill.toml")).expect("deploy/rill.toml");
    assert!(text.contains("listen = \"127.0.0.1:8080\""));
    let path = dir.join("rill.toml");
    std::fs::write(&path, text.replace("127.0.0.1:8080", "127.0.0.1:0")).expect("write");
    path
}

#[test]
fn example_config_is_accepted_by_rill_config() {
    let out = Command::new(env!("CARGO_BIN_EXE_rill"))
        .args(["config", "--config"])
        .arg(repo("deploy/rill.toml"))
        .env_remove("RILL_LOG_FORMAT")
        .output()
        .expect("run rill config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("log-format = \"json\""), "{printed}");
    assert!(printed.contains("keepalive-secs = 15"), "{printed}");
}

#[test]
fn systemd_unit_verifies_and_its_command_starts_rill() {
    let unit = std::fs::read_to_string(repo("deploy/rill.service")).expect("deploy/rill.service");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart line");
    let dir = temp_dir("systemd");
    let config = example_config(&dir);
    let bin = env!("CARGO_BIN_EXE_rill");
    let command = exec
        .replace("/usr/local/bin/rill", bin)
        .replace("/etc/rill/rill.toml", config.to_str().expect("utf-8 path"));
    let local = dir.join("rill.service");
    std::fs::write(&local, unit.replace(exec, &command)).expect("write unit");
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&local)
        .output()
        .expect("systemd-analyze must be installed (scripts/test installs systemd)");
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    // Run the unit's own command line and see it serve.
    let mut words = command.split_whitespace();
    let mut child = Command::new(words.next().expect("program"))
        .args(words)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start ExecStart");
    let stderr = child.stderr.take().expect("stderr");
    let listening = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .take(50)
        .find(|l| l.contains("listening on http://"));
    let _ = child.kill();
    let _ = child.wait();
    let line = listening.expect("rill started by the unit's command line");
    // The example config asks for JSON logs.
    assert!(line.trim_start().starts_with('{'), "{line}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn nginx_example_config_passes_events_through_without_buffering() {
    let server = TestServer::start(&[]);
    let upstream = server.base.trim_start_matches("http://").to_owned();
    let nginx = Nginx::start(&upstream, |site| site).await;
    let proxied = nginx.base.clone();
    let mut sub = SseClient::open(&format!("{proxied}/v1/streams/via-nginx"), &[]).await;
    assert_eq!(sub.status, 200);
    assert_eq!(
        sub.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream; charset=utf-8")
    );
    // Each event must come through on its own, before the next is published:
    // a buffering proxy would hold small events back.
    for i in 0..5 {
        let data = format!("event {i}");
        let id = publish(&server.base, "via-nginx", &data, None).await;
        let got = sub
            .next_event(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("event {i} did not come through nginx"));
        assert_eq!(got.data, data);
        assert_eq!(got.last_event_id, id);
    }
}
