//! Floods on loopback, bounded in count and time: half-open connections,
//! clients that send their headers slowly or never finish them, and more
//! connections than the limit. None of them may stop a normal client from
//! being served.

mod common;

use std::time::Duration;

use common::secure::{metric, scrape, tls_args, tls_client};
use common::TestServer;
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
    let text = scrape(&reqwest::Client::new(), &s.base).await;
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
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut h1 = common::SseClient::open(&s.url("/v1/streams/long"), &[]).await;
    let mut h2 = common::SseClient::open_with(&h2, &s.url("/v1/streams/long"), &[]).await;
    // Idle for three timeouts, with only keep-alive comments flowing.
    assert!(h1.next_event(Duration::from_secs(3)).await.is_none());
    assert!(!h1.closed && !h2.closed);
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
