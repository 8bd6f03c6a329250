//! `GET /v1/probe`: an event stream whose every byte and moment is known,
//! for finding out what sits between rill and its readers.
//!
//! A proxy that buffers an event stream turns tokens into bursts and time
//! to first token into seconds, and nothing on the server side can see it.
//! So rill sends a fixed, documented schedule (`docs/probe.md`), with the
//! server's send time and byte offset in every event, and `rill probe`
//! reads it through whatever the user points it at: the gaps between when
//! an event was sent and when it arrived say whether events pass as they
//! are sent or are held, and how many bytes a holding buffer collects
//! before it lets go. The schedule:
//!
//! 1. at once: `retry:` and event `start` (the plan);
//! 2. `ticks` small events, one every `interval_ms`;
//! 3. padding events of `pad_step` bytes each, one every `pad_interval_ms`,
//!    until `pad_bytes` have been sent;
//! 4. `idle_secs` with nothing but a keep-alive comment every
//!    `keepalive_secs` (rill's own `:` line);
//! 5. event `after-idle`, then `done`, and the end of the body.
//!
//! The headers are those of rill's streams, so the probe tests what they
//! meet; with `x_accel_buffering=omit` the `X-Accel-Buffering: no` header
//! is left out, to learn whether the proxy buffers when it is not told not
//! to. Every parameter is bounded, the probe counts as a subscriber (the
//! same places `/sse` takes), and it ends early at shutdown.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::demo::Place;
use super::error::ApiError;
use super::sse::{negotiate, overloaded, stream_headers};
use super::AppState;
use crate::sse::{encode_event, encode_retry, EventType, KEEPALIVE};

/// The schedule a probe asks for (query parameters), with defaults and
/// bounds that keep one probe to about 30 s and a few hundred KiB.
#[derive(
    Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::IntoParams, utoipa::ToSchema,
)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct Plan {
    /// Small events after the start (0 to 100; default 10).
    pub ticks: u32,
    /// Milliseconds between small events (10 to 5000; default 250).
    pub interval_ms: u64,
    /// Bytes of padding events in all (0 to 1 MiB; default 64 KiB).
    pub pad_bytes: u64,
    /// Bytes of one padding event on the wire (128 to 64 KiB; default 1 KiB).
    pub pad_step: u64,
    /// Milliseconds between padding events (10 to 5000; default 40).
    pub pad_interval_ms: u64,
    /// Seconds of silence but keep-alives before the last events (0 to 300; default 20).
    pub idle_secs: u64,
    /// Seconds between keep-alive comments while idle (1 to 60; default 5).
    pub keepalive_secs: u64,
    /// `omit` leaves out `X-Accel-Buffering: no`; anything else sends it.
    pub x_accel_buffering: Option<String>,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            ticks: 10,
            interval_ms: 250,
            pad_bytes: 64 * 1024,
            pad_step: 1024,
            pad_interval_ms: 40,
            idle_secs: 20,
            keepalive_secs: 5,
            x_accel_buffering: None,
        }
    }
}

impl Plan {
    /// The plan, or a `400` naming the parameter out of bounds.
    fn checked(self) -> Result<Plan, ApiError> {
        let bad = |name: &str, range: &str| {
            Err(ApiError::BadRequest(format!(
                "probe parameter `{name}` must be {range}"
            )))
        };
        match () {
            _ if self.ticks > 100 => bad("ticks", "0 to 100"),
            _ if !(10..=5000).contains(&self.interval_ms) => bad("interval_ms", "10 to 5000"),
            _ if self.pad_bytes > 1024 * 1024 => bad("pad_bytes", "0 to 1048576"),
            _ if !(128..=65536).contains(&self.pad_step) => bad("pad_step", "128 to 65536"),
            _ if !(10..=5000).contains(&self.pad_interval_ms) => {
                bad("pad_interval_ms", "10 to 5000")
            }
            _ if self.idle_secs > 300 => bad("idle_secs", "0 to 300"),
            _ if !(1..=60).contains(&self.keepalive_secs) => bad("keepalive_secs", "1 to 60"),
            _ => Ok(self),
        }
    }

