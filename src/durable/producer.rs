//! Idempotent producers and `Stream-Seq`: which appends to accept.
//!
//! A producer sends `(id, epoch, seq)` with each request. The stream keeps,
//! per producer, the epoch and the last sequence number accepted; a request
//! is new, a duplicate of one already stored, a zombie of an older epoch,
//! or one that skipped ahead. Retries are also deduplicated by the store's
//! idempotency keys (see `http::durable`), the mechanism rill's own
//! `Idempotency-Key` uses, so a retry whose first attempt was stored but
//! never recorded here still stores nothing twice.

use serde::{Deserialize, Serialize};

/// Largest epoch or sequence number: 2^53 - 1, for JavaScript clients.
pub const MAX_NUMBER: u64 = (1 << 53) - 1;

/// Most producers remembered per stream; the one unheard from longest is
/// forgotten first (and is then treated as new).
pub const MAX_PRODUCERS: usize = 1024;

/// A producer's identity and position, as sent in one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// `Producer-Id`.
    pub id: String,
    /// `Producer-Epoch`.
    pub epoch: u64,
    /// `Producer-Seq`.
    pub seq: u64,
}

/// What a stream remembers of one producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerState {
    /// Its current epoch.
    pub epoch: u64,
    /// The last sequence number accepted in that epoch.
    pub seq: u64,
    /// When it last wrote, in milliseconds since the Unix epoch.
    pub used_ms: u64,
}

/// The verdict on a producer's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New data: store it.
    Accept,
    /// Already stored: answer success and store nothing. Carries the last
    /// sequence number accepted.
    Duplicate(u64),
    /// An older epoch than the stream's: fenced (`403`). Carries the
    /// current epoch.
    StaleEpoch(u64),
    /// A new epoch must start at sequence 0 (`400`).
    EpochNotAtZero,
    /// A sequence number skipped ahead (`409`): carries the one expected.
    Gap(u64),
}

/// Judges `stamp` against what the stream knows of its producer.
pub fn judge(known: Option<&ProducerState>, stamp: &Stamp) -> Verdict {
    let Some(state) = known else {
        return if stamp.seq == 0 {
            Verdict::Accept
        } else {
            Verdict::Gap(0)
        };
    };
    if stamp.epoch < state.epoch {
        return Verdict::StaleEpoch(state.epoch);
    }
    if stamp.epoch > state.epoch {
        return if stamp.seq == 0 {
            Verdict::Accept
        } else {
            Verdict::EpochNotAtZero
        };
    }
    if stamp.seq <= state.seq {
        Verdict::Duplicate(state.seq)
    } else if stamp.seq == state.seq + 1 {
        Verdict::Accept
    } else {
        Verdict::Gap(state.seq + 1)
    }
}

/// Parses `Producer-Epoch` or `Producer-Seq`: a decimal integer from 0 to
/// 2^53 - 1.
pub fn number(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|n| *n <= MAX_NUMBER)
}

/// Records an accepted `stamp` in `producers`, forgetting the producer
/// unheard from longest when there are too many.
pub fn record(
    producers: &mut std::collections::BTreeMap<String, ProducerState>,
    stamp: &Stamp,
    now_ms: u64,
) {
    producers.insert(
        stamp.id.clone(),
        ProducerState {
            epoch: stamp.epoch,
            seq: stamp.seq,
            used_ms: now_ms,
        },
    );
    while producers.len() > MAX_PRODUCERS {
        let oldest = producers
            .iter()
            .min_by_key(|(_, s)| s.used_ms)
            .map(|(k, _)| k.clone());
        match oldest {
            Some(k) => producers.remove(&k),
            None => break,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(epoch: u64, seq: u64) -> Stamp {
        Stamp {
            id: "p".into(),
            epoch,
            seq,
        }
    }

    #[test]
    fn the_protocols_table() {
        let s = ProducerState {
            epoch: 2,
            seq: 5,
            used_ms: 0,
        };
        assert_eq!(judge(None, &stamp(0, 0)), Verdict::Accept);
        assert_eq!(judge(None, &stamp(3, 0)), Verdict::Accept);
        assert_eq!(judge(None, &stamp(0, 1)), Verdict::Gap(0));
        assert_eq!(judge(Some(&s), &stamp(1, 9)), Verdict::StaleEpoch(2));
        assert_eq!(judge(Some(&s), &stamp(3, 0)), Verdict::Accept);
        assert_eq!(judge(Some(&s), &stamp(3, 1)), Verdict::EpochNotAtZero);
        assert_eq!(judge(Some(&s), &stamp(2, 5)), Verdict::Duplicate(5));
        assert_eq!(judge(Some(&s), &stamp(2, 0)), Verdict::Duplicate(5));
        assert_eq!(judge(Some(&s), &stamp(2, 6)), Verdict::Accept);
        assert_eq!(judge(Some(&s), &stamp(2, 8)), Verdict::Gap(6));
    }

    #[test]
    fn numbers_are_bounded_decimals() {
        assert_eq!(number("0"), Some(0));
        assert_eq!(number("9007199254740991"), Some(MAX_NUMBER));
        for bad in ["", "-1", "1.5", "abc", "9007199254740992", " 1", "+1"] {
            assert_eq!(number(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_longest_silent_producer_is_forgotten() {
        let mut m = std::collections::BTreeMap::new();
        for i in 0..=MAX_PRODUCERS {
            let s = Stamp {
                id: format!("p{i}"),
                epoch: 0,
                seq: 0,
            };
            record(&mut m, &s, i as u64 + 1);
        }
        assert_eq!(m.len(), MAX_PRODUCERS);
        assert!(!m.contains_key("p0"));
    }
}
