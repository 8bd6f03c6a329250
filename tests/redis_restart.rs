//! Redis stops and comes back under load: publishes fail fast with `503`
//! meanwhile, subscribers are told to retry and resume, `/healthz` says so,
//! and nothing a publisher saw acknowledged is lost.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{Keys, OwnRedis};
use common::SseClient;

/// A browser's `EventSource`: reconnects after every close, sending the
/// last id it saw, until it has seen `until` (or the deadline).
async fn browser(base: Vec<String>, seen: Arc<Mutex<Vec<(u64, String)>>>, until: Arc<Mutex<u64>>) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut hop = 0;
    let mut last_wire: Option<String> = None;
    loop {
        let last = seen.lock().unwrap().last().map_or(0, |(id, _)| *id);
        let target = *until.lock().unwrap();
        if target > 0 && last >= target {
            return;
        }
        assert!(Instant::now() < deadline, "browser stuck at {last}");
        let url = format!("{}/v1/streams/load?lastEventId=0", base[hop % base.len()]);
        hop += 1;
        let headers: Vec<(&str, &str)> = match &last_wire {
            Some(id) => vec![("last-event-id", id.as_str())],
            None => vec![],
        };
        let mut c = SseClient::open(&url, &headers).await;
        assert_eq!(
            c.status, 200,
            "EventSource would give up on any other status"
        );
        while let Some(e) = c.next_event(Duration::from_secs(2)).await {
            assert_eq!(e.event_type, "message", "{e:?}");
            let id = common::seq(&e.last_event_id);
            last_wire = Some(e.last_event_id.clone());
            seen.lock().unwrap().push((id, e.data));
        }
        tokio::time::sleep(Duration::from_millis(c.retry().unwrap_or(200).min(1000))).await;
    }
}

async fn health(base: &str) -> u16 {
    match reqwest::get(format!("{base}/healthz")).await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

async fn wait_health(bases: &[String], want: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for b in bases {
        while health(b).await != want {
            assert!(
                Instant::now() < deadline,
                "{b}/healthz never answered {want}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn redis_restart_loses_nothing_acknowledged_and_everyone_recovers() {
    let mut redis = OwnRedis::start();
    let keys = Keys::new(&redis.url(), "restart");
    let nodes = [
        keys.node(&["--retry-ms", "200"]),
        keys.node(&["--retry-ms", "200"]),
    ];
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    let until = Arc::new(Mutex::new(0u64));
    let mut browsers = Vec::new();
    let mut seens = Vec::new();
    for i in 0..3 {
        let seen = Arc::new(Mutex::new(Vec::new()));
        seens.push(seen.clone());
        let mut order = bases.clone();
        order.rotate_left(i % bases.len());
        browsers.push(tokio::spawn(browser(order, seen, until.clone())));
    }
    let acked: Arc<Mutex<HashMap<u64, String>>> = Arc::default();
    let refused = Arc::new(Mutex::new(0usize));
    let publisher = {
        let (bases, acked, refused) = (bases.clone(), acked.clone(), refused.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for k in 0..400usize {
                let data = format!("e{k}");
                let res = client
                    .post(format!("{}/v1/streams/load", bases[k % bases.len()]))
                    .json(&serde_json::json!({ "data": data }))
                    .send()
                    .await
                    .expect("the node itself stays up");
                match res.status().as_u16() {
                    201 => {
                        let v: serde_json::Value = res.json().await.expect("json");
                        let id = common::seq(v["id"].as_str().expect("id"));
                        acked.lock().unwrap().insert(id, data);
                    }
                    503 => {
                        assert!(res.headers().contains_key("retry-after"));
                        *refused.lock().unwrap() += 1;
                    }
                    s => panic!("publish answered {s}"),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.kill();
    wait_health(&bases, 503).await;
    // The seed's page plays its recording without the store.
    let mut page = SseClient::open(&format!("{}/sse", bases[0]), &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.next_event(Duration::from_secs(5)).await.is_some());
    drop(page);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    redis.restart();
    wait_health(&bases, 200).await;
    publisher.await.expect("publisher");
    let acked = acked.lock().unwrap().clone();
    let refused = *refused.lock().unwrap();
    println!("{} acknowledged, {refused} refused with 503", acked.len());
    assert!(
        refused > 0,
        "publishes while Redis was down must be refused"
    );
    let last = *acked.keys().max().expect("some acknowledged");
    *until.lock().unwrap() = last;
    for b in browsers {
        b.await.expect("browser");
    }
    for seen in &seens {
        let seen = seen.lock().unwrap();
        let ids: Vec<u64> = seen.iter().map(|(id, _)| *id).collect();
        assert_eq!(
            ids,
            (1..=ids.len() as u64).collect::<Vec<_>>(),
            "in order, once"
        );
        let by_id: HashMap<u64, &String> = seen.iter().map(|(i, d)| (*i, d)).collect();
        for (id, data) in &acked {
            assert_eq!(by_id.get(id).copied(), Some(data), "acknowledged {id} lost");
        }
    }
}
