//! Scenario (b): fan-out. N subscribers on one stream; one publisher posts
//! E events at R per second over one keep-alive connection, each carrying
//! its send time. Reports server CPU per delivered event (over the window
//! from the first publish to the last delivery), delivery latency
//! percentiles, and delivered vs expected.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::TcpStream;

use crate::idle::open_many;
use crate::net::{read_lines_until, request, round_trip};
use crate::procfs::cpu_split;
use crate::stats::Report;
use crate::Args;

/// Microseconds since the epoch: the clock both sides of a delivery share.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Reads one subscription until `expected` benchmark events arrived or the
/// deadline passed; returns each event's latency in µs.
async fn read_events(
    mut s: TcpStream,
    first: Vec<u8>,
    expected: usize,
    deadline: tokio::time::Instant,
) -> Vec<u64> {
    let mut lat = Vec::with_capacity(expected);
    read_lines_until(&mut s, &first, expected, deadline, |l| {
        // Data is "b <seq> <send-µs>".
        let sent = l
            .strip_prefix(b"data: b ")
            .and_then(|rest| std::str::from_utf8(rest).ok())
            .and_then(|r| r.split(' ').nth(1))
            .and_then(|t| t.parse::<u64>().ok());
        sent.map(|sent| lat.push(now_us().saturating_sub(sent)))
            .is_some()
    })
    .await;
    lat
}

pub async fn run(args: &Args) -> std::io::Result<()> {
    let addr = args.addr()?;
    let sub = args.get("sub", "/sub");
    let publish = args.get("pub", "/pub");
    let pids = args.pids()?;
    let n = args.num("n", 1000)? as usize;
    let events = args.num("events", 100)? as usize;
    let rate = args.num("rate", 10)?.max(1);
    let sources = args.sources()?;

    let open_deadline = Instant::now() + Duration::from_secs(120);
    let open = open_many(addr, &sub, n, sources.clone(), open_deadline).await;
    let held = open.len();
    // Every subscriber may take until the last publish plus this long; a
    // peer that falls behind the schedule shows as delivered < expected.
    let period = Duration::from_micros(1_000_000 / rate);
    let read_deadline =
        tokio::time::Instant::now() + period * events as u32 + Duration::from_secs(60);
    let readers: Vec<_> = open
        .into_iter()
        .map(|(s, first)| tokio::spawn(read_events(s, first, events, read_deadline)))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (user0, sys0) = cpu_split(&pids);
    let start = Instant::now();
    let mut conn = sources.connect(addr).await?;
    let mut ticks = tokio::time::interval(period);
    let mut published = 0;
    for i in 0..events {
        ticks.tick().await;
        let body = format!("b {i} {}", now_us());
        let req = request(
            "POST",
            &publish,
            &[("content-type", "text/plain")],
            body.as_bytes(),
        );
        match round_trip(&mut conn, &req).await {
            Ok(s) if (200..300).contains(&s) => published += 1,
            Ok(s) => eprintln!("publish answered {s}"),
            Err(e) => {
                eprintln!("publish failed: {e}");
                conn = sources.connect(addr).await?;
            }
        }
    }
    let mut all = Vec::with_capacity(held * events);
    for r in readers {
        if let Ok(lat) = r.await {
            all.extend(lat);
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let (user1, sys1) = cpu_split(&pids);
    let (user, sys) = (user1 - user0, sys1 - sys0);
    let cpu = user + sys;
    let delivered = all.len();
    Report::new("fanout", args)
        .deliveries(held, held * events, delivered, cpu, wall)
        .num("published", published as f64)
        .num("user_us_per_event", user * 1e6 / delivered.max(1) as f64)
        .num("sys_us_per_event", sys * 1e6 / delivered.max(1) as f64)
        .num("events_per_cpu_s", delivered as f64 / cpu.max(0.01))
        .latencies("latency", all)
        .print();
    Ok(())
}
