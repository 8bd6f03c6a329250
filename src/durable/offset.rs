//! Offsets: where a reader stands in a stream.
//!
//! An offset is `<event>_<position>`: the id of the last event read and a
//! position inside the next one, each zero-padded to 16 digits, so offsets
//! of one stream sort as strings in stream order, as the protocol asks.
//! rill reads whole appends, so the position is always 0; the shape is the
//! one the protocol's reference servers give, which its conformance suite
//! takes for granted (it names the start `0000000000000000_0000000000000000`).
//! `-1` (the start) and `now` (the tail) are the protocol's two sentinels.
//! Offsets never contain `,`, `&`, `=`, `?` or `/`.

use crate::ids::EventId;

/// Digits in an offset.
const WIDTH: usize = 16;

/// The largest id an offset can carry.
const MAX: u64 = 9_999_999_999_999_999;

/// A requested offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// After this event (`0`: from the start).
    After(EventId),
    /// The tail as it is when the request is served (`now`).
    Now,
}

impl Offset {
    /// Parses a client's offset: `-1`, `now`, or one rill gave.
    pub fn parse(s: &str) -> Option<Offset> {
        match s {
            "-1" => Some(Offset::After(EventId::START)),
            "now" => Some(Offset::Now),
            _ => {
                let (id, pos) = s.split_once('_')?;
                let digits = |p: &str| p.len() == WIDTH && p.bytes().all(|b| b.is_ascii_digit());
                if !digits(id) || !digits(pos) || pos.bytes().any(|b| b != b'0') {
                    return None;
                }
                id.parse().ok().map(|n| Offset::After(EventId(n)))
            }
        }
    }
}

/// The offset after event `id`.
pub fn format(id: EventId) -> String {
    format!("{:0width$}_{:0width$}", id.0.min(MAX), 0, width = WIDTH)
}

/// The `Stream-Cursor` of a live response: the 20-second interval since
/// 2024-10-09 00:00 UTC, as the protocol's reference servers count it, and
/// always past the client's own `cursor` so a cache can never answer a
/// long-poll from its own earlier answer.
pub fn cursor(now_ms: u64, client: Option<&str>) -> String {
    const EPOCH_MS: u64 = 1_728_432_000_000;
    const INTERVAL_MS: u64 = 20_000;
    let current = now_ms.saturating_sub(EPOCH_MS) / INTERVAL_MS;
    match client.and_then(|c| c.parse::<u64>().ok()) {
        Some(c) if c >= current => {
            use rand::Rng;
            // 1 to 3600 seconds of jitter, in whole intervals.
            let jitter_secs: u64 = rand::rng().random_range(1..=3600);
            (c + jitter_secs.div_ceil(INTERVAL_MS / 1000).max(1)).to_string()
        }
        _ => current.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_sort_in_stream_order_and_parse_back() {
        let a = format(EventId(9));
        let b = format(EventId(10));
        assert!(a < b);
        assert_eq!(b, "0000000000000010_0000000000000000");
        assert_eq!(Offset::parse(&b), Some(Offset::After(EventId(10))));
        assert_eq!(
            Offset::parse("0000000000000000_0000000000000000"),
            Some(Offset::After(EventId::START))
        );
        assert_eq!(Offset::parse("-1"), Some(Offset::After(EventId::START)));
        assert_eq!(Offset::parse("now"), Some(Offset::Now));
        for bad in [
            "",
            "1",
            "abc",
            "../x",
            "0000000000000001",
            "0000000000000001_0000000000000001",
            "0000000000000001_000000000000000x",
            "-2",
            "NOW",
        ] {
            assert_eq!(Offset::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cursors_move_past_the_clients() {
        let now = 1_728_432_000_000 + 20_000 * 1000;
        assert_eq!(cursor(now, None), "1000");
        assert_eq!(cursor(now, Some("999")), "1000");
        let ahead: u64 = cursor(now, Some("1000")).parse().unwrap_or(0);
        assert!((1001..=1180).contains(&ahead), "{ahead}");
        assert_eq!(cursor(now, Some("junk")), "1000");
    }
}
