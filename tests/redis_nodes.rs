//! Several rill nodes on one Redis: what is published on one node is
//! delivered, in order and exactly once, to subscribers on every node, and a
//! client that hops between nodes with `Last-Event-ID` misses nothing.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{redis_url, Keys};
use common::{publish, SseClient, TestServer};
use rand::{Rng, SeedableRng};

const WAIT: Duration = Duration::from_secs(10);

async fn live_subscriber(node: &TestServer, stream: &str) -> SseClient {
    let mut c = SseClient::open(&node.url(&format!("/v1/streams/{stream}")), &[]).await;
    assert_eq!(c.status, 200);
    // Nothing is replayed from the live edge; wait until the stream is open.
    assert!(c.next_event(Duration::from_millis(300)).await.is_none());
    c
}

#[tokio::test]
async fn published_on_one_node_delivered_live_on_the_others() {
    let keys = Keys::new(&redis_url(), "live");
    let nodes: Vec<TestServer> = (0..3).map(|_| keys.node(&[])).collect();
    let mut subs = Vec::new();
    for n in &nodes[1..] {
        subs.push(live_subscriber(n, "chat").await);
    }
    let total = 200u64;
    let mut ids = Vec::new();
    for i in 0..total {
        // Alternate publishers: node 0 and node 2.
        let node = &nodes[if i % 2 == 0 { 0 } else { 2 }];
        let id = publish(&node.base, "chat", &format!("m{i}"), None).await;
        assert_eq!(common::seq(&id), i + 1, "one id counter across nodes");
        ids.push(id);
    }
    assert!(
        ids.iter()
            .all(|id| common::epoch(id) == common::epoch(&ids[0])),
        "one incarnation across nodes"
    );
    for sub in &mut subs {
        for i in 0..total {
            let e = sub.next_event(WAIT).await.expect("event");
            assert_eq!(e.last_event_id, ids[i as usize]);
            assert_eq!(e.data, format!("m{i}"));
        }
    }
    let res = reqwest::get(nodes[1].url("/v1/streams"))
        .await
        .expect("list");
    let list: serde_json::Value = res.json().await.expect("json");
    let chat = &list["streams"][0];
    assert_eq!(chat["name"], "chat");
    assert_eq!(chat["last_id"], ids[ids.len() - 1].as_str());
    assert_eq!(chat["subscribers"], 1);
    let health = reqwest::get(nodes[2].url("/healthz"))
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
}

#[tokio::test]
async fn a_delete_on_one_node_ends_subscribers_on_every_node() {
    let keys = Keys::new(&redis_url(), "delete");
    let a = keys.node(&[]);
    let b = keys.node(&[]);
    let one = publish(&a.base, "s", "one", None).await;
    publish(&a.base, "s", "two", None).await;
    let mut watcher = live_subscriber(&b, "s").await;
    let res = reqwest::Client::new()
        .delete(a.url("/v1/streams/s"))
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status().as_u16(), 204);
    let end = watcher
        .next_event(WAIT)
        .await
        .expect("end on the other node");
    let three = format!("{}.3", common::epoch(&one));
    assert_eq!(
        (end.event_type.as_str(), end.last_event_id.as_str()),
        ("end", three.as_str())
    );
    assert!(watcher.next_event(WAIT).await.is_none() && watcher.closed);
    // The stream starts over as a new incarnation, and the other node
    // follows the new one.
    let mut fresh = live_subscriber(&b, "s").await;
    let again = publish(&a.base, "s", "again", None).await;
    assert_eq!(common::seq(&again), 1);
    assert_ne!(common::epoch(&again), common::epoch(&one));
    let e = fresh
        .next_event(WAIT)
        .await
        .expect("event of the new stream");
    assert_eq!(
        (e.data.as_str(), e.last_event_id.as_str()),
        ("again", again.as_str())
    );
}

/// Two publishers on different nodes, one reader that reconnects to a random
/// node after a random number of events, thousands of events in all.
#[tokio::test]
async fn hopping_between_nodes_resumes_exactly_once_in_order() {
    let seed: u64 = std::env::var("RILL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let per_publisher: usize = 1500;
    println!("seed {seed}, {per_publisher} events per publisher, 2 publishers, 3 nodes");
    let keys = Keys::new(&redis_url(), "hop");
    let nodes: Vec<TestServer> = (0..3)
        .map(|_| keys.node(&["--retention-events", "100000"]))
        .collect();
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    let mut publishers = Vec::new();
    for p in 0..2usize {
        let bases = bases.clone();
        publishers.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (p as u64 + 1));
            for k in 0..per_publisher {
                let base = &bases[rng.random_range(0..bases.len())];
                publish(base, "hop", &format!("p{p}-{k}"), None).await;
            }
        }));
    }
    let total = per_publisher * 2;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut got: Vec<(u64, String)> = Vec::with_capacity(total);
    let mut last_wire: Option<String> = None;
    let mut hops = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while got.len() < total {
        assert!(
            Instant::now() < deadline,
            "gave up after {} events",
            got.len()
        );
        let node = &nodes[rng.random_range(0..nodes.len())];
        let url = node.url("/v1/streams/hop?lastEventId=0");
        let headers: Vec<(&str, &str)> = match &last_wire {
            Some(id) => vec![("last-event-id", id.as_str())],
            None => vec![],
        };
        let mut c = SseClient::open(&url, &headers).await;
        assert_eq!(c.status, 200);
        hops += 1;
        let take = rng.random_range(1..120);
        for _ in 0..take {
            let Some(e) = c.next_event(WAIT).await else {
                break;
            };
            assert_ne!(e.event_type, "reset", "unexpected reset: {}", e.data);
            got.push((common::seq(&e.last_event_id), e.data));
            last_wire = Some(e.last_event_id);
            if got.len() == total {
                break;
            }
        }
    }
    for p in publishers {
        p.await.expect("publisher");
    }
    println!("received {} events over {hops} connections", got.len());
    let ids: Vec<u64> = got.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=total as u64).collect::<Vec<_>>(), "seed {seed}");
    for p in 0..2 {
        let tag = format!("p{p}-");
        let seq: Vec<usize> = got
            .iter()
            .filter_map(|(_, d)| d.strip_prefix(&tag)?.parse().ok())
            .collect();
        assert_eq!(seq, (0..per_publisher).collect::<Vec<_>>(), "seed {seed}");
    }
}
