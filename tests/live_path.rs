//! The delivery path over real HTTP: a long replay (sent in batches) joins
//! the live stream with nothing lost or repeated, a subscriber waiting on
//! its ring sees shutdown, and every delivery is counted.
mod common;

use std::time::Duration;

use common::{publish, SseClient, TestServer};

const WAIT: Duration = Duration::from_secs(10);

fn retries(raw: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(raw)
        .lines()
        .filter_map(|l| l.strip_prefix("retry: "))
        .filter_map(|v| v.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_subscribers_get_a_jittered_retry_and_close_at_shutdown() {
    let mut server = TestServer::start(&["--retry-ms", "1000"]);
    let base = server.url("");
    let mut a = SseClient::open(&server.url("/v1/streams/news"), &[]).await;
    let mut b = SseClient::open(&server.url("/v1/streams/other"), &[]).await;
    publish(&base, "news", "one", None).await;
    publish(&base, "other", "two", None).await;
    assert_eq!(
        a.next_event(WAIT).await.map(|e| e.data).as_deref(),
        Some("one")
    );
    assert_eq!(
        b.next_event(WAIT).await.map(|e| e.data).as_deref(),
        Some("two")
    );

    // Both now wait on their rings; shut the server down under them.
    let stop = tokio::task::spawn_blocking(move || server.terminate(WAIT));
    for c in [&mut a, &mut b] {
        assert!(c.collect(WAIT).await.is_empty(), "no event after shutdown");
        assert!(c.closed, "the server ends the stream");
        let r = retries(&c.raw);
        assert_eq!(r.len(), 2, "the first retry, then the shutdown one: {r:?}");
        assert_eq!(r[0], 1000);
        assert!((1000..=4000).contains(&r[1]), "jittered retry {}", r[1]);
    }
    let status = stop.await.expect("join").expect("server exits");
    assert!(status.success(), "clean exit: {status:?}");
}

#[tokio::test]
async fn every_delivery_is_counted_once() {
    let server = TestServer::start(&[]);
    let base = server.url("");
    let mut subs = Vec::new();
    for _ in 0..3 {
        subs.push(SseClient::open(&server.url("/v1/streams/counted"), &[]).await);
    }
    for i in 0..4 {
        publish(&base, "counted", &format!("e{i}"), None).await;
    }
    for s in &mut subs {
        for i in 0..4 {
            let e = s.next_event(WAIT).await.expect("event");
            assert_eq!(e.data, format!("e{i}"));
        }
    }
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let delivered = metrics
        .lines()
        .find(|l| l.starts_with("rill_events_delivered_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok());
    assert_eq!(delivered, Some(12.0), "{metrics}");
}

#[tokio::test]
async fn a_long_replay_then_live_arrives_complete_and_in_order() {
    let server = TestServer::start(&["--retention-events", "5000"]);
    let base = server.url("");
    // Large enough for several replay pages and several batches.
    let body = "x".repeat(300);
    for i in 1..=700 {
        publish(&base, "replayed", &format!("{i} {body}"), None).await;
    }
    let mut c = SseClient::open(&server.url("/v1/streams/replayed?lastEventId=0"), &[]).await;
    assert_eq!(c.status, 200);
    for i in 1..=700u64 {
        let e = c.next_event(WAIT).await.expect("replayed event");
        assert_eq!(common::seq(&e.last_event_id), i);
        assert_eq!(e.data, format!("{i} {body}"));
    }
    let live = publish(&base, "replayed", "live", None).await;
    let e = c.next_event(WAIT).await.expect("live event");
    assert_eq!(
        (e.last_event_id.as_str(), e.data.as_str()),
        (live.as_str(), "live")
    );
    assert_eq!(common::seq(&live), 701);
}
