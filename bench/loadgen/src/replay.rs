//! Scenario (e) catch-up: E events are published first, then N subscribers
//! connect with `lastEventId=0` and read them all from the store. Reports
//! server CPU per replayed event: what a reconnect storm costs.

use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::idle::open_many;
use crate::net::{read_lines_until, request, round_trip, Until};
use crate::procfs::cpu_seconds;
use crate::stats::Report;
use crate::Args;

/// Reads one subscription until `expected` replayed events (data
/// `r <seq> <pad>`) arrived or the deadline passed; returns how many did.
async fn count_events(mut s: TcpStream, first: Vec<u8>, expected: usize, until: Until) -> usize {
    read_lines_until(&mut s, &first, expected, until, |l| {
        l.starts_with(b"data: r ")
    })
    .await
}

pub async fn run(args: &Args) -> std::io::Result<()> {
    let addr = args.addr()?;
    let publish = args.get("pub", "/v1/streams/replay");
    let sub = args.get("sub", "/v1/streams/replay?lastEventId=0");
    let pids = args.pids()?;
    let n = args.num("n", 1000)? as usize;
    let events = args.num("events", 1000)? as usize;
    let size = args.num("size", 100)? as usize;
    let sources = args.sources()?;

    let mut conn = sources.connect(addr).await?;
    let pad = "x".repeat(size);
    for i in 0..events {
        let body = format!("r {i} {pad}");
        let req = request(
            "POST",
            &publish,
            &[("content-type", "text/plain")],
            body.as_bytes(),
        );
        round_trip(&mut conn, &req).await?;
    }
    let cpu0 = cpu_seconds(&pids);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(120);
    let open = open_many(addr, &sub, n, sources, deadline).await;
    let held = open.len();
    let until = Until {
        deadline: tokio::time::Instant::from_std(deadline),
        quiet: Duration::from_secs(args.num("quiet-secs", 10)?),
    };
    let readers: Vec<_> = open
        .into_iter()
        .map(|(s, first)| tokio::spawn(count_events(s, first, events, until)))
        .collect();
    let mut delivered = 0;
    for r in readers {
        delivered += r.await.unwrap_or(0);
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(&pids) - cpu0;
    Report::new("replay", args)
        .deliveries(held, held * events, delivered, cpu, wall)
        .num("events", events as f64)
        .print();
    Ok(())
}