    fn sends_accel_header(&self) -> bool {
        self.x_accel_buffering.as_deref() != Some("omit")
    }

    /// Every step of the schedule, with its time from the start.
    fn steps(&self) -> Vec<(Duration, Step)> {
        let mut steps = vec![(Duration::ZERO, Step::Start)];
        let mut at = Duration::ZERO;
        for n in 1..=self.ticks {
            at += Duration::from_millis(self.interval_ms);
            steps.push((at, Step::Tick(n)));
        }
        let pads = self.pad_bytes.div_ceil(self.pad_step);
        for n in 1..=pads {
            at += Duration::from_millis(self.pad_interval_ms);
            steps.push((at, Step::Pad(n as u32)));
        }
        let idle_end = at + Duration::from_secs(self.idle_secs);
        let mut beat = at + Duration::from_secs(self.keepalive_secs);
        while beat < idle_end {
            steps.push((beat, Step::KeepAlive));
            beat += Duration::from_secs(self.keepalive_secs);
        }
        steps.push((idle_end, Step::AfterIdle));
        steps.push((idle_end, Step::Done));
        steps
    }
}

/// One thing the probe sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Start,
    Tick(u32),
    Pad(u32),
    KeepAlive,
    AfterIdle,
    Done,
}

/// What the body has sent so far.
struct Sent {
    started: Instant,
    bytes: u64,
    events: u32,
    keepalives: u32,
}

impl Sent {
    /// The bytes of `step`, sent now.
    fn encode(&mut self, step: Step, plan: &Plan) -> Bytes {
        let sent_ms = (self.started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
        let mut data = serde_json::json!({
            "sent_ms": sent_ms,
            "offset": self.bytes,
        });
        let (kind, phase, n) = match step {
            Step::KeepAlive => {
                self.keepalives += 1;
                return self.count(Bytes::from_static(KEEPALIVE));
            }
            Step::Start => ("probe", "start", 0),
            Step::Tick(n) => ("probe", "tick", n),
            Step::Pad(n) => ("probe", "pad", n),
            Step::AfterIdle => ("probe", "after-idle", 0),
            Step::Done => ("done", "done", 0),
        };
        data["phase"] = phase.into();
        data["n"] = n.into();
        match step {
            Step::Start => data["plan"] = serde_json::to_value(plan).unwrap_or_default(),
            Step::AfterIdle => data["keepalives"] = self.keepalives.into(),
            Step::Done => data["events"] = self.events.into(),
            _ => {}
        }
        self.events += 1;
        let id = format!("probe.{}", self.events);
        let kind = EventType::new(kind).ok();
        let mut bytes = encode_event(Some(&id), kind.as_ref(), &data.to_string());
        if step == Step::Start {
            let mut first = encode_retry(2000).to_vec();
            first.extend_from_slice(&bytes);
            bytes = Bytes::from(first);
        }
        if let Step::Pad(_) = step {
            // Pad to `pad_step` bytes on the wire, so bursts can be sized.
            let short = usize::try_from(plan.pad_step)
                .unwrap_or(0)
                .saturating_sub(bytes.len() + 10);
            data["pad"] = "x".repeat(short).into();
            bytes = encode_event(Some(&id), kind.as_ref(), &data.to_string());
        }
        self.count(bytes)
    }

    fn count(&mut self, bytes: Bytes) -> Bytes {
        self.bytes += bytes.len() as u64;
        bytes
    }
}

/// `GET /v1/probe`: the probe's schedule as an event stream.
#[utoipa::path(get, path = "/v1/probe", tag = "ops",
    params(Plan),
    responses(
        (status = 200, description = "The probe's schedule (docs/probe.md), with the headers of rill's streams. Over the subscriber limit: only a `retry:` hint, then a clean close.", content_type = "text/event-stream"),
        (status = 400, description = "A parameter is out of its bounds"),
        (status = 406, description = "Accept admits no event stream"),
    ))]
