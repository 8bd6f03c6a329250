//! Reads one probe response and notes when each thing arrived.
//!
//! The request looks like a browser's `EventSource` would (`Accept:
//! text/event-stream`, and the `Accept-Encoding` browsers send, so a proxy
//! that compresses for browsers does it here too); the body is read as it
//! comes, each chunk timed when it is handed over. Events are parsed with
//! rill's WHATWG parser; keep-alive comments, which a parser skips, are
//! counted from the raw lines.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;

use super::findings::{Arrival, Ending, Observation};
use crate::cli::{CliError, TokenArg};
use crate::sse::Parser;

/// Response headers worth reporting.
const HEADERS: [&str; 9] = [
    "content-type",
    "cache-control",
    "x-accel-buffering",
    "content-encoding",
    "transfer-encoding",
    "server",
    "via",
    "cf-ray",
    "x-cache",
];

/// Requests `url` and reads it until the probe's `done`, the end of the
/// body, or `limit`.
pub async fn observe(
    client: &reqwest::Client,
    url: &str,
    token: &TokenArg,
    limit: Duration,
) -> Result<Observation, CliError> {
    let t0 = Instant::now();
    let ms = move || t0.elapsed().as_secs_f64() * 1000.0;
    let req = client
        .get(url)
        .header("accept", "text/event-stream")
        .header("accept-encoding", "gzip, deflate, br, zstd")
        .header("cache-control", "no-cache");
    let res = tokio::time::timeout(limit, token.authorize(req).send())
        .await
        .map_err(|_| CliError::Usage(format!("{url} did not answer within {limit:?}")))??;
    let mut obs = Observation {
        status: res.status().as_u16(),
        version: format!("{:?}", res.version()),
        head_ms: ms(),
        headers: HEADERS
            .iter()
            .filter_map(|h| {
                let v = res.headers().get(*h)?.to_str().ok()?;
                Some(((*h).to_owned(), v.to_owned()))
            })
            .collect(),
        ..Observation::default()
    };
    if obs.status != 200 {
        return Ok(obs);
    }
    let mut parser = Parser::default();
    let mut lines = CommentLines::default();
    let mut body = res.bytes_stream();
    let deadline = t0 + limit;
    let ending = loop {
        let chunk = match tokio::time::timeout_at(deadline, body.next()).await {
            Err(_) => break Ending::Timeout,
            Ok(None) | Ok(Some(Err(_))) => break Ending::Cut,
            Ok(Some(Ok(chunk))) => chunk,
        };
        let at = ms();
        obs.first_byte_ms.get_or_insert(at);
        obs.last_byte_ms = Some(at);
        for _ in 0..lines.comments_in(&chunk) {
            obs.keepalives.push(at);
        }
        if parser.feed(&chunk).is_err() {
            break Ending::Cut; // not the probe's stream: nothing more to learn
        }
        let mut done = false;
        while let Some(ev) = parser.next_event() {
            if let Some(arrival) = arrival(&ev.data, at) {
                obs.events.push(arrival);
            }
            done |= ev.event_type == "done";
        }
        if done {
            break Ending::Done;
        }
    };
    obs.ending = Some(ending);
    Ok(obs)
}

/// A probe event's data (`{"phase", "sent_ms", "offset", ...}`) as an
/// arrival at `at_ms`; anything else is skipped.
fn arrival(data: &str, at_ms: f64) -> Option<Arrival> {
    let v: serde_json::Value = serde_json::from_str(data).ok()?;
    Some(Arrival {
        at_ms,
        phase: v["phase"].as_str()?.to_owned(),
        sent_ms: v["sent_ms"].as_f64()?,
        offset: v["offset"].as_u64()?,
    })
}

/// Counts lines that start with `:` across chunk boundaries. rill ends
/// lines with LF alone, so a line starts after every LF.
#[derive(Debug)]
struct CommentLines {
    at_line_start: bool,
}

impl Default for CommentLines {
    fn default() -> Self {
        Self {
            at_line_start: true,
        }
    }
}

impl CommentLines {
    fn comments_in(&mut self, chunk: &[u8]) -> usize {
        let mut n = 0;
        for &b in chunk {
            if self.at_line_start && b == b':' {
                n += 1;
            }
            self.at_line_start = b == b'\n';
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_lines_are_counted_across_chunks() {
        let mut c = CommentLines::default();
        assert_eq!(c.comments_in(b":\nid: 1\ndata: a:b\n\n:"), 2);
        assert_eq!(c.comments_in(b"\n"), 0);
        assert_eq!(c.comments_in(b":\n"), 1);
        assert_eq!(c.comments_in(b"data: x"), 0);
        assert_eq!(c.comments_in(b"\n:"), 1);
    }

    #[test]
    fn arrivals_read_the_probe_data_and_skip_the_rest() {
        let a = arrival(
            r#"{"phase":"tick","n":1,"sent_ms":250.5,"offset":120}"#,
            300.0,
        )
        .unwrap();
        assert_eq!(
            (a.phase.as_str(), a.sent_ms, a.offset, a.at_ms),
            ("tick", 250.5, 120, 300.0)
        );
        assert_eq!(arrival("hello", 1.0), None);
        assert_eq!(arrival(r#"{"phase":"tick"}"#, 1.0), None);
    }
}
