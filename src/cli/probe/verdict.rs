//! The probe's conclusion: what each finding means for rill's streams, one
//! plain verdict, and the fix for the proxies people put in front of rill.
//!
//! Two requests are judged together. The main one carries the headers of
//! rill's streams, so it says what a browser following rill meets. The
//! bare one leaves out `X-Accel-Buffering: no`: nginx honours that header,
//! so a path that streams only because of it is one configuration change
//! (`proxy_ignore_headers`, another proxy in front) away from buffering,
//! which is worth a warning rather than silence.

use serde::Serialize;

use super::findings::{self, KeepAlives, Observation, Pacing};

/// How bad it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Events pass through as rill sends them.
    Pass,
    /// They do, with a caveat.
    Warn,
    /// They do not: browsers see delays, bursts or cut streams.
    Fail,
}

/// What one probe request found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Findings {
    /// Milliseconds from the request to the response head.
    pub head_ms: f64,
    /// Milliseconds to the first body byte (sent at once by rill).
    pub first_byte_ms: Option<f64>,
    /// How long the first event waited on the way, beyond the best case.
    pub first_event_wait_ms: Option<f64>,
    /// Whether events came as they were sent.
    pub pacing: Pacing,
    /// Bytes a buffer on the path collects before it lets go.
    pub flush_bytes: Option<u64>,
    /// What became of the keep-alives in the idle gap.
    pub keepalives: KeepAlives,
    /// `Content-Encoding`, when the path compressed the stream.
    pub compression: Option<String>,
    /// `Cache-Control` as it arrived.
    pub cache_control: Option<String>,
    /// `X-Accel-Buffering` as it arrived.
    pub x_accel_buffering: Option<String>,
}

/// The idle gap the main request asked for.
#[derive(Debug, Clone, Copy)]
pub struct Idle {
    /// Its length, ms.
    pub ms: f64,
    /// Keep-alive interval, ms.
    pub every_ms: f64,
}

/// Reads one observation.
pub fn findings(obs: &Observation, idle: Idle) -> Findings {
    Findings {
        head_ms: obs.head_ms,
        first_byte_ms: obs.first_byte_ms,
        first_event_wait_ms: findings::first_wait(obs),
        pacing: findings::pacing(obs),
        flush_bytes: findings::flush_bytes(obs),
        keepalives: findings::keepalives(obs, idle.ms, idle.every_ms),
        compression: obs
            .header("content-encoding")
            .filter(|e| !e.eq_ignore_ascii_case("identity"))
            .map(str::to_owned),
        cache_control: obs.header("cache-control").map(str::to_owned),
        x_accel_buffering: obs.header("x-accel-buffering").map(str::to_owned),
    }
}

/// The conclusion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// The worst level found.
    pub level: Level,
    /// What is wrong or worth knowing, most important first.
    pub findings: Vec<(Level, String)>,
    /// The proxy the headers name, when they name one.
    pub proxy: Option<&'static str>,
}

