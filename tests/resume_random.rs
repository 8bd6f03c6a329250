//! Randomized resume: many subscribers drop their connection at random
//! points and come back with their last id while a publisher writes
//! thousands of events. Every subscriber must end with every event exactly
//! once, in order.
//!
//! The seed is printed; set `RILL_TEST_SEED` to replay a run. The run is
//! bounded in events and in time.
mod common;

use std::time::Duration;

use common::{SseClient, TestServer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const EVENTS: u64 = 3000;
const SUBSCRIBERS: u64 = 40;
const BOUND: Duration = Duration::from_secs(240);

/// What one subscriber saw: the ids and data it got, and how often it
/// reconnected.
struct Outcome {
    got: Vec<(u64, String)>,
    reconnects: u64,
}

async fn subscriber(url: String, seed: u64) -> Outcome {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut got: Vec<(u64, String)> = Vec::new();
    let mut reconnects = 0;
    let mut from = String::new();
    loop {
        let last = got.last().map_or(0, |(id, _)| *id);
        if last == EVENTS {
            return Outcome { got, reconnects };
        }
        // The first connection asks for everything; later ones resume as a
        // browser does, with the header.
        let mut c = if got.is_empty() {
            SseClient::open(&format!("{url}?lastEventId=0"), &[]).await
        } else {
            SseClient::open(&url, &[("last-event-id", &from)]).await
        };
        assert_eq!(c.status, 200);
        // Cut after a number of events, or after a short time (possibly in
        // the middle of an event), whichever the dice say.
        let budget = rng.random_range(1..=300usize);
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(rng.random_range(20..=1000u64));
        for _ in 0..budget {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(ev) = c.next_event(left).await else {
                break;
            };
            assert_ne!(ev.event_type, "reset", "subscriber {seed}: nothing expired");
            let id = common::seq(&ev.last_event_id);
            from.clone_from(&ev.last_event_id);
            got.push((id, ev.data));
            if id == EVENTS {
                break;
            }
        }
        reconnects += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_resuming_at_random_see_every_event_once_in_order() {
    let seed: u64 = std::env::var("RILL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("seed {seed} (RILL_TEST_SEED={seed} to replay)");
    // Retention covers the whole run so no reset is expected; a small live
    // buffer makes subscribers fall behind the ring and be caught up from
    // the store on the way.
    let server = TestServer::start(&["--retention-events", "5000", "--subscriber-buffer", "16"]);
    let url = server.url("/v1/streams/random");
    let run = async {
        let subs: Vec<_> = (0..SUBSCRIBERS)
            .map(|i| tokio::spawn(subscriber(url.clone(), seed.wrapping_add(i))))
            .collect();
        let base = server.base.clone();
        let publisher = tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
            let client = reqwest::Client::new();
            let url = format!("{base}/v1/streams/random");
            for i in 1..=EVENTS {
                let res = client
                    .post(&url)
                    .body(format!("event {i}"))
                    .send()
                    .await
                    .expect("publish");
                assert_eq!(res.status().as_u16(), 201);
                let body: serde_json::Value = res.json().await.expect("json");
                assert_eq!(common::seq(body["id"].as_str().unwrap()), i);
                if rng.random_ratio(1, 100) {
                    tokio::time::sleep(Duration::from_millis(rng.random_range(1..30))).await;
                }
            }
        });
        publisher.await.expect("publisher");
        let mut outcomes = Vec::new();
        for s in subs {
            outcomes.push(s.await.expect("subscriber"));
        }
        outcomes
    };
    let outcomes = tokio::time::timeout(BOUND, run)
        .await
        .unwrap_or_else(|_| panic!("seed {seed}: not done within {BOUND:?}"));

    let want: Vec<(u64, String)> = (1..=EVENTS).map(|i| (i, format!("event {i}"))).collect();
    let mut reconnects = 0;
    for (i, o) in outcomes.iter().enumerate() {
        assert!(
            o.got == want,
            "seed {seed}: subscriber {i} saw {} events, first wrong at {:?}",
            o.got.len(),
            o.got.iter().zip(&want).position(|(a, b)| a != b)
        );
        reconnects += o.reconnects;
    }
    let metrics = common::metrics_text(&server.base).await;
    let catchups = common::sample(&metrics, "rill_slow_consumer_catchups_total").unwrap_or(0.0);
    println!(
        "seed {seed}: {EVENTS} events, {SUBSCRIBERS} subscribers, {} delivered, \
         {reconnects} reconnects, {catchups} catch-ups from the store",
        EVENTS * SUBSCRIBERS
    );
}
