//! Scenario (a): memory per held SSE connection. Reads the server's RSS,
//! opens N subscriptions (each answered `200`), lets them settle, reads RSS
//! again: (after - before) / N.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::net::{read_head, request, Sources};
use crate::procfs::rss_bytes;
use crate::stats::Report;
use crate::Args;

/// Connections opened at once.
const OPEN_CONCURRENCY: usize = 256;

/// Opens up to `n` SSE subscriptions to `path`, in bounded time; returns the
/// streams that answered `200` (their first body bytes are left unread).
pub async fn open_many(
    addr: std::net::SocketAddr,
    path: &str,
    n: usize,
    sources: Arc<Sources>,
    deadline: Instant,
) -> Vec<(TcpStream, Vec<u8>)> {
    let req = Arc::new(request(
        "GET",
        path,
        &[("accept", "text/event-stream")],
        b"",
    ));
    let mut open = Vec::with_capacity(n);
    let mut set = JoinSet::new();
    let mut started = 0;
    while (started < n || !set.is_empty()) && Instant::now() < deadline {
        while started < n && set.len() < OPEN_CONCURRENCY {
            let (req, sources) = (req.clone(), sources.clone());
            set.spawn(async move {
                let mut s = sources.connect(addr).await?;
                s.write_all(&req).await?;
                let mut buf = Vec::new();
                let head = read_head(&mut s, &mut buf).await?;
                Ok::<_, std::io::Error>((head.status, s, head.rest))
            });
            started += 1;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, set.join_next()).await {
            Ok(Some(Ok(Ok((200, s, rest))))) => open.push((s, rest)),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    open
}

pub async fn run(args: &Args) -> std::io::Result<()> {
    let addr = args.addr()?;
    let path = args.get("sub", "/sub");
    let pids = args.pids()?;
    let n = args.num("n", 1000)? as usize;
    let sources = args.sources()?;
    let settle = Duration::from_secs(args.num("settle-secs", 3)?);

    let before = rss_bytes(&pids);
    let deadline = Instant::now() + Duration::from_secs(args.num("open-secs", 120)?);
    let open = open_many(addr, &path, n, sources, deadline).await;
    let failed = n - open.len();
    tokio::time::sleep(settle).await;
    let after = rss_bytes(&pids);
    let held = open.len();
    let per = after.saturating_sub(before) as f64 / held.max(1) as f64;
    drop(open);
    Report::new("idle", args)
        .num("connections", held as f64)
        .num("failed", failed as f64)
        .num("rss_before_kb", before as f64 / 1024.0)
        .num("rss_after_kb", after as f64 / 1024.0)
        .num("bytes_per_conn", per)
        .print();
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}