pub async fn probe(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(plan): Query<Plan>,
) -> Result<Response, ApiError> {
    negotiate(&headers)?;
    let plan = plan.checked()?;
    let Some(place) = Place::take(&st.hub) else {
        metrics::counter!(crate::metrics::REJECTED, "reason" => "subscriber_limit").increment(1);
        return Ok(overloaded(st.hub.config().retry_ms));
    };
    let accel = plan.sends_accel_header();
    let steps = plan.steps();
    let sent = Sent {
        started: Instant::now(),
        bytes: 0,
        events: 0,
        keepalives: 0,
    };
    let body = futures_util::stream::unfold(
        (steps.into_iter(), sent, plan, place),
        |(mut steps, mut sent, plan, place)| async move {
            let (at, step) = steps.next()?;
            let shutdown = place.hub().shutdown().clone();
            tokio::select! {
                _ = tokio::time::sleep_until(sent.started + at) => {}
                _ = shutdown.cancelled() => return None,
            }
            let bytes = sent.encode(step, &plan);
            Some((
                Ok::<_, std::convert::Infallible>(bytes),
                (steps, sent, plan, place),
            ))
        },
    );
    let mut res = Body::from_stream(body).into_response();
    stream_headers(&mut res);
    if !accel {
        res.headers_mut().remove("x-accel-buffering");
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_what_the_docs_say() {
        let plan = Plan {
            ticks: 2,
            interval_ms: 100,
            pad_bytes: 3000,
            pad_step: 1024,
            pad_interval_ms: 10,
            idle_secs: 3,
            keepalive_secs: 1,
            x_accel_buffering: None,
        };
        let steps = plan.steps();
        let ms = |i: usize| steps[i].0.as_millis();
        assert_eq!(steps[0], (Duration::ZERO, Step::Start));
        assert_eq!((ms(1), steps[1].1), (100, Step::Tick(1)));
        assert_eq!((ms(2), steps[2].1), (200, Step::Tick(2)));
        assert_eq!((ms(5), steps[5].1), (230, Step::Pad(3)));
        assert_eq!((ms(6), steps[6].1), (1230, Step::KeepAlive));
        assert_eq!((ms(7), steps[7].1), (2230, Step::KeepAlive));
        assert_eq!((ms(8), steps[8].1), (3230, Step::AfterIdle));
        assert_eq!(steps[9].1, Step::Done);
        assert_eq!(steps.len(), 10);
    }

    #[test]
    fn pads_are_their_step_on_the_wire_and_offsets_count_bytes() {
        let plan = Plan::default();
        let mut sent = Sent {
            started: Instant::now(),
            bytes: 0,
            events: 0,
            keepalives: 0,
        };
        let start = sent.encode(Step::Start, &plan);
        let pad = sent.encode(Step::Pad(1), &plan);
        assert!(start.starts_with(b"retry: 2000\nid: probe.1\nevent: probe\ndata: {"));
        assert!((1000..=1024).contains(&pad.len()), "{}", pad.len());
        let text = String::from_utf8(pad.to_vec()).unwrap();
        assert!(
            text.contains(&format!("\"offset\":{}", start.len())),
            "{text}"
        );
        assert_eq!(
            sent.encode(Step::KeepAlive, &plan),
            Bytes::from_static(KEEPALIVE)
        );
        assert_eq!(
            sent.bytes,
            (start.len() + pad.len() + KEEPALIVE.len()) as u64
        );
    }

    #[test]
    fn parameters_are_bounded() {
        assert!(Plan::default().checked().is_ok());
        let too = [
            Plan {
                ticks: 101,
                ..Plan::default()
            },
            Plan {
                interval_ms: 1,
                ..Plan::default()
            },
            Plan {
                pad_bytes: 2 << 20,
                ..Plan::default()
            },
            Plan {
                pad_step: 1,
                ..Plan::default()
            },
            Plan {
                idle_secs: 301,
                ..Plan::default()
            },
            Plan {
                keepalive_secs: 0,
                ..Plan::default()
            },
        ];
        for plan in too {
            assert!(plan.clone().checked().is_err(), "{plan:?}");
        }
        let omit = Plan {
            x_accel_buffering: Some("omit".into()),
            ..Plan::default()
        };
        assert!(!omit.sends_accel_header() && Plan::default().sends_accel_header());
    }
}
