//! Scenario (g) reconnect storm: what a server does when every client of a
//! stream comes back at once, as after a deploy or a network blip.
//!
//! E events are published first, each answer carrying the event's id (a
//! JSON field: rill's `id`, nchan's `last_message_id`). Then N subscribers
//! connect all at once, as fast as the client can, each with a
//! `Last-Event-ID` of a random one of those events. When every one has its
//! response head (or failed), one more event is published, so that even a
//! subscriber that resumed from the last event receives one. Each
//! subscriber's first event must be the one right after the id it sent,
//! and not an `event: reset`.
//!
//! Reported: established (`200` and a full head), closed before headers
//! (the connection closed or was reset before a full response head),
//! refused (another status), connect failures, and how many resumed
//! exactly, got a reset, got another event first, or got none.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::net::{exchange, read_head, request, Lines, Sources};
use crate::procfs::cpu_seconds;
use crate::stats::{quantile, Report};
use crate::Args;

/// How one subscriber's reconnection went.
enum Outcome {
    ConnectFailed,
    ClosedBeforeHead,
    Refused,
    Open {
        head_us: u64,
        first: Option<FirstEvent>,
    },
}

/// The first event a resumed subscriber received.
struct FirstEvent {
    id: String,
    reset: bool,
}

/// Counts of outcomes, for the report.
#[derive(Default)]
struct Tally {
    connect_failed: usize,
    closed_before_head: usize,
    refused: usize,
    established: usize,
    exact: usize,
    reset: usize,
    wrong: usize,
    none: usize,
    head_us: Vec<u64>,
}

/// The value of a string field in a flat JSON object, without a parser:
/// the answers read here are a handful of fields, written by the servers
/// under test.
fn json_str(body: &[u8], field: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let key = format!("\"{field}\"");
    let after = &text[text.find(&key)? + key.len()..];
    let after = after.trim_start().strip_prefix(':')?.trim_start();
    let value = after.strip_prefix('"')?;
    Some(value[..value.find('"')?].to_owned())
}

/// A small deterministic generator (splitmix64): which event each
/// subscriber resumes from, the same in every run.
struct Picker(u64);

