//! Shared test support: start the real `rill` binary on port 0 and read its
//! event streams the way a browser does.
#![allow(dead_code)]

pub mod fake_model;
pub mod jwt;
pub mod nginx;
pub mod openai;
pub mod secure;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub mod cluster;
pub mod topology;

use futures_util::StreamExt;
use rill::sse::{ParsedEvent, Parser};

/// A running `rill serve`, killed on drop.
pub struct TestServer {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Lines the server logged after start-up.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl TestServer {
    /// Starts rill with `args` on a free port and waits until it listens.
    pub fn start(args: &[&str]) -> TestServer {
        Self::start_with_env(args, &[])
    }

    /// Like [`TestServer::start`], with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> TestServer {
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Self::start_exact(&all, env)
    }

    /// Runs the binary with exactly `args` (no `serve`, no `--listen`) and
    /// waits until it logs where it listens.
    pub fn start_exact(args: &[&str], env: &[(&str, &str)]) -> TestServer {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rill"));
        cmd.args(args)
            .env("RILL_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn rill");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("rill exited before listening")
                .expect("read stderr");
            if let Some(i) = line.find("listening on http") {
                break line[i + "listening on ".len()..].trim().to_owned();
            }
        };
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        TestServer { child, base, log }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident set size in KiB, from `/proc/<pid>/status`.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc status")
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends SIGTERM and waits for the exit status, up to `limit`.
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An open event stream, parsed by rill's WHATWG parser (checked against the
/// shared conformance vectors in its unit tests).
pub struct SseClient {
    /// The response status.
    pub status: u16,
    /// The response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The HTTP version the response came over.
    pub version: reqwest::Version,
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    parser: Parser,
    /// Every byte received, for framing checks.
    pub raw: Vec<u8>,
    /// Whether the server closed the body.
    pub closed: bool,
}

impl SseClient {
    /// Opens `url` with `Accept: text/event-stream` and `headers`.
    pub async fn open(url: &str, headers: &[(&str, &str)]) -> SseClient {
        Self::open_with(&reqwest::Client::new(), url, headers).await
    }

    /// Like [`SseClient::open`], over `client` (for HTTP/2 and TLS tests).
    pub async fn open_with(
        client: &reqwest::Client,
        url: &str,
        headers: &[(&str, &str)],
    ) -> SseClient {
        let mut req = client.get(url).header("accept", "text/event-stream");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.expect("request");
        SseClient {
            status: res.status().as_u16(),
            headers: res.headers().clone(),
            version: res.version(),
            body: Box::pin(res.bytes_stream()),
            parser: Parser::default(),
            raw: Vec::new(),
            closed: false,
        }
    }

    /// The next dispatched event, or `None` when the stream closed or
    /// nothing came within `wait`.
    pub async fn next_event(&mut self, wait: Duration) -> Option<ParsedEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(e) = self.parser.next_event() {
                return Some(e);
            }
            if self.closed {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return None,
                Ok(None) | Ok(Some(Err(_))) => self.closed = true,
                Ok(Some(Ok(chunk))) => {
                    self.raw.extend_from_slice(&chunk);
                    self.parser.feed(&chunk).expect("parse");
                }
            }
        }
    }

    /// Events until the server closes the stream (bounded by `wait` overall).
    pub async fn collect(&mut self, wait: Duration) -> Vec<ParsedEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                Some(e) => out.push(e),
                None => return out,
            }
        }
    }

    /// The `retry:` value seen, if any.
    pub fn retry(&self) -> Option<u64> {
        self.parser.retry()
    }
}

/// Publishes `data` (JSON body) to `stream`; returns the id.
pub async fn publish(base: &str, stream: &str, data: &str, event: Option<&str>) -> String {
    let res = reqwest::Client::new()
        .post(format!("{base}/v1/streams/{stream}"))
        .json(&serde_json::json!({ "data": data, "event": event }))
        .send()
        .await
        .expect("publish");
    assert_eq!(res.status().as_u16(), 201, "publish status");
    let v: serde_json::Value = res.json().await.expect("json");
    v["id"].as_str().expect("id").to_owned()
}

/// Posts `body` with `content_type` to `stream`; returns the status, the
/// headers and the body as JSON (`Null` when it is not JSON).
pub async fn post_raw(
    base: &str,
    stream: &str,
    body: impl Into<reqwest::Body>,
    content_type: &str,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let res = reqwest::Client::new()
        .post(format!("{base}/v1/streams/{stream}"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("post");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap_or_default();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

impl SseClient {
    /// Exactly `n` events (panics if fewer come within `wait` each).
    pub async fn take(&mut self, n: usize, wait: Duration) -> Vec<ParsedEvent> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            match self.next_event(wait).await {
                Some(e) => out.push(e),
                None => panic!("got {i} of {n} events: {out:?}"),
            }
        }
        out
    }
}

/// The `/metrics` text.
pub async fn metrics_text(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The value of the sample whose series (name and labels) is exactly
/// `series`, if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `DELETE /v1/streams/{stream}`; returns the response.
pub async fn delete(base: &str, stream: &str) -> reqwest::Response {
    reqwest::Client::new()
        .delete(format!("{base}/v1/streams/{stream}"))
        .send()
        .await
        .expect("delete")
}

/// `GET url`, which must answer `200` with JSON.
pub async fn get_json(url: String) -> serde_json::Value {
    let res = reqwest::get(url).await.expect("get");
    assert_eq!(res.status().as_u16(), 200);
    res.json().await.expect("json body")
}

/// The event number of a wire id (`<incarnation>.<n>`, or a plain `<n>`).
pub fn seq(id: &str) -> u64 {
    let n = id.rsplit_once('.').map_or(id, |(_, n)| n);
    n.parse()
        .unwrap_or_else(|_| panic!("id {id:?} does not end in a number"))
}

/// The incarnation prefix of a wire id (`<incarnation>.<n>`).
pub fn epoch(id: &str) -> &str {
    id.rsplit_once('.')
        .unwrap_or_else(|| panic!("id {id:?} has no incarnation"))
        .0
}
