//! `rill probe URL`: is anything between rill and the browser buffering?
//!
//! The most common way event streams break in production is a proxy, load
//! balancer or CDN that holds the body back: tokens arrive in bursts, time
//! to first token grows from a fraction of a second to many seconds, and
//! nothing on either end logs an error. The probe reads rill's `/v1/probe`
//! (a schedule of events whose send times and sizes are known) through
//! whatever URL the user gives, and reports time to first byte, whether
//! events came as they were sent or in bursts, the size at which a buffer
//! lets go, whether keep-alives survive an idle gap, whether the stream was
//! compressed and whether rill's headers came through; then one verdict,
//! and the fix for the common proxies. `docs/probe.md` says how to read it.
//!
//! [`findings`] and [`verdict`] are pure (tested with made-up timings);
//! [`observe`] does the reading.

pub mod findings;
pub mod observe;
pub mod verdict;

use std::io::Write;
use std::time::Duration;

use clap::Args;

use super::{CliError, TokenArg};
use findings::{KeepAlives, Observation, Pacing};
use verdict::{Findings, Idle, Level, Verdict, FIXES};

/// Arguments of `rill probe`.
#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// Where browsers reach rill, through the proxy or CDN to test, e.g.
    /// https://chat.example (the probe reads URL/v1/probe).
    pub url: String,
    /// Seconds of silence, but for keep-alive comments, to find idle
    /// timeouts; 0 skips the gap. Raise it past a proxy's read timeout
    /// (often 60 s) to test that timeout.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=300))]
    pub idle: u64,
    /// Seconds between keep-alive comments in the idle gap.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub keepalive: u64,
    /// Small events sent one by one before the padding.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub ticks: u32,
    /// Milliseconds between small events.
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..=5000))]
    pub interval_ms: u64,
    /// Bytes of 1 KiB padding events, to find the size at which a buffer
    /// lets go.
    #[arg(long, default_value_t = 64 * 1024, value_parser = clap::value_parser!(u64).range(0..=1024 * 1024))]
    pub pad_bytes: u64,
    /// Print the findings as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    /// The token, if the server or the proxy wants one.
    pub token: TokenArg,
}

impl ProbeArgs {
    /// The probe URL with the schedule in its query; `bare` leaves out
    /// `X-Accel-Buffering` and the idle gap.
    fn url(&self, bare: bool) -> String {
        let base = self.url.trim_end_matches('/');
        let base = base.strip_suffix("/v1/probe").unwrap_or(base);
        let (idle, accel) = if bare {
            (0, "&x_accel_buffering=omit")
        } else {
            (self.idle, "")
        };
        format!(
            "{base}/v1/probe?ticks={}&interval_ms={}&pad_bytes={}&idle_secs={idle}&keepalive_secs={}{accel}",
            self.ticks, self.interval_ms, self.pad_bytes, self.keepalive
        )
    }

    /// Long enough for the whole schedule, with room for a slow path.
    fn limit(&self) -> Duration {
        let ms = u64::from(self.ticks) * self.interval_ms
            + self.pad_bytes / 1024 * 40
            + self.idle * 1000;
        Duration::from_millis(ms) + Duration::from_secs(30)
    }
}

/// Everything the probe found, as `--json` prints it.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    /// The URL read.
    pub url: String,
    /// Response status and HTTP version.
    pub status: u16,
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub version: String,
    /// With rill's headers.
    pub main: Findings,
    /// Without `X-Accel-Buffering: no`.
    pub without_x_accel_buffering: Option<Findings>,
    /// The conclusion.
    pub verdict: Verdict,
}

/// Probes, prints the report, and gives the verdict's level.
pub async fn run(args: ProbeArgs) -> Result<Level, CliError> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let (main_url, bare_url) = (args.url(false), args.url(true));
    let (main, bare) = tokio::join!(
        observe::observe(&client, &main_url, &args.token, args.limit()),
        observe::observe(&client, &bare_url, &args.token, args.limit()),
    );
    let main = main?;
    let report = report(&args, &main, bare.ok().as_ref());
    let mut out = std::io::stdout().lock();
    if args.json {
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| CliError::Usage(e.to_string()))?;
        writeln!(out, "{text}")?;
    } else {
        print(&mut out, &report, &main)?;
    }
    Ok(report.verdict.level)
}

fn report(args: &ProbeArgs, main: &Observation, bare: Option<&Observation>) -> Report {
    let idle = Idle {
        ms: args.idle as f64 * 1000.0,
        every_ms: args.keepalive as f64 * 1000.0,
    };
    let none = Idle {
        ms: 0.0,
        every_ms: 0.0,
    };
    let found = verdict::findings(main, idle);
    let bare = bare
        .filter(|b| b.status == 200)
        .map(|b| verdict::findings(b, none));
    Report {
        url: args.url(false),
        status: main.status,
        version: main.version.clone(),
        verdict: verdict::judge(&found, main, bare.as_ref()),
        main: found,
        without_x_accel_buffering: bare,
    }
}

