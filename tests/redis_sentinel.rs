//! rill behind Redis Sentinel (a master, a replica, three sentinels): nodes
//! share streams through the master the sentinels name, follow a failover
//! by themselves, and never let an acknowledged event go missing silently:
//! each is delivered, or the client is told with `event: reset`.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::topology::{
    assert_ids_unique, publish_counting, publish_through, Follower, OwnSentinel,
};
use common::TestServer;

const LIMIT: Duration = Duration::from_secs(60);

/// Two rill nodes on the sentinels' master (a private Redis: the default
/// key prefix is the test's own).
fn nodes(s: &OwnSentinel) -> (TestServer, TestServer) {
    let args = ["--store", &s.url()];
    (TestServer::start(&args), TestServer::start(&args))
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
    let mut refused = 0u32;
    let mut after = Vec::new();
    for i in 0..20 {
        let data = format!("after-{i}");
        let id = publish_counting(&a.base, "s", &data, &mut refused).await;
        acked.insert(id.clone(), data.clone());
        after.push((id, data));
    }
    s.wait_failover(old);
    assert!(refused > 0, "the switch was seen by the publisher");
    let want: Vec<String> = after.iter().map(|(_, d)| d.clone()).collect();
    f.until_all(LIMIT, &want).await;
    assert_ids_unique(&acked, &f);
    // Everything replicated survived and came once, in order; the new
    // master fenced the stream, and the follower was told before it got
    // any of the new master's events.
    f.assert_told_before_new(30);
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
    live.until_all(LIMIT, &after).await;
    assert_ids_unique(&acked, &live);
    let lost_seen = live.position("lost-2");
    let first_after = live.position("after-0");
    assert!(
        live.reset_between(lost_seen, first_after),
        "a reset between the lost events and the new ones: {:?}",
        live.events
    );
    // A client that had seen only what survived never got the lost events:
    // it must be told too, with the reason.
    let mut late = Follower::new(b.url("/v1/streams/s"), Some(survived));
    late.until_all(LIMIT, &after).await;
    let reset = &late.events[0];
    assert_eq!(reset.event_type, "reset", "{:?}", late.events);
    let why: serde_json::Value = serde_json::from_str(&reset.data).expect("reset JSON");
    assert_eq!(why["reason"], "failover");
    assert!(late.data().iter().all(|d| !d.starts_with("lost-")));
    assert_ids_unique(&acked, &late);
}
