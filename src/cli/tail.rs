//! `rill tail URL STREAM [--from ID]`: print a stream's events as they
//! arrive, parsed by rill's WHATWG parser, reconnecting like a browser.
//!
//! A generation's stream (`gen-*`) is printed as text a person reads by
//! default; other streams one event per line. The reading loop here is
//! shared with `rill generate`, which reads the same kind of stream.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use futures_util::StreamExt;

use super::print::{Format, Printer};
use super::{check, stream_url, CliError, TokenArg};
use crate::sse::{ParsedEvent, Parser};

/// Event types after which a stream sends nothing more: a generation's
/// `done` or `failed`, a deleted stream's `end`.
pub const TERMINAL_EVENTS: [&str; 3] = ["done", "failed", "end"];

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
    /// Print as a person reads it: message data back to back, flushed as it
    /// arrives; other events on stderr as `[event] data`. The default for
    /// generations (`gen-*` streams).
    #[arg(long, conflicts_with_all = ["lines", "json"])]
    pub text: bool,
    /// One line per event: its data, or `[event] data` for types other than
    /// `message`. The default for streams other than `gen-*`.
    #[arg(long, conflicts_with = "json")]
    pub lines: bool,
    /// One JSON object per event: {"id", "event", "data"}.
    #[arg(long)]
    pub json: bool,
    /// Stop after this many events.
    #[arg(long)]
    pub count: Option<u64>,
    #[command(flatten)]
    /// The token, for a server with auth on.
    pub token: TokenArg,
}

impl TailArgs {
    /// The output format the flags and the stream's name choose.
    pub fn format(&self) -> Format {
        match (self.text, self.lines, self.json) {
            (true, _, _) => Format::Text,
            (_, true, _) => Format::Lines,
            (_, _, true) => Format::Json,
            _ if self.stream.starts_with("gen-") => Format::Text,
            _ => Format::Lines,
        }
    }
}

/// Prints events until the stream ends for good (`204`, or a terminal
/// event), or `--count` events were printed. A closed stdout (`| head`)
/// ends it successfully.
pub async fn run(args: TailArgs) -> Result<(), CliError> {
    let mut printer = Printer::new(
        args.format(),
        std::io::stdout().lock(),
        std::io::stderr().lock(),
    );
    let mut reader = Reader::new(args.from.clone(), args.count);
    let url = stream_url(&args.url, &args.stream);
    match reader
        .follow(&reqwest::Client::new(), &url, &args.token, &mut printer)
        .await
    {
        Err(e) if e.is_broken_pipe() => Ok(()),
        other => other.map(drop),
    }
}

/// How reading a stream stopped.
#[derive(Debug)]
pub enum Stop {
    /// A terminal event (see [`TERMINAL_EVENTS`]).
    Terminal(ParsedEvent),
    /// `--count` events were printed.
    Count,
    /// The response body ended; a reader may reconnect.
    BodyEnded,
    /// The server answered `204`: the stream has ended for good.
    NoContent,
}

/// A reader of one stream: where it is, and when to reconnect.
#[derive(Debug)]
pub struct Reader {
    /// The id to resume after.
    pub last_id: Option<String>,
    retry: Duration,
    printed: u64,
    count: Option<u64>,
}

impl Reader {
    /// A reader that resumes after `from` and stops after `count` events.
    pub fn new(from: Option<String>, count: Option<u64>) -> Self {
        Self {
            last_id: from,
            retry: Duration::from_millis(2000),
            printed: 0,
            count,
        }
    }

    /// Reads `url`, reconnecting with `Last-Event-ID` after the server's
    /// `retry:` delay, until anything but the end of a body stops it.
    pub async fn follow<O: Write, E: Write>(
        &mut self,
        client: &reqwest::Client,
        url: &str,
        token: &TokenArg,
        printer: &mut Printer<O, E>,
    ) -> Result<Stop, CliError> {
        loop {
            let mut req = client.get(url).header("accept", "text/event-stream");
            if let Some(id) = &self.last_id {
                req = req.header("last-event-id", id);
            }
            let res = check(token.authorize(req).send().await?, token).await?;
            if res.status() == reqwest::StatusCode::NO_CONTENT {
                return Ok(Stop::NoContent);
            }
            match self.read(res, printer).await? {
                Stop::BodyEnded => tokio::time::sleep(self.retry).await,
                stop => return Ok(stop),
            }
        }
    }

    /// Prints the events of one response body.
    pub async fn read<O: Write, E: Write>(
        &mut self,
        res: reqwest::Response,
        printer: &mut Printer<O, E>,
    ) -> Result<Stop, CliError> {
        let mut parser = Parser::default();
        let mut body = res.bytes_stream();
        // A cut connection is a body that ended: the caller reconnects.
        while let Some(Ok(chunk)) = body.next().await {
            parser
                .feed(&chunk)
                .map_err(|e| CliError::Usage(e.to_string()))?;
            if let Some(ms) = parser.retry() {
                self.retry = Duration::from_millis(ms);
            }
            while let Some(ev) = parser.next_event() {
                printer.event(&ev)?;
                self.printed += 1;
                if !ev.last_event_id.is_empty() {
                    self.last_id = Some(ev.last_event_id.clone());
                }
                if TERMINAL_EVENTS.contains(&ev.event_type.as_str()) {
                    return Ok(Stop::Terminal(ev));
                }
                if self.count.is_some_and(|c| self.printed >= c) {
                    return Ok(Stop::Count);
                }
            }
        }
        Ok(Stop::BodyEnded)
    }
}