impl Picker {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

/// Where the storm publishes, and how it reads an event's id.
struct Publisher {
    addr: SocketAddr,
    path: String,
    id_field: String,
}

impl Publisher {
    /// Publishes `count` events over one keep-alive connection; returns
    /// their ids, in order.
    async fn publish(
        &self,
        sources: &Sources,
        from: usize,
        count: usize,
    ) -> std::io::Result<Vec<String>> {
        let mut conn = sources.connect(self.addr).await?;
        let mut ids = Vec::with_capacity(count);
        for i in from..from + count {
            let body = format!("s {i}");
            let req = request(
                "POST",
                &self.path,
                &[
                    ("content-type", "text/plain"),
                    ("accept", "application/json"),
                ],
                body.as_bytes(),
            );
            let (status, answer) = exchange(&mut conn, &req).await?;
            let id = json_str(&answer, &self.id_field).filter(|_| (200..300).contains(&status));
            ids.push(id.ok_or_else(|| {
                std::io::Error::other(format!(
                    "publish answered {status} without a {:?} field: {}",
                    self.id_field,
                    String::from_utf8_lossy(&answer)
                ))
            })?);
        }
        Ok(ids)
    }
}

/// Follows the lines of an event stream until the first event with an id
/// ends (comments and `retry:`-only blocks are not events).
#[derive(Default)]
struct FirstEventParser {
    id: Option<String>,
    reset: bool,
    done: Option<FirstEvent>,
}

impl FirstEventParser {
    fn line(&mut self, l: &[u8]) {
        if self.done.is_some() {
            return;
        }
        if l.is_empty() {
            if let Some(id) = self.id.take() {
                self.done = Some(FirstEvent {
                    id,
                    reset: self.reset,
                });
            }
            self.reset = false;
        } else if let Some(v) = l.strip_prefix(b"id:") {
            let v = v.strip_prefix(b" ").unwrap_or(v);
            self.id = Some(String::from_utf8_lossy(v).into_owned());
        } else if l == b"event: reset" || l == b"event:reset" {
            self.reset = true;
        }
    }
}

/// Reads the body until the first event with an id; `None` when `stop`
/// fires first or the connection ends.
async fn first_event<S: AsyncRead + Unpin>(
    s: &mut S,
    first: &[u8],
    stop: &mut watch::Receiver<bool>,
) -> Option<FirstEvent> {
    let mut lines = Lines::default();
    let mut parser = FirstEventParser::default();
    lines.feed(first, |l| parser.line(l));
    let mut buf = vec![0u8; 4096];
    while parser.done.is_none() {
        tokio::select! {
            read = s.read(&mut buf) => match read {
                Ok(n) if n > 0 => lines.feed(&buf[..n], |l| parser.line(l)),
                _ => break,
            },
            _ = stop.changed() => break,
        }
    }
    parser.done
}

/// One subscriber of the storm: connect, send its `Last-Event-ID`, read
/// the head (counted in `heads`), then wait for its first event.
async fn subscriber(
    sources: Arc<Sources>,
    addr: SocketAddr,
    req: Vec<u8>,
    start: Instant,
    open_deadline: tokio::time::Instant,
    heads: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) -> Outcome {
    let opened = tokio::time::timeout_at(open_deadline, async {
        let Ok(mut s) = sources.connect(addr).await else {
            return Err(Outcome::ConnectFailed);
        };
        if s.write_all(&req).await.is_err() {
            return Err(Outcome::ClosedBeforeHead);
        }
        match read_head(&mut s, &mut Vec::new()).await {
            Ok(h) if h.status == 200 => Ok((s, h.rest)),
            Ok(_) => Err(Outcome::Refused),
            Err(_) => Err(Outcome::ClosedBeforeHead),
        }
    })
    .await;
    heads.fetch_add(1, Ordering::Relaxed);
    let (mut s, rest) = match opened {
        Ok(Ok(open)) => open,
        Ok(Err(outcome)) => return outcome,
        Err(_) => return Outcome::ConnectFailed,
    };
    let head_us = start.elapsed().as_micros() as u64;
    let first = first_event(&mut s, &rest, &mut stop).await;
    Outcome::Open { head_us, first }
}

pub async fn run(args: &Args) -> std::io::Result<()> {
    let addr = args.addr()?;
    let sub = args.get("sub", "/sub");
    let pids = args.pids()?;
    let n = args.num("n", 1000)? as usize;
    let events = args.num("events", 20)?.max(1) as usize;
    let sources = args.sources()?;
    let publisher = Publisher {
        addr,
        path: args.get("pub", "/pub"),
        id_field: args.get("id-field", "id"),
    };
    let mut ids = publisher.publish(&sources, 0, events).await?;
    let mut picker = Picker(args.num("seed", 1)?);

    let (stop_tx, stop) = watch::channel(false);
    let heads = Arc::new(AtomicUsize::new(0));
    let cpu0 = cpu_seconds(&pids);
    let start = Instant::now();
    let open_deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut resumed_from = Vec::with_capacity(n);
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let k = picker.below(events);
            resumed_from.push(k);
            let req = request(
                "GET",
                &sub,
                &[("accept", "text/event-stream"), ("last-event-id", &ids[k])],
                b"",
            );
            let (sources, heads, stop) = (sources.clone(), heads.clone(), stop.clone());
            tokio::spawn(subscriber(
                sources,
                addr,
                req,
                start,
                open_deadline,
                heads,
                stop,
            ))
        })
        .collect();
    while heads.load(Ordering::Relaxed) < n && tokio::time::Instant::now() < open_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_heads_s = start.elapsed().as_secs_f64();
    ids.extend(publisher.publish(&sources, events, 1).await?);

    // Everyone that resumed has what it needs now; give the server a
    // bounded time to deliver it, then stop the rest.
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(15)).await;
        let _ = stop_tx.send(true);
    });
    let mut t = Tally::default();
    for (task, k) in tasks.into_iter().zip(resumed_from) {
        match task.await {
            Ok(Outcome::ConnectFailed) | Err(_) => t.connect_failed += 1,
            Ok(Outcome::ClosedBeforeHead) => t.closed_before_head += 1,
            Ok(Outcome::Refused) => t.refused += 1,
            Ok(Outcome::Open { head_us, first }) => {
                t.established += 1;
                t.head_us.push(head_us);
                match first {
                    None => t.none += 1,
                    Some(e) if e.reset => t.reset += 1,
                    Some(e) if e.id == ids[k + 1] => t.exact += 1,
                    Some(_) => t.wrong += 1,
                }
            }
        }
    }
    stopper.abort();
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(&pids) - cpu0;
    t.head_us.sort_unstable();
    Report::new("storm", args)
        .num("subscribers", n as f64)
        .num("events", events as f64)
        .num("established", t.established as f64)
        .num("closed_before_headers", t.closed_before_head as f64)
        .num("refused", t.refused as f64)
        .num("connect_failed", t.connect_failed as f64)
        .num("resumed_exact", t.exact as f64)
        .num("resumed_reset", t.reset as f64)
        .num("resumed_other", t.wrong as f64)
        .num("no_event", t.none as f64)
        .num("all_heads_s", all_heads_s)
        .num("head_p50_us", quantile(&t.head_us, 0.5) as f64)
        .num("head_p99_us", quantile(&t.head_us, 0.99) as f64)
        .num("head_max_us", quantile(&t.head_us, 1.0) as f64)
        .num("wall_s", wall)
        .num("server_cpu_s", cpu)
        .num("cpu_us_per_subscriber", cpu * 1e6 / n.max(1) as f64)
        .print();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_string_fields() {
        assert_eq!(
            json_str(br#"{"id": "3f.7"}"#, "id").as_deref(),
            Some("3f.7")
        );
        let nchan = br#"{"messages": 2, "last_message_id": "1732:1" }"#;
        assert_eq!(
            json_str(nchan, "last_message_id").as_deref(),
            Some("1732:1")
        );
        assert_eq!(json_str(br#"{"x":"1"}"#, "id"), None);
    }

    #[test]
    fn the_first_event_is_the_first_with_an_id() {
        let mut p = FirstEventParser::default();
        for l in [
            &b": hi"[..],
            b"",
            b"retry: 2000",
            b"",
            b"event: reset",
            b"id: 1.2",
            b"data: x",
            b"",
        ] {
            p.line(l);
        }
        let e = p.done.expect("an event");
        assert_eq!((e.id.as_str(), e.reset), ("1.2", true));
    }

    #[test]
    fn picks_stay_in_range() {
        let mut p = Picker(1);
        assert!((0..1000).map(|_| p.below(20)).all(|k| k < 20));
    }
}
