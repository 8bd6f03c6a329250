//! The client commands (`rill publish`, `rill tail`, `rill generate`) run as
//! a user runs them: the real binary, against a real server on a loopback
//! port (or a canned one where a server cannot be made to misbehave).

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod fake_sse;
mod generate;
mod tail;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a command may take before the test calls it hung.
pub const WAIT: Duration = Duration::from_secs(20);

/// What a finished command left behind.
#[derive(Debug)]
pub struct Run {
    /// Its exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// `rill` with `args`, no `RILL_*` variables from the test's environment.
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rill"));
    cmd.args(args)
        .env_remove("RILL_TOKEN")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `cmd` to the end (killed and failed after [`WAIT`]).
pub async fn run(mut cmd: Command) -> Run {
    let child = cmd.spawn().expect("spawn rill");
    tokio::task::spawn_blocking(move || finish(child))
        .await
        .expect("join")
}

/// `rill args`, run to the end.
pub async fn rill(args: &[&str]) -> Run {
    run(command(args)).await
}

/// Waits for `child`, reading its output; kills it after [`WAIT`].
pub fn finish(mut child: Child) -> Run {
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = child.stdout.take().map(|o| read(Box::new(o)));
    let err = child.stderr.take().map(|e| read(Box::new(e)));
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let text = |h: Option<std::thread::JoinHandle<String>>| {
        h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    };
    let run = Run {
        code: status.and_then(|s| s.code()),
        stdout: text(out),
        stderr: text(err),
    };
    assert!(
        status.is_some(),
        "rill did not finish within {WAIT:?}: {run:?}"
    );
    run
}

/// The mock model's recorded answer to "Tell me about the planets": every
/// `response` of the seed recording, in order.
pub fn seed_answer() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/llama3.1-planets.ndjson");
    std::fs::read_to_string(path)
        .expect("seed recording")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("ndjson line");
            v["response"].as_str().expect("response").to_owned()
        })
        .collect()
}
