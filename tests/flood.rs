//! Floods on loopback, bounded in count and time: half-open connections,
//! clients that send their headers or bodies slowly or never finish them,
//! idle HTTP/2 connections, and more connections than the limits, overall
//! and per address. None of them may stop a normal client from being served.

mod common;

use std::time::Duration;

use common::secure::{metric, scrape, tls_args, tls_client};
use common::TestServer;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sockets the flood opens; far below the test process's descriptor limit.
const FLOOD: usize = 2000;

fn addr(s: &TestServer) -> String {
    s.base.trim_start_matches("http://").to_owned()
}

/// Opens `n` connections; each sends one of: nothing, part of an HTTP/1.1
/// request head, or part of the HTTP/2 preface.
async fn slow_clients(addr: &str, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let partial: &[u8] = match i % 3 {
            0 => b"",
            1 => b"GET /v1/streams/x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
            _ => b"PRI * HTTP/2.0\r\n",
        };
        s.write_all(partial).await.expect("write");
        out.push(s);
    }
    out
}

/// Whether the server has closed `s` (EOF or reset) within `wait`.
async fn closed_by_server(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 or similar before the close is fine; keep reading.
            Ok(Ok(_)) => continue,
        }
    }
}

async fn healthz(s: &TestServer) -> u16 {
    reqwest::Client::new()
        .get(s.url("/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn dropped(s: &TestServer, reason: &str) -> f64 {
    dropped_via(&reqwest::Client::new(), s, reason).await
}

/// `rill_connections_dropped_total{reason}`, read over `client`.
async fn dropped_via(client: &reqwest::Client, s: &TestServer, reason: &str) -> f64 {
    let text = scrape(client, &s.base).await;
    metric(
        &text,
        &format!("rill_connections_dropped_total{{reason=\"{reason}\"}}"),
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn slow_and_half_open_clients_do_not_stop_normal_ones() {
    let s = TestServer::start(&["--header-read-timeout-secs", "2"]);
    let mut flood = slow_clients(&addr(&s), FLOOD).await;
    // While all of them hang, a normal client is served at once.
    assert_eq!(healthz(&s).await, 200);
    let sub = common::SseClient::open(&s.url("/sse"), &[]).await;
    assert_eq!(sub.status, 200);
    drop(sub);
    // And the server closes every one of them after the header timeout.
    for c in &mut flood {
        assert!(closed_by_server(c, Duration::from_secs(10)).await);
    }
    assert!(dropped(&s, "header_timeout").await >= (FLOOD * 2 / 3) as f64);
    assert_eq!(healthz(&s).await, 200);
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_at_once() {
    let s = TestServer::start(&["--max-connections", "50", "--header-read-timeout-secs", "2"]);
    let held = slow_clients(&addr(&s), 50).await;
    // Give the accept loop time to take all fifty.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = TcpStream::connect(addr(&s)).await.expect("connect");
    assert!(closed_by_server(&mut extra, Duration::from_secs(1)).await);
    // Once the slow ones time out, their places are free again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(healthz(&s).await, 200);
    assert!(dropped(&s, "limit").await >= 1.0);
    drop(held);
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let s = TestServer::start(&["--max-header-bytes", "8192"]);
    let res = reqwest::Client::new()
        .get(s.url("/healthz"))
        .header("x-big", "a".repeat(20_000))
        .send()
        .await;
    // hyper answers 431 or closes the connection; either way, no 200.
    if let Ok(r) = res {
        assert_eq!(r.status().as_u16(), 431);
    }
    assert_eq!(healthz(&s).await, 200);
}

#[tokio::test]
async fn open_streams_outlive_the_header_timeout() {
    let s = TestServer::start(&["--header-read-timeout-secs", "1", "--keepalive-secs", "1"]);
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut h1 = common::SseClient::open(&s.url("/v1/streams/long"), &[]).await;
    let mut h2 = common::SseClient::open_with(&client, &s.url("/v1/streams/long"), &[]).await;
    assert_eq!(h2.version, reqwest::Version::HTTP_2);
    // A second stream on the HTTP/2 connection opens and ends: the event
    // stream still open keeps the connection busy, never idle.
    let res = client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    drop(res.bytes().await);
    // Idle for three timeouts, with only keep-alive comments flowing.
    assert!(h1.next_event(Duration::from_secs(3)).await.is_none());
    let seen = h2.raw.len();
    assert!(h2.next_event(Duration::from_millis(1500)).await.is_none());
    assert!(!h1.closed && !h2.closed);
    assert!(
        h2.raw[seen..].windows(2).any(|w| w == b":\n"),
        "keep-alives still arrive over HTTP/2 after the idle timeout"
    );
    common::publish(&s.base, "long", "still here", None).await;
    assert_eq!(
        h1.next_event(Duration::from_secs(5)).await.unwrap().data,
        "still here"
    );
    assert_eq!(
        h2.next_event(Duration::from_secs(5)).await.unwrap().data,
        "still here"
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused_on_every_route_that_reads_one() {
    // The wire limit is 6 x 1000 + 64 KiB.
    let s = TestServer::start(&["--max-event-bytes", "1000"]);
    let big = "x".repeat(200_000);
    for path in ["/v1/streams/big", "/v1/generations"] {
        // A fresh connection each: after a 413 the server does not read the
        // rest of the body and closes the connection it came on.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let res = client
            .post(s.url(path))
            .header("content-type", "application/json")
            .body(format!("{{\"data\": \"{big}\"}}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 413, "{path}");
    }
}

#[tokio::test]
async fn stalled_tls_handshakes_are_closed_and_do_not_block_others() {
    let mut args = tls_args();
    args.extend(["--header-read-timeout-secs".into(), "2".into()]);
    let s = TestServer::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let addr = s.base.trim_start_matches("https://").to_owned();
    // Nothing, or the first bytes of a TLS record, then silence.
    let mut stalled = Vec::new();
    for i in 0..300 {
        let mut c = TcpStream::connect(&addr).await.expect("connect");
        if i % 2 == 1 {
            c.write_all(&[0x16, 0x03, 0x01, 0x02]).await.expect("write");
        }
        stalled.push(c);
    }
    let client = tls_client(reqwest::Client::builder());
    let res = client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    for c in &mut stalled {
        assert!(closed_by_server(c, Duration::from_secs(10)).await);
    }
    // The count is bumped just after the socket closes: allow it a moment.
    let series = "rill_connections_dropped_total{reason=\"tls\"}";
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = scrape(&client, &s.base).await;
        if metric(&metrics, series).unwrap_or(0.0) >= 300.0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not every stalled handshake was counted:\n{metrics}");
}

/// The status of a `GET /healthz` sent on a fresh connection from `from`,
/// or 0 when the server closed it instead.
async fn healthz_from(s: &TestServer, from: &str) -> u16 {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{from}:0").parse().expect("address"))
        .expect("bind");
    let Ok(mut c) = socket.connect(addr(s).parse().expect("address")).await else {
        return 0;
    };
    let req = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if c.write_all(req.as_bytes()).await.is_err() {
        return 0;
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut answer)).await;
    if !matches!(read, Ok(Ok(_))) {
        return 0;
    }
    let text = String::from_utf8_lossy(&answer);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_body_that_trickles_in_gets_408_and_a_close() {
    let s = TestServer::start(&["--body-read-timeout-secs", "1"]);
    let c = TcpStream::connect(addr(&s)).await.expect("connect");
    let (mut rx, mut tx) = c.into_split();
    let head = "POST /v1/streams/trickle HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                Content-Type: text/plain\r\nContent-Length: 1000000\r\n\r\n";
    tx.write_all(head.as_bytes()).await.expect("head");
    // A few bytes every 200 ms: far slower than the million announced.
    let trickle = tokio::spawn(async move {
        for _ in 0..50 {
            if tx.write_all(b"xxxx").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    // Meanwhile, a normal publish is served.
    common::publish(&s.base, "normal", "hello", None).await;
    // The trickler gets 408 and then the end of the connection.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(8), rx.read_to_end(&mut answer)).await;
    trickle.abort();
    let text = String::from_utf8_lossy(&answer);
    assert!(read.is_ok(), "the connection is still open: {text:?}");
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(body).expect("JSON error body");
    assert_eq!(json["error"], "body_timeout", "{json}");
    assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
    // Nothing of it was published.
    let res = reqwest::get(s.url("/v1/streams")).await.unwrap();
    let list = res.text().await.unwrap();
    assert!(!list.contains("trickle"), "{list}");
}

#[tokio::test]
async fn a_body_that_trickles_in_over_http2_gets_408() {
    let s = TestServer::start(&["--body-read-timeout-secs", "1"]);
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    // Four bytes, then nothing more, and the stream never ends.
    let first = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from("xxxx"))]);
    let body = reqwest::Body::wrap_stream(first.chain(futures_util::stream::pending()));
    let res = tokio::time::timeout(
        Duration::from_secs(8),
        client.post(s.url("/v1/streams/trickle")).body(body).send(),
    )
    .await
    .expect("answered")
    .expect("response");
    assert_eq!(res.status(), 408);
    let json: serde_json::Value = res.json().await.unwrap();
    assert_eq!(json["error"], "body_timeout");
    // The connection itself still serves.
    let res = client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn idle_http2_connections_are_closed_like_idle_http1_ones() {
    let s = TestServer::start(&["--max-connections", "5", "--header-read-timeout-secs", "1"]);
    // Five h2c connections, one request each, then idle: every place taken.
    let mut idle = Vec::new();
    for _ in 0..5 {
        let client = reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .unwrap();
        let res = client.get(s.url("/healthz")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.version(), reqwest::Version::HTTP_2);
        drop(res.bytes().await);
        idle.push(client);
    }
    // The server closes them once idle past the timeout, so a new client
    // gets in; while they stayed open, none ever would.
    let mut status = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        status = healthz_from(&s, "127.0.0.1").await;
        if status == 200 {
            break;
        }
    }
    assert_eq!(status, 200, "no place freed by idle HTTP/2 connections");
    // All five went, not just one.
    let client = reqwest::Client::new();
    let mut open = f64::MAX;
    for _ in 0..50 {
        open = metric(&scrape(&client, &s.base).await, "rill_connections").unwrap_or(f64::MAX);
        if open <= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(open, 1.0, "only the scraping connection is left");
    drop(idle);
}

#[tokio::test]
async fn connections_over_the_per_ip_cap_are_closed_at_once() {
    let s = TestServer::start(&[
        "--max-connections-per-ip",
        "3",
        "--header-read-timeout-secs",
        "60",
    ]);
    // Three clients from 127.0.0.1, each keeping its one connection.
    let mut held = Vec::new();
    for _ in 0..3 {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .unwrap();
        let res = client.get(s.url("/healthz")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        drop(res.bytes().await);
        held.push(client);
    }
    // A fourth from the same address is closed at once: the header timeout
    // (60 s) cannot be what closes it within two seconds.
    let mut extra = TcpStream::connect(addr(&s)).await.expect("connect");
    assert!(closed_by_server(&mut extra, Duration::from_secs(2)).await);
    assert_eq!(healthz_from(&s, "127.0.0.1").await, 0);
    // The three still work, and another address is unaffected.
    for client in &held {
        let res = client.get(s.url("/healthz")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        drop(res.bytes().await);
    }
    assert_eq!(healthz_from(&s, "127.0.0.2").await, 200);
    // Once one of the three has gone, a new one gets through.
    held.pop();
    let mut status = 0;
    for _ in 0..50 {
        status = healthz_from(&s, "127.0.0.1").await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
    let other = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().ok())
        .build()
        .unwrap();
    assert!(dropped_via(&other, &s, "per_ip").await >= 2.0);
}

#[tokio::test]
async fn a_per_ip_flood_is_logged_at_most_once_a_second() {
    const REFUSED: usize = 300;
    let s = TestServer::start(&[
        "--max-connections-per-ip",
        "1",
        "--header-read-timeout-secs",
        "60",
    ]);
    let _held = TcpStream::connect(addr(&s)).await.expect("connect");
    let started = std::time::Instant::now();
    for _ in 0..REFUSED {
        let mut c = TcpStream::connect(addr(&s)).await.expect("connect");
        assert!(closed_by_server(&mut c, Duration::from_secs(2)).await);
    }
    let elapsed = started.elapsed();
    let other = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().ok())
        .build()
        .unwrap();
    assert!(dropped_via(&other, &s, "per_ip").await >= REFUSED as f64);
    // Every refusal is counted; the log says so in a line a second at most.
    let mut lines = 0;
    for _ in 0..50 {
        lines = s
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("max-connections-per-ip"))
            .count();
        if lines > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(lines >= 1, "a refusal is logged");
    assert!(
        lines as u64 <= elapsed.as_secs() + 2,
        "{lines} log lines for {REFUSED} refusals in {elapsed:?}"
    );
}
