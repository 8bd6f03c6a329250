//! A stand-in for rill that answers each request with a canned event
//! stream, for what a real server cannot be made to send on cue (a
//! generation that fails, a response cut short).

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What to send back for one request.
pub struct Reply {
    /// The event-stream body.
    pub body: String,
    /// Extra header lines, each `name: value`.
    pub headers: Vec<String>,
    /// Keep the connection open after the body (the client must end it),
    /// rather than closing it.
    pub hold: bool,
}

/// A running fake: its base URL and every request it received.
pub struct FakeSse {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Each request: its head, a blank line and its body.
    pub requests: Arc<Mutex<Vec<String>>>,
}

/// Starts a fake that answers each request with `reply(request_head)`.
pub async fn start(reply: fn(&str) -> Reply) -> FakeSse {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !complete(&seen) {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&seen).into_owned();
                let r = reply(&text);
                log.lock().unwrap().push(text);
                let mut head = String::from(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n",
                );
                for h in &r.headers {
                    head.push_str(h);
                    head.push_str("\r\n");
                }
                head.push_str("\r\n");
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(r.body.as_bytes()).await;
                if r.hold {
                    while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
                } else {
                    let _ = socket.shutdown().await;
                }
            });
        }
    });
    FakeSse { base, requests }
}

/// Whether `seen` holds a request head and the body its `content-length`
/// announces.
fn complete(seen: &[u8]) -> bool {
    let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    seen.len() >= end + 4 + length
}
