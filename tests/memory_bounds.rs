//! Memory is bounded by settings, not by what clients send: a node-wide
//! byte budget for stored events, live rings bounded in bytes, and nothing
//! kept for names that were only touched (a refused publish, a `DELETE` of
//! a missing stream, a refused `GET`).
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{post_raw, SseClient, TestServer};
use futures_util::StreamExt;

const MIB: u64 = 1024 * 1024;

#[tokio::test]
async fn past_the_store_budget_publishes_get_503_and_nothing_acknowledged_is_lost() {
    let server = TestServer::start(&[
        "--max-store-bytes",
        "1000000",
        "--max-event-bytes",
        "100000",
        "--retention-bytes",
        "500000",
    ]);
    let data = "x".repeat(90_000);
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for i in 0..40 {
        let stream = format!("s{}", i % 4);
        let (status, headers, body) =
            post_raw(&server.base, &stream, data.clone(), "text/plain").await;
        match status {
            201 => acknowledged.push((stream, body["id"].as_str().unwrap().to_owned())),
            503 => {
                assert_eq!(body["error"], "store_full", "{body}");
                assert!(headers.contains_key("retry-after"));
                refused = Some(i);
                break;
            }
            other => panic!("publish {i}: {other} {body}"),
        }
    }
    let refused = refused.expect("the budget was reached");
    assert!(refused >= 8, "about 1 MB fits: {refused}");
    // Every acknowledged event is still there to replay.
    for s in ["s0", "s1", "s2", "s3"] {
        let want: Vec<&String> = acknowledged
            .iter()
            .filter(|(n, _)| n == s)
            .map(|(_, id)| id)
            .collect();
        let mut c =
            SseClient::open(&server.url(&format!("/v1/streams/{s}?lastEventId=0")), &[]).await;
        let got = c.take(want.len(), Duration::from_secs(10)).await;
        let ids: Vec<&String> = got.iter().map(|e| &e.last_event_id).collect();
        assert_eq!(ids, want, "{s}");
    }
}

#[tokio::test]
async fn a_stalled_subscriber_does_not_hold_a_ring_of_large_events() {
    let server = TestServer::start(&[
        "--retention-bytes",
        "4194304",
        "--max-event-bytes",
        "1048576",
        "--subscriber-buffer-bytes",
        "2097152",
    ]);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut stalled = TcpStream::connect(&addr).unwrap();
    write!(
        stalled,
        "GET /v1/streams/big HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 256];
    let _ = stalled.read(&mut head).unwrap();
    let before = server.rss_kib();
    let data = "y".repeat(1024 * 1024 - 100);
    for _ in 0..64 {
        let (status, _, _) = post_raw(&server.base, "big", data.clone(), "text/plain").await;
        assert_eq!(status, 201);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grown = server.rss_kib().saturating_sub(before) * 1024;
    // Retention keeps 4 MiB, the ring 2 MiB, the socket its buffers; 64 MiB
    // went through. Held whole by the ring, it would be all of it.
    assert!(grown < 24 * MIB, "RSS grew by {} MiB", grown / MIB);
    drop(stalled);
}

#[tokio::test]
async fn names_only_touched_leave_nothing_behind() {
    let server = TestServer::start(&["--max-streams", "1"]);
    common::publish(&server.base, "only", "x", None).await;
    let client = reqwest::Client::new();
    let base = server.base.clone();
    // Warm up the allocator and the connection pool before measuring.
    touch(&client, &base, 0..2_000).await;
    let before = server.rss_kib();
    touch(&client, &base, 2_000..50_000).await;
    let grown = server.rss_kib().saturating_sub(before) * 1024;
    assert!(grown < 50 * MIB, "RSS grew by {} MiB", grown / MIB);
    let list = common::get_json(server.url("/v1/streams")).await;
    assert_eq!(list["streams"].as_array().unwrap().len(), 1);
}

/// Touches each name in `range` once, in one of three refused ways.
async fn touch(client: &reqwest::Client, base: &str, range: std::ops::Range<u32>) {
    futures_util::stream::iter(range)
        .map(|i| {
            let client = client.clone();
            async move {
                let (req, want) = match i % 3 {
                    0 => (client.delete(format!("{base}/v1/streams/missing-{i}")), 404),
                    1 => (
                        client
                            .post(format!("{base}/v1/streams/refused-{i}"))
                            .body("x"),
                        503,
                    ),
                    _ => (
                        client
                            .get(format!("{base}/v1/streams/gen-{i:016x}"))
                            .header("accept", "text/event-stream"),
                        404,
                    ),
                };
                let status = req.send().await.unwrap().status().as_u16();
                assert_eq!(status, want, "name {i}");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
}