fn print(out: &mut impl Write, r: &Report, seen: &Observation) -> std::io::Result<()> {
    let server = seen
        .header("server")
        .map(|s| format!(", server: {s}"))
        .unwrap_or_default();
    writeln!(
        out,
        "rill probe: {} ({} {}{server})",
        r.url, r.version, r.status
    )?;
    if r.status == 200 {
        let m = &r.main;
        let row = |out: &mut dyn Write, k: &str, v: String| writeln!(out, "  {k:<22}{v}");
        row(out, "response head", format!("{:.0} ms", m.head_ms))?;
        let first = m.first_byte_ms.map_or("never".into(), |t| {
            format!("{t:.0} ms (rill sends its first event at once)")
        });
        row(out, "first byte", first)?;
        row(out, "events", pacing(&m.pacing))?;
        let flush = m.flush_bytes.map_or("none seen".into(), |b| {
            format!("about every {}", verdict::size(b))
        });
        row(out, "buffer flushes", flush)?;
        row(out, "keep-alives", keepalives(&m.keepalives))?;
        row(
            out,
            "compression",
            m.compression.clone().unwrap_or_else(|| "none".into()),
        )?;
        row(
            out,
            "Cache-Control",
            m.cache_control.clone().unwrap_or_else(|| "(absent)".into()),
        )?;
        let accel = m
            .x_accel_buffering
            .clone()
            .unwrap_or_else(|| match r.verdict.proxy {
                Some("nginx") => "removed on the way (nginx reads it, then removes it)".into(),
                _ => "removed on the way".into(),
            });
        row(out, "X-Accel-Buffering", accel)?;
        if let Some(bare) = &r.without_x_accel_buffering {
            row(out, "without that header", pacing(&bare.pacing))?;
        }
    }
    let v = &r.verdict;
    let word = match v.level {
        Level::Pass => "PASS: events pass through as rill sends them",
        Level::Warn => "WARN: events pass through, but",
        Level::Fail => "FAIL: browsers will not see events as rill sends them",
    };
    writeln!(out, "\nverdict: {word}")?;
    for (level, text) in &v.findings {
        writeln!(out, "  - [{}] {text}", format!("{level:?}").to_lowercase())?;
    }
    if v.level != Level::Pass {
        writeln!(out, "\nfixes:")?;
        let first = FIXES.iter().filter(|(p, _)| Some(*p) == v.proxy);
        let rest = FIXES.iter().filter(|(p, _)| Some(*p) != v.proxy);
        for (proxy, fix) in first.chain(rest) {
            writeln!(out, "  {proxy}: {fix}")?;
        }
    }
    Ok(())
}

fn pacing(p: &Pacing) -> String {
    match p {
        Pacing::Streamed { worst_ms } => format!("as sent (worst delay {worst_ms:.0} ms)"),
        Pacing::Bursts { late, of, worst_ms } => {
            format!("in bursts: {late} of {of} late or bunched, up to {worst_ms:.0} ms")
        }
        Pacing::HeldToEnd { worst_ms } => {
            format!("held to the end (up to {:.1} s late)", worst_ms / 1000.0)
        }
        Pacing::Unknown => "too few to judge".into(),
    }
}

fn keepalives(k: &KeepAlives) -> String {
    match k {
        KeepAlives::Survived { seen, sent } => {
            format!("{seen} of {sent} came on time; the connection outlived the idle gap")
        }
        KeepAlives::Stripped { sent } => {
            format!("none of {sent} came through; the connection outlived the idle gap")
        }
        KeepAlives::HeldBack { seen } => format!("{seen} held back until the idle gap ended"),
        KeepAlives::Cut { at_ms } => {
            format!("the connection was closed {:.1} s in", at_ms / 1000.0)
        }
        KeepAlives::NotTested => "not tested (no idle gap)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        probe: ProbeArgs,
    }

    #[test]
    fn the_url_carries_the_schedule() {
        let a = Cli::parse_from(["rill", "http://h:1/", "--idle", "3", "--pad-bytes", "0"]).probe;
        assert_eq!(
            a.url(false),
            "http://h:1/v1/probe?ticks=10&interval_ms=250&pad_bytes=0&idle_secs=3&keepalive_secs=5"
        );
        let b = Cli::parse_from(["rill", "http://h:1/v1/probe"]).probe;
        assert!(b.url(true).starts_with("http://h:1/v1/probe?ticks=10&"));
        assert!(b
            .url(true)
            .ends_with("&idle_secs=0&keepalive_secs=5&x_accel_buffering=omit"));
        assert!(Cli::try_parse_from(["rill", "u", "--idle", "301"]).is_err());
    }
}
