//! From what arrived, and when, to what it says about the path: pure
//! functions over an [`Observation`], so every rule is tested with made-up
//! timings.
//!
//! Server and client clocks are not compared. Each event carries the
//! moment the server sent it (`sent_ms`, from the start of its response);
//! the smallest `arrived - sent` over all events is the path's best case,
//! and an event's *delay* is how much later than that best case it came.
//! Events that pass as they are sent all have a delay near zero; a buffer
//! shows as events held for hundreds of milliseconds and let go together.

use serde::Serialize;

/// An event counts as held when it came this much later than the best case.
pub const HELD_MS: f64 = 150.0;
/// Arrivals this close together came out of one buffer flush.
const SAME_FLUSH_MS: f64 = 5.0;
/// Events sent at least this far apart cannot arrive together by chance.
const APART_MS: f64 = 30.0;

/// One probe event as it arrived.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Arrival {
    /// Milliseconds from the request to the chunk that completed it.
    pub at_ms: f64,
    /// `start`, `tick`, `pad`, `after-idle` or `done`.
    pub phase: String,
    /// When the server sent it, in ms from the start of its response.
    pub sent_ms: f64,
    /// Body bytes the server had sent before it.
    pub offset: u64,
}

/// How the body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// With the probe's `done` event.
    Done,
    /// The connection closed before `done`.
    Cut,
    /// The probe's time ran out first.
    Timeout,
}

/// Everything one probe request saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Observation {
    /// The response status.
    pub status: u16,
    /// The HTTP version, as `HTTP/1.1`.
    pub version: String,
    /// Milliseconds from the request to the response head.
    pub head_ms: f64,
    /// Milliseconds to the first body byte.
    pub first_byte_ms: Option<f64>,
    /// Response headers that matter here, lower-case names.
    pub headers: Vec<(String, String)>,
    /// The probe's events, in order.
    pub events: Vec<Arrival>,
    /// When each keep-alive comment arrived.
    pub keepalives: Vec<f64>,
    /// How it ended (`None`: no body was read).
    pub ending: Option<Ending>,
    /// Milliseconds to the last byte.
    pub last_byte_ms: Option<f64>,
}

impl Observation {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether events came as they were sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pacing {
    /// Each came as it was sent.
    Streamed {
        /// The largest delay, ms.
        worst_ms: f64,
    },
    /// Some were held and let go in bursts.
    Bursts {
        /// Events that came late, or together with a later one.
        late: usize,
        /// Events seen.
        of: usize,
        /// The largest delay, ms.
        worst_ms: f64,
    },
    /// Nothing came until the response ended.
    HeldToEnd {
        /// The largest delay, ms.
        worst_ms: f64,
    },
    /// Too few events to say.
    Unknown,
}

impl Pacing {
    /// Whether events came as they were sent.
    pub fn streamed(&self) -> bool {
        matches!(self, Pacing::Streamed { .. })
    }
}

/// What became of the keep-alive comments during the idle gap.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeepAlives {
    /// They came on time and the connection outlived the gap.
    Survived {
        /// Comments seen.
        seen: usize,
        /// Comments sent.
        sent: u64,
    },
    /// The connection outlived the gap but no comment came through.
    Stripped {
        /// Comments sent.
        sent: u64,
    },
    /// They came, but only when the gap ended: held in a buffer.
    HeldBack {
        /// Comments seen.
        seen: usize,
    },
    /// The connection was closed during the gap.
    Cut {
        /// Milliseconds from the request to the last byte.
        at_ms: f64,
    },
    /// The probe had no idle gap, or never reached it.
    NotTested,
}

/// The delay of each event: how much later than the best case it came.
pub fn delays(events: &[Arrival]) -> Vec<f64> {
    let best = events
        .iter()
        .map(|e| e.at_ms - e.sent_ms)
        .fold(f64::INFINITY, f64::min);
    events.iter().map(|e| e.at_ms - e.sent_ms - best).collect()
}

