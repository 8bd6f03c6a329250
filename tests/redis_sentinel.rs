//! rill behind Redis Sentinel (a master, a replica, three sentinels): nodes
//! share streams through the master the sentinels name, follow a failover
//! by themselves, and never let an acknowledged event go missing silently:
//! each is delivered, or the client is told with `event: reset`.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::topology::{publish_through, try_publish, Follower, OwnSentinel};
use common::TestServer;

const LIMIT: Duration = Duration::from_secs(60);

/// Two rill nodes on the sentinels' master (a private Redis: the default
/// key prefix is the test's own).
fn nodes(s: &OwnSentinel) -> (TestServer, TestServer) {
    let args = ["--store", &s.url()];
    (TestServer::start(&args), TestServer::start(&args))
}

/// Every event received under an id carries the data acknowledged for it:
/// no id is ever given to two events.
fn same_data_per_id(acked: &HashMap<String, String>, f: &Follower) {
    for e in f.events.iter().filter(|e| e.event_type == "message") {
        if let Some(data) = acked.get(&e.last_event_id) {
            assert_eq!(&e.data, data, "id {} reused", e.last_event_id);
        }
    }
}

#[tokio::test]
async fn nodes_share_streams_through_the_master_sentinel_names() {
    let s = OwnSentinel::start();
    let (a, b) = nodes(&s);
    let mut f = Follower::new(b.url("/v1/streams/chat"), Some("0".into()));
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(publish_through(&a.base, "chat", &format!("m{i}")).await);
    }
    f.until(LIMIT, |e| e.len() >= 20).await;
    let got: Vec<(&str, &str)> = f
        .events
        .iter()
        .map(|e| (e.last_event_id.as_str(), e.data.as_str()))
        .collect();
    let want: Vec<(String, String)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), format!("m{i}")))
        .collect();
    let want: Vec<(&str, &str)> = want.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(got, want);
    assert!(!f.was_reset());
}

#[tokio::test]
async fn after_a_failover_publishes_resume_and_nothing_acknowledged_is_missed_silently() {
    let mut s = OwnSentinel::start();
    let (a, b) = nodes(&s);
    let mut acked = HashMap::new();
    let mut f = Follower::new(b.url("/v1/streams/s"), Some("0".into()));
    for i in 0..30 {
        let data = format!("before-{i}");
        acked.insert(publish_through(&a.base, "s", &data).await, data);
    }
    f.until(LIMIT, |e| e.len() >= 30).await;
    s.wait_replicated();
    let old = s.kill_master();
    // Publishes during the switch: each is acknowledged or refused with a
    // 503 that says when to retry, and they come back by themselves.
    let mut refused = 0;
    let mut after = Vec::new();
    for i in 0..20 {
        let data = format!("after-{i}");
        let id = loop {
            match try_publish(&a.base, "s", &data).await {
                Ok(id) => break id,
                Err(()) => {
                    refused += 1;
                    assert!(refused < 600, "publishes did not come back");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        acked.insert(id.clone(), data.clone());
        after.push((id, data));
    }
    s.wait_failover(old);
    assert!(refused > 0, "the switch was seen by the publisher");
    let want: Vec<String> = after.iter().map(|(_, d)| d.clone()).collect();
    f.until(LIMIT, |events| {
        let got: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        want.iter().all(|w| got.contains(&w.as_str()))
    })
    .await;
    same_data_per_id(&acked, &f);
    // Everything replicated survived: the events published before the
    // failover were each delivered once, in order, before any reset.
    let before: Vec<&str> = f.data().into_iter().take(30).collect();
    let expected: Vec<String> = (0..30).map(|i| format!("before-{i}")).collect();
    assert_eq!(before, expected);
    // The new master fenced the stream: its ids are of a new incarnation,
    // and the follower was told before it got any of them.
    let first_after = f
        .events
        .iter()
        .position(|e| e.data.starts_with("after-"))
        .expect("after events");
    assert!(
        f.events[30..first_after]
            .iter()
            .any(|e| e.event_type == "reset"),
        "a reset came before the first event of the new master"
    );
}

#[tokio::test]
async fn events_a_failover_lost_are_announced_by_reset() {
    let mut s = OwnSentinel::start();
    let (a, b) = nodes(&s);
    let mut acked = HashMap::new();
    let mut live = Follower::new(b.url("/v1/streams/s"), Some("0".into()));
    let mut survived = String::new();
    for i in 0..5 {
        let data = format!("kept-{i}");
        survived = publish_through(&a.base, "s", &data).await;
        acked.insert(survived.clone(), data);
    }
    live.until(LIMIT, |e| e.len() >= 5).await;
    s.wait_replicated();
    // The replica stops hearing the master; the master acknowledges three
    // more events, which a subscriber receives, and then dies.
    let replica = s.cut_replica();
    for i in 0..3 {
        let data = format!("lost-{i}");
        acked.insert(publish_through(&a.base, "s", &data).await, data);
    }
    live.until(LIMIT, |e| e.len() >= 8).await;
    let old = s.kill_master();
    s.cont(replica);
    s.wait_failover(old);
    let mut after = Vec::new();
    for i in 0..3 {
        let data = format!("after-{i}");
        let id = publish_through(&a.base, "s", &data).await;
        acked.insert(id.clone(), data.clone());
        after.push(data);
    }
    // The subscriber that saw the lost events is told, before anything the
    // new master gave.
    live.until(LIMIT, |events| {
        let got: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        after.iter().all(|w| got.contains(&w.as_str()))
    })
    .await;
    same_data_per_id(&acked, &live);
    let lost_seen = live
        .events
        .iter()
        .position(|e| e.data == "lost-2")
        .expect("lost events were delivered before the failover");
    let first_after = live
        .events
        .iter()
        .position(|e| e.data == "after-0")
        .expect("after events");
    assert!(
        live.events[lost_seen..first_after]
            .iter()
            .any(|e| e.event_type == "reset"),
        "a reset between the lost events and the new ones: {:?}",
        live.events
    );
    // A client that had seen only what survived never got the lost events:
    // it must be told too, with the reason.
    let mut late = Follower::new(b.url("/v1/streams/s"), Some(survived));
    late.until(LIMIT, |events| {
        let got: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        after.iter().all(|w| got.contains(&w.as_str()))
    })
    .await;
    let reset = &late.events[0];
    assert_eq!(reset.event_type, "reset", "{:?}", late.events);
    let why: serde_json::Value = serde_json::from_str(&reset.data).expect("reset JSON");
    assert_eq!(why["reason"], "failover");
    assert!(late.data().iter().all(|d| !d.starts_with("lost-")));
    same_data_per_id(&acked, &late);
}
