//! Scenario (a): memory per held SSE connection. Reads the server's RSS,
//! opens N subscriptions (each answered `200`), lets them settle, reads RSS
//! again: (after - before) / N. `--transport tls|h2c` holds them over TLS
//! or HTTP/2 instead of plain HTTP/1.1 (see `transport`).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::net::{read_head, request, Sources};
use crate::procfs::rss_bytes;
use crate::stats::Report;
use crate::transport::{Held, Transport};
use crate::Args;

/// Connections opened at once.
const OPEN_CONCURRENCY: usize = 256;

/// Runs `open` up to `n` times, [`OPEN_CONCURRENCY`] at a time, in bounded
/// time; returns what the openings that answered `200` hold.
async fn open_concurrently<T, F, Fut>(n: usize, deadline: Instant, open: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = std::io::Result<(u16, T)>> + Send + 'static,
{
    let mut held = Vec::with_capacity(n);
    let mut set = JoinSet::new();
    let mut started = 0;
    let mut told = false;
    while (started < n || !set.is_empty()) && Instant::now() < deadline {
        while started < n && set.len() < OPEN_CONCURRENCY {
            set.spawn(open());
            started += 1;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, set.join_next()).await {
            Ok(Some(Ok(Ok((200, h))))) => held.push(h),
            // The first failure says why; the count says how many.
            Ok(Some(failed)) if !told => {
                told = true;
                match failed {
                    Ok(Ok((status, _))) => eprintln!("a subscription answered {status}"),
                    Ok(Err(e)) => eprintln!("a subscription failed: {e}"),
                    Err(e) => eprintln!("a subscription task failed: {e}"),
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    held
}

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
    open_concurrently(n, deadline, || {
        let (req, sources) = (req.clone(), sources.clone());
        async move {
            let mut s = sources.connect(addr).await?;
            s.write_all(&req).await?;
            let mut buf = Vec::new();
            let head = read_head(&mut s, &mut buf).await?;
            Ok((head.status, (s, head.rest)))
        }
    })
    .await
}

/// What the idle scenario holds open.
enum Holding {
    Http1(Vec<(TcpStream, Vec<u8>)>),
    Other(Vec<Held>),
}

impl Holding {
    fn len(&self) -> usize {
        match self {
            Self::Http1(v) => v.len(),
            Self::Other(v) => v.len(),
        }
    }
}

pub async fn run(args: &Args) -> std::io::Result<()> {
    let addr = args.addr()?;
    let path = args.get("sub", "/sub");
    let pids = args.pids()?;
    let n = args.num("n", 1000)? as usize;
    let sources = args.sources()?;
    let settle = Duration::from_secs(args.num("settle-secs", 3)?);

    let kind = args.get("transport", "http1");
    let transport = match kind.as_str() {
        "http1" => None,
        other => Some(Transport::new(other, &args.get("ca", ""))?),
    };

    let before = rss_bytes(&pids);
    let deadline = Instant::now() + Duration::from_secs(args.num("open-secs", 120)?);
    let open = match transport {
        None => Holding::Http1(open_many(addr, &path, n, sources, deadline).await),
        Some(t) => Holding::Other(
            open_concurrently(n, deadline, || {
                let (t, sources, path) = (t.clone(), sources.clone(), path.clone());
                async move { t.subscribe(&sources, addr, &path).await }
            })
            .await,
        ),
    };
    let failed = n - open.len();
    tokio::time::sleep(settle).await;
    let after = rss_bytes(&pids);
    let held = open.len();
    let per = after.saturating_sub(before) as f64 / held.max(1) as f64;
    drop(open);
    let scenario = match kind.as_str() {
        "http1" => "idle".to_owned(),
        other => format!("idle-{other}"),
    };
    Report::new(&scenario, args)
        .num("connections", held as f64)
        .num("failed", failed as f64)
        .num("rss_before_kb", before as f64 / 1024.0)
        .num("rss_after_kb", after as f64 / 1024.0)
        .num("bytes_per_conn", per)
        .print();
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}