/// Whether the events of `obs` came as they were sent. Two signs of a
/// buffer: events held (a delay over [`HELD_MS`]), and events sent well
/// apart that arrive together (*bunched*), which a buffer that fills fast
/// does even when it holds nothing for long.
pub fn pacing(obs: &Observation) -> Pacing {
    let events = &obs.events;
    if events.len() < 3 {
        return Pacing::Unknown;
    }
    let delay = delays(events);
    let worst_ms = delay.iter().copied().fold(0.0, f64::max);
    let bunched: Vec<bool> = events
        .windows(2)
        .map(|w| {
            w[1].sent_ms - w[0].sent_ms >= APART_MS && w[1].at_ms - w[0].at_ms <= SAME_FLUSH_MS
        })
        .collect();
    let held = delay.iter().filter(|d| **d > HELD_MS).count();
    let together = bunched.iter().filter(|b| **b).count();
    let late = (0..events.len())
        .filter(|&i| delay[i] > HELD_MS || bunched.get(i).copied().unwrap_or(false))
        .count();
    let first = events[0].at_ms;
    let last = events[events.len() - 1].at_ms;
    let span = events[events.len() - 1].sent_ms - events[0].sent_ms;
    if span > HELD_MS && last - first <= SAME_FLUSH_MS {
        return Pacing::HeldToEnd { worst_ms };
    }
    // A hiccup of the network holds one event, and the next comes with it.
    if held <= 1 && together <= (events.len() / 10).max(2) && worst_ms < 1000.0 {
        Pacing::Streamed { worst_ms }
    } else {
        Pacing::Bursts {
            late,
            of: events.len(),
            worst_ms,
        }
    }
}

/// The bytes a buffer on the path collects before it lets go: the median
/// size of the flushes that carried more than one padding event, or
/// `None` when padding events came one by one.
pub fn flush_bytes(obs: &Observation) -> Option<u64> {
    let pads: Vec<&Arrival> = obs.events.iter().filter(|e| e.phase == "pad").collect();
    // The first byte offset of each flush of several events.
    let mut flushes: Vec<(u64, usize)> = Vec::new();
    let mut starts = Vec::new();
    for (i, e) in pads.iter().enumerate() {
        let new = i == 0 || e.at_ms - pads[i - 1].at_ms > SAME_FLUSH_MS;
        if new {
            starts.push(i);
        }
    }
    for (k, &s) in starts.iter().enumerate() {
        let Some(&next) = starts.get(k + 1) else {
            break; // the last flush's end is not known
        };
        flushes.push((pads[next].offset - pads[s].offset, next - s));
    }
    let mut sizes: Vec<u64> = flushes
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(b, _)| b)
        .collect();
    sizes.sort_unstable();
    sizes.get(sizes.len() / 2).copied()
}

/// What became of the keep-alives sent every `every_ms` during the idle
/// gap, which ended with the `after-idle` event. The probe sends no other
/// comment, so every comment line seen is one of them.
pub fn keepalives(obs: &Observation, idle_ms: f64, every_ms: f64) -> KeepAlives {
    if idle_ms <= 0.0 || every_ms <= 0.0 {
        return KeepAlives::NotTested;
    }
    let Some(after) = obs.events.iter().find(|e| e.phase == "after-idle") else {
        return match obs.ending {
            Some(Ending::Cut) => KeepAlives::Cut {
                at_ms: obs.last_byte_ms.unwrap_or(obs.head_ms),
            },
            _ => KeepAlives::NotTested,
        };
    };
    let sent = ((idle_ms - 1.0) / every_ms).floor().max(0.0) as u64;
    let seen = &obs.keepalives;
    if seen.is_empty() {
        return if sent == 0 {
            KeepAlives::Survived { seen: 0, sent }
        } else {
            KeepAlives::Stripped { sent }
        };
    }
    // Held: every comment came with the event that ended the gap.
    if every_ms > APART_MS && seen.iter().all(|t| after.at_ms - t <= SAME_FLUSH_MS) {
        return KeepAlives::HeldBack { seen: seen.len() };
    }
    KeepAlives::Survived {
        seen: seen.len(),
        sent,
    }
}

