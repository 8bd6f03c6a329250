//! Generations across nodes on one Redis: a generation whose node dies ends
//! with `event: failed` for subscribers on the other nodes, a cancel sent
//! to any node stops it, the grace counts listeners on every node, and a
//! node that shuts down ends its generations with `done` before it exits.

mod common;

use std::time::Duration;

use common::cluster::{redis_url, Keys};
use common::{SseClient, TestServer};
use rill::sse::ParsedEvent;

async fn start_generation(node: &TestServer) -> (String, String) {
    let res = reqwest::Client::new()
        .post(node.url("/v1/generations"))
        .json(&serde_json::json!({ "prompt": "Why is the sky blue?" }))
        .send()
        .await
        .expect("start");
    assert_eq!(res.status().as_u16(), 201);
    let v: serde_json::Value = res.json().await.expect("json");
    (
        v["id"].as_str().expect("id").to_owned(),
        v["stream"].as_str().expect("stream").to_owned(),
    )
}

async fn tokens(c: &mut SseClient, n: usize) -> Vec<ParsedEvent> {
    let mut out = Vec::new();
    while out.len() < n {
        let e = c.next_event(Duration::from_secs(10)).await.expect("token");
        assert_eq!(e.event_type, "message");
        out.push(e);
    }
    out
}

fn assert_consecutive(gen: &str, events: &[ParsedEvent]) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.last_event_id, format!("{gen}.{}", i + 1));
    }
}

#[tokio::test]
async fn a_dead_nodes_generation_ends_with_failed_everywhere() {
    let keys = Keys::new(&redis_url(), "lost");
    let lease = ["--generation-lease-secs", "2"];
    let mut owner = keys.node(&["--mock-delay-ms", "200", lease[0], lease[1]]);
    let others = [keys.node(&lease), keys.node(&lease)];
    let (gen, stream) = start_generation(&owner).await;
    let mut subs = Vec::new();
    for n in &others {
        subs.push(SseClient::open(&n.url(&format!("{stream}?lastEventId=0")), &[]).await);
    }
    let mut seen: Vec<Vec<ParsedEvent>> = Vec::new();
    for s in &mut subs {
        seen.push(tokens(s, 3).await);
    }
    // SIGKILL: no chance to end the stream or give up the lease.
    drop(std::mem::replace(&mut owner, keys.node(&[])));
    for (s, got) in subs.iter_mut().zip(&mut seen) {
        got.extend(s.collect(Duration::from_secs(20)).await);
        assert!(s.closed, "the stream closes after the error");
        let last = got.last().expect("events");
        assert_eq!(last.event_type, "failed", "last event: {last:?}");
        let body: serde_json::Value = serde_json::from_str(&last.data).expect("json");
        assert_eq!(body["error"], "generation_lost");
        assert_eq!(got.iter().filter(|e| e.event_type == "failed").count(), 1);
        assert_consecutive(&gen, got);
    }
    // Both nodes saw the same events: one log, one error, once.
    assert_eq!(seen[0].len(), seen[1].len());
    // A latecomer on the fresh node replays the whole stream, error included,
    // and a client that has read it all is told to stop with 204.
    let url = owner.url(&format!("{stream}?lastEventId=0"));
    let replay = SseClient::open(&url, &[])
        .await
        .collect(Duration::from_secs(10))
        .await;
    assert_eq!(replay.len(), seen[0].len());
    let last_id = replay.last().expect("replay").last_event_id.clone();
    let done = SseClient::open(&url, &[("last-event-id", &last_id)]).await;
    assert_eq!(done.status, 204);
}

