//! Publish → deliver latency across two rill nodes (or one, for a baseline).
//!
//! `cargo run --release --example redis_latency -- PUBLISH_URL SUBSCRIBE_URL [COUNT]`
//!
//! Subscribes on the second node, then publishes COUNT events one at a time
//! on the first, each after the previous one arrived, and reports how long
//! each took from the start of the `POST` to its delivery on the other node,
//! and how long the `POST` itself took to be acknowledged. Bounded: at most
//! COUNT events (default 2000, at most 100000), 5 s per event, 300 s in all.
//! Only loopback URLs are accepted.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rill::sse::Parser;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let us = |d: Duration| d.as_micros();
    println!(
        "{what}: n={} p50={}us p90={}us p99={}us max={}us",
        samples.len(),
        us(percentile(&samples, 0.50)),
        us(percentile(&samples, 0.90)),
        us(percentile(&samples, 0.99)),
        us(percentile(&samples, 1.0)),
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(publish), Some(subscribe)) = (args.first(), args.get(1)) else {
        anyhow::bail!("usage: redis_latency PUBLISH_URL SUBSCRIBE_URL [COUNT]");
    };
    for url in [publish, subscribe] {
        if !url.starts_with("http://127.") {
            anyhow::bail!("{url}: only http://127.x.x.x URLs are measured");
        }
    }
    let count: usize = args.get(2).map_or(Ok(2000), |c| c.parse())?.min(100_000);
    let stream = format!("latency-{:08x}", rand::random::<u32>());
    let client = reqwest::Client::new();
    let res = client
        .get(format!("{subscribe}/v1/streams/{stream}"))
        .header("accept", "text/event-stream")
        .send()
        .await?;
    anyhow::ensure!(res.status() == 200, "subscribe answered {}", res.status());
    let mut body = res.bytes_stream();
    let mut parser = Parser::default();
    // Let the subscription reach the live edge before the first publish.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let overall = Instant::now() + Duration::from_secs(300);
    let (mut deliver, mut ack) = (Vec::with_capacity(count), Vec::with_capacity(count));
    for i in 0..count {
        anyhow::ensure!(
            Instant::now() < overall,
            "stopped after 300 s at {i} events"
        );
        let data = i.to_string();
        let start = Instant::now();
        let res = client
            .post(format!("{publish}/v1/streams/{stream}"))
            .body(data.clone())
            .send()
            .await?;
        anyhow::ensure!(res.status() == 201, "publish answered {}", res.status());
        ack.push(start.elapsed());
        loop {
            if let Some(e) = parser.next_event() {
                if e.data == data {
                    break;
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
                .await
                .map_err(|_| anyhow::anyhow!("event {i} not delivered within 5 s"))?
                .ok_or_else(|| anyhow::anyhow!("stream closed"))??;
            parser.feed(&chunk)?;
        }
        deliver.push(start.elapsed());
    }
    report("publish acknowledged", ack);
    report("publish -> delivered", deliver);
    let _ = client
        .delete(format!("{publish}/v1/streams/{stream}"))
        .send()
        .await;
    Ok(())
}
