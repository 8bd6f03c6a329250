//! rill on a Redis Cluster (three masters, each with a replica) with two
//! nodes: streams spread over every shard, are delivered and resumed across
//! nodes exactly, share one limit and one list, and survive a master's
//! failover with publishes coming back by themselves.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::topology::{
    assert_ids_unique, publish_counting, publish_through, Follower, OwnCluster,
};
use common::{get_json, TestServer};

const LIMIT: Duration = Duration::from_secs(60);

fn node(c: &OwnCluster, extra: &[&str]) -> TestServer {
    let url = c.url();
    let mut args = vec!["--store", url.as_str()];
    args.extend_from_slice(extra);
    TestServer::start(&args)
}

/// The master holding stream `name`'s keys.
fn master_of(c: &OwnCluster, name: &str) -> u16 {
    let owners: Vec<u16> = c
        .masters()
        .into_iter()
        .filter(|&m| !c.keys_on(m, &format!("rill:{{*}}:{name}:meta")).is_empty())
        .collect();
    assert_eq!(owners.len(), 1, "one master holds {name}");
    owners[0]
}

#[tokio::test]
async fn streams_spread_over_every_shard_and_resume_across_nodes() {
    let c = OwnCluster::start(3, 1);
    let a = node(&c, &[]);
    let b = node(&c, &[]);
    let names: Vec<String> = (0..30).map(|i| format!("s{i}")).collect();
    // Subscribers on node B, on a few streams, before anything exists.
    let mut followers: Vec<Follower> = names[..6]
        .iter()
        .map(|n| Follower::new(b.url(&format!("/v1/streams/{n}")), Some("0".into())))
        .collect();
    let mut last = HashMap::new();
    for round in 0..5 {
        for n in &names {
            let id = publish_through(&a.base, n, &format!("{n}-{round}")).await;
            last.insert(n.clone(), id);
        }
    }
    // Every shard holds some streams.
    for m in c.masters() {
        assert!(
            !c.keys_on(m, "rill:*:meta").is_empty(),
            "master {m} holds no stream"
        );
    }
    // Node B lists all 30 with their last ids.
    let list = get_json(b.url("/v1/streams")).await;
    let listed: HashMap<String, String> = list["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_owned(),
                s["last_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(listed, last);
    // Live delivery across nodes, in order, exactly once.
    for (f, n) in followers.iter_mut().zip(&names) {
        f.until(LIMIT, |e| e.len() >= 5).await;
        let want: Vec<String> = (0..5).map(|r| format!("{n}-{r}")).collect();
        assert_eq!(f.data(), want);
        assert!(!f.was_reset());
    }
    // A reader hopping between the nodes resumes exactly.
    let mut ids = Vec::new();
    for i in 0..200 {
        let via = if i % 2 == 0 { &a } else { &b };
        ids.push(publish_through(&via.base, "hop", &format!("h{i}")).await);
    }
    let mut got: Vec<String> = Vec::new();
    let mut from: Option<String> = Some("0".into());
    for hop in 0..20 {
        let via = if hop % 2 == 0 { &b } else { &a };
        let mut f = Follower::new(via.url("/v1/streams/hop"), from.clone());
        let want = (got.len() + 10).min(200);
        f.until(LIMIT, |e| got.len() + e.len() >= want).await;
        assert!(!f.was_reset());
        for e in f.events.iter().take(want - got.len()) {
            got.push(e.data.clone());
            from = Some(e.last_event_id.clone());
        }
        if got.len() == 200 {
            break;
        }
    }
    let expected: Vec<String> = (0..got.len()).map(|i| format!("h{i}")).collect();
    assert_eq!(got, expected);
    assert_eq!(from.as_deref(), ids.get(got.len() - 1).map(String::as_str));
}

#[tokio::test]
async fn a_delete_the_stream_limit_and_health_span_every_shard() {
    let mut c = OwnCluster::start(3, 1);
    let a = node(&c, &["--max-streams", "5"]);
    let b = node(&c, &["--max-streams", "5"]);
    // Five streams on whichever shards they fall: the sixth is refused
    // wherever it would go.
    for i in 0..5 {
        publish_through(&a.base, &format!("l{i}"), "x").await;
    }
    let mut shards = std::collections::HashSet::new();
    for i in 0..5 {
        shards.insert(master_of(&c, &format!("l{i}")));
    }
    assert!(shards.len() > 1, "the streams are on more than one shard");
    for i in 5..9 {
        let (status, headers, body) = common::post_raw(
            &b.base,
            &format!("l{i}"),
            r#"{"data":"x"}"#,
            "application/json",
        )
        .await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "too_many_streams", "{body}");
        assert!(headers.contains_key("retry-after"));
    }
    // A delete on one node ends the subscribers on the other.
    let mut watcher = Follower::new(b.url("/v1/streams/l0"), Some("0".into()));
    watcher.until(LIMIT, |e| !e.is_empty()).await;
    let res = common::delete(&a.base, "l0").await;
    assert_eq!(res.status().as_u16(), 204);
    watcher
        .until(LIMIT, |e| e.iter().any(|e| e.event_type == "end"))
        .await;
    // And its place is free again.
    publish_through(&b.base, "l5", "x").await;
    // A dead replica takes no rill node out of service.
    let replica = c.replicas()[0];
    c.kill(replica);
    for _ in 0..5 {
        for n in [&a, &b] {
            let res = reqwest::get(n.url("/healthz")).await.expect("healthz");
            assert_eq!(res.status().as_u16(), 200);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_master_failover_is_followed_and_nothing_is_missed_silently() {
    let mut c = OwnCluster::start(3, 1);
    let a = node(&c, &[]);
    let b = node(&c, &[]);
    let mut acked = HashMap::new();
    let mut f = Follower::new(b.url("/v1/streams/f"), Some("0".into()));
    for i in 0..20 {
        let data = format!("before-{i}");
        acked.insert(publish_through(&a.base, "f", &data).await, data);
    }
    f.until(LIMIT, |e| e.len() >= 20).await;
    let victim = master_of(&c, "f");
    c.kill(victim);
    // One shard down leaves the node healthy: the other shards serve.
    let res = reqwest::get(a.url("/healthz")).await.expect("healthz");
    assert_eq!(res.status().as_u16(), 200);
    let mut refused = 0u32;
    let mut after = Vec::new();
    for i in 0..20 {
        let data = format!("after-{i}");
        let id = publish_counting(&a.base, "f", &data, &mut refused).await;
        acked.insert(id, data.clone());
        after.push(data);
    }
    assert!(refused > 0, "the switch was seen by the publisher");
    c.wait_promoted(3);
    assert_ne!(master_of(&c, "f"), victim);
    f.until_all(LIMIT, &after).await;
    // No id was given to two events, and nothing came after the failover
    // without a reset first (the new master fenced the stream).
    assert_ids_unique(&acked, &f);
    f.assert_told_before_new(20);
    // New streams start as usual after the failover.
    let other = publish_through(&b.base, "elsewhere", "x").await;
    assert_eq!(common::seq(&other), 1);
}
