//! The live dashboard's data: once a second, while someone watches, a
//! snapshot of this node is published to the stream [`DASHBOARD_STREAM`].
//!
//! The dashboard page (`GET /dashboard`) is an ordinary subscriber of that
//! stream, so it gets rill's own resume and fan-out: any number of open
//! dashboards cost one encoding per second.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::generation::Generations;
use crate::hub::Hub;
use crate::ids::StreamName;
use crate::store::Draft;

/// The stream the snapshots go to. Names starting with `_` belong to rill.
pub const DASHBOARD_STREAM: &str = "_dashboard";

/// One snapshot of this node.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// Unix time, milliseconds.
    pub at_ms: u64,
    /// Streams in the store.
    pub streams: usize,
    /// Subscribers on this node.
    pub subscribers: usize,
    /// Events published per second over the last interval.
    pub events_per_sec: f64,
    /// Events written to subscribers per second over the last interval.
    pub deliveries_per_sec: f64,
    /// Events published since start.
    pub published_total: u64,
    /// Events written to subscribers since start.
    pub delivered_total: u64,
    /// Generations running on this node.
    pub generations_active: usize,
    /// Median time to first token of recent generations, in ms.
    pub ttft_p50_ms: Option<f64>,
    /// Slowest recent time to first token, in ms.
    pub ttft_max_ms: Option<f64>,
    /// The streams with the most subscribers here.
    pub top_streams: Vec<TopStream>,
}

/// A stream in [`Snapshot::top_streams`].
#[derive(Debug, Serialize)]
pub struct TopStream {
    /// The stream.
    pub name: String,
    /// Its subscribers on this node.
    pub subscribers: usize,
}

/// Publishes snapshots every `every` while the dashboard stream has
/// subscribers, until shutdown.
pub async fn run(hub: Hub, generations: Generations, every: Duration) {
    let Ok(name) = StreamName::new(DASHBOARD_STREAM) else {
        return;
    };
    let channel = hub.channel(&name);
    let watchers = channel.subscribers();
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = (Instant::now(), hub.totals());
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = hub.shutdown().cancelled() => return,
        }
        let now = (Instant::now(), hub.totals());
        if *watchers.borrow() == 0 {
            last = now;
            continue;
        }
        let snapshot = snapshot(&hub, &generations, last, now).await;
        last = now;
        let data = match serde_json::to_string(&snapshot) {
            Ok(d) => d,
            Err(_) => continue,
        };
        if let Err(e) = hub.publish(&name, &Draft::message(data), None).await {
            tracing::warn!(error = %e, "dashboard snapshot not published");
        }
    }
}

async fn snapshot(
    hub: &Hub,
    generations: &Generations,
    (t0, (p0, d0)): (Instant, (u64, u64)),
    (t1, (p1, d1)): (Instant, (u64, u64)),
) -> Snapshot {
    let secs = (t1 - t0).as_secs_f64().max(1e-3);
    let mut ttft: Vec<f64> = generations
        .recent_ttft()
        .iter()
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    ttft.sort_by(f64::total_cmp);
    let streams = hub.store().log.list().await.map(|l| l.len()).unwrap_or(0);
    Snapshot {
        at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        streams,
        subscribers: hub.subscriber_count(),
        events_per_sec: (p1 - p0) as f64 / secs,
        deliveries_per_sec: (d1 - d0) as f64 / secs,
        published_total: p1,
        delivered_total: d1,
        generations_active: generations.active(),
        ttft_p50_ms: ttft.get(ttft.len() / 2).copied(),
        ttft_max_ms: ttft.last().copied(),
        top_streams: hub
            .busiest(10)
            .into_iter()
            .map(|(name, subscribers)| TopStream {
                name: name.to_string(),
                subscribers,
            })
            .collect(),
    }
}