/// How long the first event, which rill sends at once, waited on the way
/// beyond the best case.
pub fn first_wait(obs: &Observation) -> Option<f64> {
    obs.events.first().filter(|e| e.phase == "start")?;
    delays(&obs.events).first().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events sent every `every` ms, `bytes` apart, arriving at
    /// `arrive(i, sent)` or with the one before, as over TCP.
    fn run(
        phase: &str,
        n: usize,
        every: f64,
        bytes: u64,
        arrive: impl Fn(usize, f64) -> f64,
    ) -> Vec<Arrival> {
        let mut before = f64::MIN;
        (0..n)
            .map(|i| {
                let sent = i as f64 * every;
                before = arrive(i, sent).max(before);
                Arrival {
                    at_ms: before,
                    phase: phase.into(),
                    sent_ms: sent,
                    offset: i as u64 * bytes,
                }
            })
            .collect()
    }

    fn obs(events: Vec<Arrival>) -> Observation {
        Observation {
            status: 200,
            events,
            ending: Some(Ending::Done),
            ..Observation::default()
        }
    }

    #[test]
    fn events_as_sent_are_streamed_whatever_the_clock_offset() {
        // 40 ms of path, a little jitter, and one hiccup.
        let o = obs(run("tick", 20, 250.0, 100, |i, s| {
            s + 40.0 + (i % 3) as f64 + if i == 7 { 300.0 } else { 0.0 }
        }));
        let p = pacing(&o);
        assert!(p.streamed(), "{p:?}");
        assert_eq!(flush_bytes(&o), None);
    }

    #[test]
    fn a_buffer_of_4_kib_shows_as_bursts_and_its_size() {
        // 1 KiB pads every 40 ms; a buffer lets go after every fourth.
        let o = obs(run("pad", 32, 40.0, 1024, |i, _| {
            (i / 4 * 4 + 3) as f64 * 40.0 + 5.0
        }));
        match pacing(&o) {
            Pacing::Bursts { late, of, worst_ms } => {
                assert_eq!(of, 32);
                assert_eq!(
                    late, 24,
                    "held under {HELD_MS} ms, but three of four come with the fourth"
                );
                assert!((worst_ms - 120.0).abs() < 0.01);
            }
            p => panic!("{p:?}"),
        }
        assert_eq!(flush_bytes(&o), Some(4096));
    }

    #[test]
    fn held_until_the_end_is_told_apart() {
        let o = obs(run("tick", 10, 250.0, 100, |_, _| 2600.0));
        assert!(
            matches!(pacing(&o), Pacing::HeldToEnd { worst_ms } if (worst_ms - 2250.0).abs() < 0.01)
        );
        assert_eq!(pacing(&obs(Vec::new())), Pacing::Unknown);
    }

    fn idle(keepalives: Vec<f64>, after_at: Option<f64>, ending: Ending) -> Observation {
        let mut events = run("pad", 3, 40.0, 1024, |_, s| s + 1.0);
        if let Some(at) = after_at {
            events.push(Arrival {
                at_ms: at,
                phase: "after-idle".into(),
                sent_ms: 80.0 + 20_000.0,
                offset: 4000,
            });
        }
        Observation {
            status: 200,
            events,
            keepalives,
            ending: Some(ending),
            last_byte_ms: Some(12_000.0),
            ..Observation::default()
        }
    }

    #[test]
    fn first_event_wait_is_measured_against_the_best_case() {
        let mut events = run(
            "tick",
            5,
            250.0,
            100,
            |i, s| if i == 0 { 900.0 } else { s + 40.0 },
        );
        events[0].phase = "start".into();
        let o = obs(events);
        assert_eq!(first_wait(&o), Some(860.0));
        assert_eq!(first_wait(&obs(Vec::new())), None);
    }

    #[test]
    fn keepalives_on_time_stripped_held_or_cut() {
        let on_time = idle(vec![5081.0, 10081.0, 15081.0], Some(20081.0), Ending::Done);
        assert_eq!(
            keepalives(&on_time, 20_000.0, 5000.0),
            KeepAlives::Survived { seen: 3, sent: 3 }
        );
        let stripped = idle(vec![], Some(20081.0), Ending::Done);
        assert_eq!(
            keepalives(&stripped, 20_000.0, 5000.0),
            KeepAlives::Stripped { sent: 3 }
        );
        let held = idle(vec![20080.0, 20080.0, 20080.0], Some(20081.0), Ending::Done);
        assert_eq!(
            keepalives(&held, 20_000.0, 5000.0),
            KeepAlives::HeldBack { seen: 3 }
        );
        let cut = idle(vec![5081.0], None, Ending::Cut);
        assert_eq!(
            keepalives(&cut, 20_000.0, 5000.0),
            KeepAlives::Cut { at_ms: 12_000.0 }
        );
        assert_eq!(keepalives(&on_time, 0.0, 5000.0), KeepAlives::NotTested);
    }
}
