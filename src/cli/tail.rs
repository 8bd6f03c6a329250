//! `rill tail URL STREAM [--from ID]`: print a stream's events as they
//! arrive, parsed by rill's WHATWG parser, reconnecting like a browser.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use futures_util::StreamExt;

use super::{stream_url, CliError};
use crate::sse::{ParsedEvent, Parser};

/// Arguments of `rill tail`.
#[derive(Debug, Clone, Args)]
pub struct TailArgs {
    /// The server's base URL, e.g. http://127.0.0.1:8080.
    pub url: String,
    /// The stream.
    pub stream: String,
    /// Resume after this id (`0`: everything retained).
    #[arg(long)]
    pub from: Option<String>,
    /// One JSON object per event: {"id", "event", "data"}.
    #[arg(long)]
    pub json: bool,
    /// Stop after this many events.
    #[arg(long)]
    pub count: Option<u64>,
}

/// Prints events until the stream ends for good (`204`, or a terminal
/// event), or `--count` events were printed.
pub async fn run(args: TailArgs) -> Result<(), CliError> {
    let client = reqwest::Client::new();
    let url = stream_url(&args.url, &args.stream);
    let mut last_id = args.from.clone();
    let mut retry = Duration::from_millis(2000);
    let mut printed = 0u64;
    let mut out = std::io::stdout().lock();
    loop {
        let mut req = client.get(&url).header("accept", "text/event-stream");
        if let Some(id) = &last_id {
            req = req.header("last-event-id", id);
        }
        let res = req.send().await?;
        match res.status().as_u16() {
            204 => return Ok(()),
            200 => {}
            status => {
                return Err(CliError::Status {
                    status,
                    body: res.text().await.unwrap_or_default(),
                })
            }
        }
        let mut parser = Parser::default();
        let mut body = res.bytes_stream();
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            parser
                .feed(&chunk)
                .map_err(|e| CliError::Usage(e.to_string()))?;
            if let Some(ms) = parser.retry() {
                retry = Duration::from_millis(ms);
            }
            while let Some(ev) = parser.next_event() {
                print_event(&mut out, &ev, args.json)?;
                printed += 1;
                if args.count.is_some_and(|c| printed >= c) {
                    return Ok(());
                }
                if matches!(ev.event_type.as_str(), "done" | "error" | "end") {
                    return Ok(());
                }
            }
            if !parser.last_event_id().is_empty() {
                last_id = Some(parser.last_event_id().to_owned());
            }
        }
        tokio::time::sleep(retry).await;
    }
}

fn print_event(out: &mut impl Write, ev: &ParsedEvent, json: bool) -> std::io::Result<()> {
    if json {
        let line =
            serde_json::json!({ "id": ev.last_event_id, "event": ev.event_type, "data": ev.data });
        writeln!(out, "{line}")?;
    } else if ev.event_type == "message" {
        writeln!(out, "{}", ev.data)?;
    } else {
        writeln!(out, "[{}] {}", ev.event_type, ev.data)?;
    }
    out.flush()
}
