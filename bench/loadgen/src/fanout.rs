//! Scenarios (b) fan-out and (f) burst: N subscribers on one stream; events
//! are posted on a fixed schedule (E events at R per second), each carrying
//! its send time. Reports server CPU per delivered event (over the window
//! from the first publish to the last delivery), deliveries per server
//! CPU-second, delivery latency percentiles, and delivered vs expected.
//!
//! One keep-alive publisher connection waits for each answer before the
//! next request, which holds 10 events/s easily. At a burst's 1,000/s the
//! answer to one publish can take longer than the 1 ms between events, so
//! `--pub-conns K` spreads the schedule over K connections (event i goes
//! on connection i mod K, not before its time); the achieved publish rate
//! is reported beside the schedule's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::TcpStream;

use crate::idle::open_many;
use crate::net::{read_lines_until, request, round_trip, Sources, Until};
use crate::procfs::cpu_split;
use crate::stats::Report;
use crate::Args;

/// Microseconds since the epoch: the clock both sides of a delivery share.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// What one subscriber saw: each event's latency (µs) and when the last
/// one arrived.
struct Seen {
    latencies: Vec<u64>,
    last: Option<Instant>,
    /// The connection, still open: it closes only after the server's CPU
    /// is read, so the measure is deliveries, not the teardown of every
    /// subscriber (which a server that notices hang-ups pays at once and
    /// one that does not, like the floor, never pays in the window).
    conn: TcpStream,
}

/// Reads one subscription until `expected` benchmark events arrived or
/// `until` says stop.
async fn read_events(mut s: TcpStream, first: Vec<u8>, expected: usize, until: Until) -> Seen {
    let mut latencies = Vec::with_capacity(expected);
    let mut last = None;
    read_lines_until(&mut s, &first, expected, until, |l| {
        // Data is "b <seq> <send-µs>".
        let sent = l
            .strip_prefix(b"data: b ")
            .and_then(|rest| std::str::from_utf8(rest).ok())
            .and_then(|r| r.split(' ').nth(1))
            .and_then(|t| t.parse::<u64>().ok());
        if let Some(sent) = sent {
            latencies.push(now_us().saturating_sub(sent));
            last = Some(Instant::now());
        }
        sent.is_some()
    })
    .await;
    Seen {
        latencies,
        last,
        conn: s,
    }
}

/// The publishing side of a run.
struct Schedule {
    addr: SocketAddr,
    path: String,
    events: usize,
    period: Duration,
    conns: usize,
}

impl Schedule {
    /// Posts every event on its connection, not before its time and not
    /// after `deadline`; returns how many were accepted and when the last
    /// answer came.
    async fn run(
        &self,
        sources: Arc<Sources>,
        start: tokio::time::Instant,
        deadline: tokio::time::Instant,
    ) -> (usize, Instant) {
        let mut tasks = Vec::with_capacity(self.conns);
        for c in 0..self.conns {
            let (sources, path) = (sources.clone(), self.path.clone());
            let (addr, events, period, conns) = (self.addr, self.events, self.period, self.conns);
            tasks.push(tokio::spawn(async move {
                let mut conn = sources.connect(addr).await?;
                let mut ok = 0;
                for i in (c..events).step_by(conns) {
                    tokio::time::sleep_until(start + period * i as u32).await;
                    let body = format!("b {i} {}", now_us());
                    let req = request(
                        "POST",
                        &path,
                        &[("content-type", "text/plain")],
                        body.as_bytes(),
                    );
                    let answer = tokio::time::timeout_at(deadline, round_trip(&mut conn, &req));
                    match answer.await {
                        Err(_) => {
                            eprintln!("publishing stopped at the deadline, after event {i}");
                            break;
                        }
                        Ok(Ok(s)) if (200..300).contains(&s) => ok += 1,
                        Ok(Ok(s)) => eprintln!("publish answered {s}"),
                        Ok(Err(e)) => {
                            eprintln!("publish failed: {e}");
                            conn = sources.connect(addr).await?;
                        }
                    }
                }
                Ok::<_, std::io::Error>(ok)
            }));
        }
        let mut published = 0;
        for t in tasks {
            match t.await {
                Ok(Ok(ok)) => published += ok,
                Ok(Err(e)) => eprintln!("publisher stopped: {e}"),
                Err(e) => eprintln!("publisher panicked: {e}"),
            }
        }
        (published, Instant::now())
    }
}

pub async fn run(args: &Args) -> std::io::Result<()> {
    let addr = args.addr()?;
    let sub = args.get("sub", "/sub");
    let pids = args.pids()?;
    let n = args.num("n", 1000)? as usize;
    let events = args.num("events", 100)? as usize;
    let rate = args.num("rate", 10)?.max(1);
    let sources = args.sources()?;
    let schedule = Schedule {
        addr,
        path: args.get("pub", "/pub"),
        events,
        period: Duration::from_micros(1_000_000 / rate),
        conns: args.num("pub-conns", 1)?.clamp(1, 64) as usize,
    };

    let open_deadline = Instant::now() + Duration::from_secs(120);
    let open = open_many(addr, &sub, n, sources.clone(), open_deadline).await;
    let held = open.len();
    // A peer that falls behind the schedule still gets its events
    // published (its answers come late) until the schedule's time plus
    // `--slack-secs`; readers stop there too, or after `--quiet-secs`
    // without a byte. Events it never got or never delivered show as
    // delivered < expected.
    let until = Until {
        deadline: tokio::time::Instant::now()
            + schedule.period * events as u32
            + Duration::from_secs(args.num("slack-secs", 300)?),
        quiet: Duration::from_secs(args.num("quiet-secs", 10)?),
    };
    let readers: Vec<_> = open
        .into_iter()
        .map(|(s, first)| tokio::spawn(read_events(s, first, events, until)))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (user0, sys0) = cpu_split(&pids);
    let start = Instant::now();
    let (published, published_at) = schedule
        .run(
            sources,
            tokio::time::Instant::from_std(start),
            until.deadline,
        )
        .await;
    let mut all = Vec::with_capacity(held * events);
    let mut last = start;
    let mut conns = Vec::with_capacity(held);
    for r in readers {
        if let Ok(seen) = r.await {
            all.extend(seen.latencies);
            last = last.max(seen.last.unwrap_or(start));
            conns.push(seen.conn);
        }
    }
    let (user1, sys1) = cpu_split(&pids);
    drop(conns);
    let (user, sys) = (user1 - user0, sys1 - sys0);
    let cpu = user + sys;
    let wall = last.max(published_at).duration_since(start).as_secs_f64();
    let publish_s = published_at.duration_since(start).as_secs_f64();
    let delivered = all.len();
    Report::new(&args.get("scenario", "fanout"), args)
        .deliveries(held, held * events, delivered, cpu, wall)
        .num("published", published as f64)
        .num("rate", rate as f64)
        .num("publisher_connections", schedule.conns as f64)
        .num(
            "publish_rate_achieved",
            published as f64 / publish_s.max(1e-3),
        )
        .num("user_us_per_event", user * 1e6 / delivered.max(1) as f64)
        .num("sys_us_per_event", sys * 1e6 / delivered.max(1) as f64)
        .num("events_per_cpu_s", delivered as f64 / cpu.max(0.01))
        .latencies("latency", all)
        .print();
    Ok(())
}
