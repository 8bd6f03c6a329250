//! Names of streams and ids of events.
//!
//! A stream name is chosen by users and appears in URLs and Redis keys, so it
//! has a small, documented grammar. An event id is a number that rill assigns
//! and that only grows within a stream. On the wire an id may carry a stream's
//! prefix (`<prefix>.<n>`): a generation's events say which generation they
//! belong to, so a browser that reconnects to `/sse` with only its
//! `Last-Event-ID` can be resumed.

use std::fmt;
use std::str::FromStr;

/// Longest stream name, in bytes.
pub const MAX_STREAM_NAME_LEN: usize = 128;

/// Why a stream name or id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The stream name does not follow the grammar.
    #[error(
        "stream names are 1 to 128 characters from A-Z a-z 0-9 _ - . and must start with a letter, digit or _"
    )]
    BadStreamName,
    /// The event id is not a number.
    #[error("event ids are decimal numbers, optionally behind a `<prefix>.`")]
    BadEventId,
}

/// A stream's name: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamName(String);

impl StreamName {
    /// Checks `name` against the grammar.
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        let ok = !name.is_empty()
            && name.len() <= MAX_STREAM_NAME_LEN
            && name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if ok {
            Ok(Self(name))
        } else {
            Err(NameError::BadStreamName)
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for StreamName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// An event's position in its stream. The first event is 1; 0 means "before
/// the first event", so resuming after 0 replays everything retained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EventId(pub u64);

impl EventId {
    /// The position before any event.
    pub const START: EventId = EventId(0);

    /// The id after this one.
    pub fn next(self) -> EventId {
        EventId(self.0 + 1)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An id as written on the wire: `n`, or `prefix.n` for streams that carry
/// a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireId {
    /// The prefix before the last `.`, if any.
    pub prefix: Option<String>,
    /// The event id.
    pub id: EventId,
}

impl FromStr for WireId {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (prefix, digits) = match s.rsplit_once('.') {
            Some((p, d)) => (Some(p.to_owned()), d),
            None => (None, s),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NameError::BadEventId);
        }
        let id = digits.parse().map_err(|_| NameError::BadEventId)?;
        Ok(WireId {
            prefix,
            id: EventId(id),
        })
    }
}

/// Formats an id for the wire with an optional prefix (an empty prefix is
/// none).
pub fn wire_id(prefix: Option<&str>, id: EventId) -> String {
    // Once per publish and per encoded event: `format!` cost as much as
    // the rest of the encoding (callgrind, publish benchmark).
    let mut digits = itoa::Buffer::new();
    let n = digits.format(id.0);
    match prefix {
        Some(p) if !p.is_empty() => {
            let mut s = String::with_capacity(p.len() + 1 + n.len());
            s.push_str(p);
            s.push('.');
            s.push_str(n);
            s
        }
        _ => n.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_name_grammar() {
        for ok in ["a", "chat-1", "user_42.events", "_x", &"a".repeat(128)] {
            assert!(StreamName::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", ".a", "a/b", "a b", "é", "a\n", &"a".repeat(129)] {
            assert!(StreamName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn wire_ids_parse_and_format() {
        let w: WireId = "17".parse().unwrap();
        assert_eq!(
            w,
            WireId {
                prefix: None,
                id: EventId(17)
            }
        );
        let w: WireId = "g7f.3".parse().unwrap();
        assert_eq!(w.prefix.as_deref(), Some("g7f"));
        assert_eq!(w.id, EventId(3));
        assert_eq!(wire_id(Some("g7f"), EventId(3)), "g7f.3");
        assert_eq!(wire_id(None, EventId(3)), "3");
        for bad in ["", "x", "1x", "a.", "-1", "99999999999999999999999"] {
            assert!(bad.parse::<WireId>().is_err(), "{bad:?}");
        }
    }
}
