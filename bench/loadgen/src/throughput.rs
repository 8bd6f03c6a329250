//! Scenarios (d) publish throughput and (c) token streams.
//!
//! (d) C keep-alive connections each post events back to back (so C
//! requests are in flight) for S seconds, at most `--max` in all.
//! (c) N generations started at once on rill's mock back-end with
//! `Accept: text/event-stream`; each token's arrival gap minus the mock's
//! pacing is the latency the relay added (the mock sleeps `delay` between
//! tokens, so a gap can only be longer because of the timer or the relay).
//! A calibration of the runtime's own sleep overshoot under the same load
//! shape is reported beside it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::net::{read_head, request, round_trip, Lines, Sources};
use crate::procfs::cpu_seconds;
use crate::stats::Report;
use crate::Args;

pub async fn publish(args: &Args) -> std::io::Result<()> {
    let addr = args.addr()?;
    let path = args.get("pub", "/pub");
    let pids = args.pids()?;
    let conns = args.num("conns", 16)?.max(1);
    let secs = args.num("secs", 5)?;
    let max = args.num("max", 2_000_000)?;
    let sources = Arc::new(Sources::new(4));
    let ok = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let me = [std::process::id()];
    let cpu0 = cpu_seconds(&pids);
    let own0 = cpu_seconds(&me);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (ok, sent, sources, path) = (ok.clone(), sent.clone(), sources.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let req = request("POST", &path, &[("content-type", "text/plain")], b"tick");
            let mut conn = sources.connect(addr).await?;
            while Instant::now() < deadline && sent.fetch_add(1, Ordering::Relaxed) < max {
                match round_trip(&mut conn, &req).await {
                    Ok(200..=299) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    // The server closed a keep-alive connection: open another.
                    Err(_) => conn = sources.connect(addr).await?,
                }
            }
            Ok::<_, std::io::Error>(())
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(&pids) - cpu0;
    let own = cpu_seconds(&me) - own0;
    let ok = ok.load(Ordering::Relaxed) as f64;
    Report::new("publish", args)
        .num("connections", conns as f64)
        .num("publishes_ok", ok)
        .num("wall_s", wall)
        .num("publishes_per_s", ok / wall)
        .num("server_cpu_s", cpu)
        .num("cpu_us_per_publish", cpu * 1e6 / ok.max(1.0))
        .num("client_cpu_us_per_publish", own * 1e6 / ok.max(1.0))
        .print();
    Ok(())
}

/// One generation: the arrival time of each token event, in µs since `t0`.
async fn generation(
    sources: Arc<Sources>,
    addr: std::net::SocketAddr,
    t0: Instant,
    deadline: tokio::time::Instant,
) -> std::io::Result<Vec<u64>> {
    let req = request(
        "POST",
        "/v1/generations",
        &[
            ("accept", "text/event-stream"),
            ("content-type", "application/json"),
        ],
        br#"{"prompt":"Why is the sky blue?"}"#,
    );
    let mut s = sources.connect(addr).await?;
    s.write_all(&req).await?;
    let mut buf = Vec::new();
    let head = read_head(&mut s, &mut buf).await?;
    if head.status != 200 {
        return Err(std::io::Error::other(format!("status {}", head.status)));
    }
    let mut times = Vec::with_capacity(80);
    let mut done = false;
    let mut lines = Lines::default();
    let on_line = |l: &[u8], times: &mut Vec<u64>, done: &mut bool| {
        if l.starts_with(b"id:") {
            times.push(t0.elapsed().as_micros() as u64);
        } else if l == b"event: done" || l == b"event: error" {
            // That event's id was counted; it is not a token.
            times.pop();
            *done = true;
        }
    };
    lines.feed(&head.rest, |l| on_line(l, &mut times, &mut done));
    let mut chunk = vec![0u8; 4096];
    while !done {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => lines.feed(&chunk[..n], |l| on_line(l, &mut times, &mut done)),
            _ => break,
        }
    }
    Ok(times)
}

/// How late `tasks` concurrent sleeps of `delay` wake, in µs.
async fn timer_overshoot(tasks: usize, rounds: usize, delay: Duration) -> Vec<u64> {
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            tokio::spawn(async move {
                let mut v = Vec::with_capacity(rounds);
                for _ in 0..rounds {
                    let t = Instant::now();
                    tokio::time::sleep(delay).await;
                    v.push(t.elapsed().saturating_sub(delay).as_micros() as u64);
                }
                v
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap_or_default());
    }
    all
}

pub async fn tokens(args: &Args) -> std::io::Result<()> {
    let addr = args.addr()?;
    let pids = args.pids()?;
    let n = args.num("n", 100)? as usize;
    let delay = Duration::from_millis(args.num("delay-ms", 20)?);
    let sources = args.sources()?;
    let floor = timer_overshoot(n, 20, delay).await;

    let cpu0 = cpu_seconds(&pids);
    let t0 = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let handles: Vec<_> = (0..n)
        .map(|_| tokio::spawn(generation(sources.clone(), addr, t0, deadline)))
        .collect();
    let (mut added, mut tokens, mut ok) = (Vec::new(), 0usize, 0usize);
    for h in handles {
        if let Ok(Ok(times)) = h.await {
            ok += 1;
            tokens += times.len();
            let d = delay.as_micros() as u64;
            added.extend(times.windows(2).map(|w| (w[1] - w[0]).saturating_sub(d)));
        }
    }
    let cpu = cpu_seconds(&pids) - cpu0;
    Report::new("tokens", args)
        .num("generations", n as f64)
        .num("completed", ok as f64)
        .num("tokens", tokens as f64)
        .num("delay_ms", delay.as_millis() as f64)
        .num("server_cpu_s", cpu)
        .num("cpu_us_per_token", cpu * 1e6 / tokens.max(1) as f64)
        .latencies("added", added)
        .latencies("timer_floor", floor)
        .print();
    Ok(())
}