#[tokio::test]
async fn cancel_sent_to_another_node_stops_the_generation() {
    let keys = Keys::new(&redis_url(), "cancel");
    let owner = keys.node(&["--mock-delay-ms", "200"]);
    let other = keys.node(&[]);
    let (gen, stream) = start_generation(&owner).await;
    let mut sub = SseClient::open(&other.url(&format!("{stream}?lastEventId=0")), &[]).await;
    let mut got = tokens(&mut sub, 2).await;
    let client = reqwest::Client::new();
    let res = client
        .post(other.url(&format!("/v1/generations/{gen}/cancel")))
        .send()
        .await
        .expect("cancel");
    assert_eq!(res.status().as_u16(), 202);
    got.extend(sub.collect(Duration::from_secs(10)).await);
    let last = got.last().expect("events");
    assert_eq!(last.event_type, "done");
    let body: serde_json::Value = serde_json::from_str(&last.data).expect("json");
    assert_eq!(body["done_reason"], "cancelled");
    assert_eq!(body["cancelled_by"], "request");
    // The recorded answer has 36 tokens; the cancel stopped it well before.
    assert!(body["tokens"].as_u64().expect("tokens") < 30, "{body}");
    assert_consecutive(&gen, &got);
    let res = client
        .post(other.url("/v1/generations/0000000000000000/cancel"))
        .send()
        .await
        .expect("cancel unknown");
    assert_eq!(res.status().as_u16(), 404);
}

#[tokio::test]
async fn listeners_on_other_nodes_keep_a_generation_alive_until_they_leave() {
    let keys = Keys::new(&redis_url(), "grace");
    let owner = keys.node(&["--mock-delay-ms", "400", "--generation-grace", "2"]);
    let other = keys.node(&[]);
    let (gen, stream) = start_generation(&owner).await;
    let url = other.url(&format!("{stream}?lastEventId=0"));
    let mut sub = SseClient::open(&url, &[]).await;
    // Listen well past the grace, on a node other than the owner.
    let mut got = tokens(&mut sub, 10).await;
    drop(sub);
    let left = std::time::Instant::now();
    // Wait without listening (a subscriber would count as a listener).
    let name = stream.trim_start_matches("/v1/streams/");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(std::time::Instant::now() < deadline, "never finished");
        let list: serde_json::Value = reqwest::get(other.url("/v1/streams"))
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        let listed = list["streams"].as_array().expect("streams");
        if listed
            .iter()
            .any(|s| s["name"] == name && s["finished"] == true)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The grace counts from the moment the last listener left, on whatever
    // node: cancelled after 2 s, and by 3 s (one more for the polling).
    let unheard = left.elapsed();
    assert!(
        unheard >= Duration::from_millis(1800) && unheard <= Duration::from_millis(3400),
        "cancelled {unheard:?} after the last listener left"
    );
    let mut late = SseClient::open(&url, &[("last-event-id", &got[9].last_event_id)]).await;
    got.extend(late.collect(Duration::from_secs(30)).await);
    let last = got.last().expect("events");
    assert_eq!(last.event_type, "done");
    let body: serde_json::Value = serde_json::from_str(&last.data).expect("json");
    assert_eq!(body["cancelled_by"], "no_listeners", "{body}");
    assert!(body["tokens"].as_u64().expect("tokens") < 36, "{body}");
    assert_consecutive(&gen, &got);
}

#[tokio::test]
async fn at_shutdown_a_running_generation_ends_with_done_before_the_node_exits() {
    let keys = Keys::new(&redis_url(), "shutdown");
    let mut owner = keys.node(&["--mock-delay-ms", "300", "--generation-grace", "never"]);
    let other = keys.node(&[]);
    let (gen, stream) = start_generation(&owner).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let status = tokio::task::spawn_blocking(move || {
        let status = owner.terminate(Duration::from_secs(15));
        (owner, status)
    })
    .await
    .expect("join");
    assert!(status.1.expect("exited").success());
    // Read through the node that stays: the stream already ends with the
    // owner's own `done`, not (a lease later) with `generation_lost`.
    let url = other.url(&format!("{stream}?lastEventId=0"));
    let mut c = SseClient::open(&url, &[]).await;
    let events = c.collect(Duration::from_secs(3)).await;
    assert!(c.closed, "the stream had ended: {events:?}");
    let last = events.last().expect("events");
    assert_eq!(last.event_type, "done", "{last:?}");
    let body: serde_json::Value = serde_json::from_str(&last.data).expect("json");
    assert_eq!(body["done_reason"], "cancelled");
    assert_eq!(body["cancelled_by"], "shutdown", "{body}");
    assert_consecutive(&gen, &events);
}