/// Judges the main request (`main`, `seen`) and the bare one.
pub fn judge(main: &Findings, seen: &Observation, bare: Option<&Findings>) -> Verdict {
    let mut out: Vec<(Level, String)> = Vec::new();
    let mut say = |level, text: String| out.push((level, text));
    if seen.status != 200 {
        say(Level::Fail, format!("the probe was answered {}, not 200: is this rill (with /v1/probe), and is the URL right?", seen.status));
        return verdict(out, seen);
    }
    if !seen
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/event-stream"))
    {
        say(
            Level::Fail,
            "the response is not text/event-stream: something on the way replaced it".into(),
        );
    }
    if let Some(enc) = &main.compression {
        say(Level::Fail, format!("the stream was compressed ({enc}): a compressor holds events until its block fills; turn compression off for text/event-stream"));
    }
    if let Some(wait) = main.first_event_wait_ms.filter(|w| *w > findings::HELD_MS) {
        say(Level::Fail, format!("the first event, sent at once, waited {wait:.0} ms on the way: time to first token grows by as much"));
    }
    match &main.pacing {
        Pacing::Streamed { .. } => {}
        Pacing::Bursts { late, of, worst_ms } => say(
            Level::Fail,
            format!("events are buffered: {late} of {of} came late or in bursts, up to {:.0} ms late{}", worst_ms, flush_note(main.flush_bytes)),
        ),
        Pacing::HeldToEnd { worst_ms } => say(
            Level::Fail,
            format!("events are held until the response ends (up to {:.1} s late): the whole stream is buffered", worst_ms / 1000.0),
        ),
        Pacing::Unknown => say(Level::Fail, "too few events arrived to judge (the stream was cut or garbled)".into()),
    }
    match main.keepalives {
        KeepAlives::Cut { at_ms } => say(Level::Fail, format!("the connection was closed during the idle gap, {:.1} s in: something on the way times out idle streams, keep-alives or not", at_ms / 1000.0)),
        KeepAlives::HeldBack { seen } => say(Level::Fail, format!("the {seen} keep-alive comments were held back until the idle gap ended: they cannot keep anything open")),
        KeepAlives::Stripped { sent } => say(Level::Warn, format!("none of the {sent} keep-alive comments came through, yet the connection stayed open; a proxy that drops them may still time out a longer silence")),
        KeepAlives::Survived { .. } | KeepAlives::NotTested => {}
    }
    if !main
        .cache_control
        .as_deref()
        .is_some_and(|c| c.contains("no-cache"))
    {
        say(Level::Warn, format!("Cache-Control arrived as {:?}, not rill's `no-cache, no-transform`: a cache or CDN on the way may store or rewrite streams", main.cache_control.as_deref().unwrap_or("(absent)")));
    } else if !main
        .cache_control
        .as_deref()
        .is_some_and(|c| c.contains("no-transform"))
    {
        say(
            Level::Warn,
            "Cache-Control lost `no-transform` on the way: CDNs may compress or rewrite the stream"
                .into(),
        );
    }
    if let Some(bare) = bare {
        if main.pacing.streamed() && !bare.pacing.streamed() {
            say(Level::Warn, format!(
                "the path buffers event streams unless told not to: without rill's X-Accel-Buffering: no header events came in bursts{}; turn buffering off in the proxy itself",
                flush_note(bare.flush_bytes)
            ));
        }
    }
    verdict(out, seen)
}

fn flush_note(bytes: Option<u64>) -> String {
    bytes.map_or_else(String::new, |b| {
        format!(", a buffer let go about every {}", size(b))
    })
}

/// `4.0 KiB`, `512 B`.
pub fn size(bytes: u64) -> String {
    if bytes >= 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

fn verdict(mut findings: Vec<(Level, String)>, seen: &Observation) -> Verdict {
    findings.sort_by_key(|f| std::cmp::Reverse(f.0));
    Verdict {
        level: findings.iter().map(|f| f.0).max().unwrap_or(Level::Pass),
        findings,
        proxy: proxy(seen),
    }
}

/// The proxy the response headers name, if any.
fn proxy(seen: &Observation) -> Option<&'static str> {
    let server = seen
        .header("server")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let via = seen.header("via").unwrap_or_default().to_ascii_lowercase();
    match () {
        _ if seen.header("cf-ray").is_some() || server.contains("cloudflare") => Some("cloudflare"),
        _ if server.contains("nginx") || server.contains("openresty") => Some("nginx"),
        _ if server.contains("caddy") || via.contains("caddy") => Some("caddy"),
        _ if server.contains("haproxy") || via.contains("haproxy") => Some("haproxy"),
        _ => None,
    }
}

/// How to stop buffering, per proxy: `(name, fix)`.
pub const FIXES: [(&str, &str); 4] = [
    ("nginx", "in the location that proxies rill: `proxy_buffering off; proxy_cache off; gzip off; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_read_timeout 1h;` and no `proxy_ignore_headers X-Accel-Buffering` (deploy/nginx-rill.conf)"),
    ("caddy", "`reverse_proxy` streams text/event-stream at once; keep `flush_interval -1` if set, and leave event streams out of `encode` (e.g. `encode { match { not header Content-Type text/event-stream* } }`)"),
    ("haproxy", "HAProxy does not buffer responses, but `compression` must not list text/event-stream, and `timeout server` / `timeout tunnel` must outlast rill's keep-alive interval (e.g. `timeout tunnel 1h`)"),
    ("cloudflare", "keep `Cache-Control: no-transform` (rill sends it) so the CDN does not compress the stream, make sure no cache rule caches it, and keep rill's keep-alive under the CDN's idle timeout (100 s at Cloudflare)"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::probe::findings::{Arrival, Ending};

    fn seen(headers: &[(&str, &str)], arrive: impl Fn(usize, f64) -> f64) -> Observation {
        let mut before = f64::MIN;
        Observation {
            status: 200,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            events: (0..20)
                .map(|i| {
                    let sent = i as f64 * 40.0;
                    before = arrive(i, sent).max(before);
                    Arrival {
                        at_ms: before,
                        phase: "pad".into(),
                        sent_ms: sent,
                        offset: i as u64 * 1024,
                    }
                })
                .collect(),
            ending: Some(Ending::Done),
            ..Observation::default()
        }
    }

    const RILL: [(&str, &str); 3] = [
        ("content-type", "text/event-stream; charset=utf-8"),
        ("cache-control", "no-cache, no-transform"),
        ("server", "nginx/1.26"),
    ];
    const NO_IDLE: Idle = Idle {
        ms: 0.0,
        every_ms: 0.0,
    };

    #[test]
    fn a_clean_path_passes() {
        let o = seen(&RILL, |_, s| s + 2.0);
        let v = judge(&findings(&o, NO_IDLE), &o, Some(&findings(&o, NO_IDLE)));
        assert_eq!(v.level, Level::Pass, "{v:?}");
        assert_eq!(v.proxy, Some("nginx"));
    }

    #[test]
    fn buffering_fails_and_buffering_only_without_the_header_warns() {
        let clean = seen(&RILL, |_, s| s + 2.0);
        let buffered = seen(&RILL, |i, _| (i / 4 * 4 + 3) as f64 * 40.0);
        let v = judge(&findings(&buffered, NO_IDLE), &buffered, None);
        assert_eq!(v.level, Level::Fail);
        assert!(v.findings[0].1.contains("about every 4.0 KiB"), "{v:?}");
        let v = judge(
            &findings(&clean, NO_IDLE),
            &clean,
            Some(&findings(&buffered, NO_IDLE)),
        );
        assert_eq!(v.level, Level::Warn);
        assert!(v.findings[0].1.contains("unless told not to"), "{v:?}");
    }

    #[test]
    fn compression_a_lost_no_transform_and_a_wrong_status_are_named() {
        let mut headers = RILL.to_vec();
        headers[1] = ("cache-control", "no-cache");
        headers.push(("content-encoding", "gzip"));
        let o = seen(&headers, |_, s| s + 2.0);
        let v = judge(&findings(&o, NO_IDLE), &o, None);
        assert_eq!(v.level, Level::Fail);
        assert!(
            v.findings.iter().any(|f| f.1.contains("compressed (gzip)")),
            "{v:?}"
        );
        assert!(
            v.findings
                .iter()
                .any(|f| f.0 == Level::Warn && f.1.contains("no-transform")),
            "{v:?}"
        );
        let refused = Observation {
            status: 502,
            ..Observation::default()
        };
        let v = judge(&findings(&refused, NO_IDLE), &refused, None);
        assert_eq!(v.level, Level::Fail);
        assert!(v.findings[0].1.contains("502"));
    }
}
