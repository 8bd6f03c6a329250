//! Appended bytes to rill events, and events back to what readers get.
//!
//! One append is one event, so an offset (an event id) always falls
//! between appends:
//! - a byte stream's append is the event's data when the bytes are UTF-8
//!   without a CR (SSE carries every other text exactly); otherwise an
//!   event `bytes` whose data is their base64;
//! - a JSON stream's append is the JSON array of its messages (a body that
//!   is an array is flattened one level, as the protocol says), so rill
//!   subscribers get one valid JSON array per append;
//! - closing without data is an empty terminal event `closed`; closing
//!   with a final append makes that append's event terminal.
//!
//! A rill stream that the protocol did not make (a generation's, or one
//! published to `/v1/streams`) reads as JSON messages, one per event:
//! `{"id", "event", "data"}`. `data` is a `message` event's text as a
//! string, always; for other event types it is JSON when the event's data
//! is a JSON object or array, else a string.

use base64::Engine as _;
use serde_json::value::RawValue;

use crate::sse::{EventType, ParsedEvent, Parser};
use crate::store::{Draft, Record};

/// The event type of an append whose bytes travel as base64.
pub const BYTES_EVENT: &str = "bytes";

/// The event type of a close without data.
pub const CLOSE_EVENT: &str = "closed";

/// Why a body cannot be appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// A JSON stream got something that is not JSON.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// A JSON stream got `[]` to append.
    #[error("empty JSON arrays cannot be appended: they hold no message")]
    EmptyArray,
}

/// How a stream's events read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Bytes, as appended.
    Bytes,
    /// JSON messages, as appended.
    Json,
    /// A rill stream: one JSON message per event.
    Rill,
}

impl View {
    /// Whether reads answer a JSON array.
    pub fn is_json(self) -> bool {
        !matches!(self, View::Bytes)
    }
}

/// The event for one append of `body`; `None` for a JSON array with no
/// message (allowed when a stream is created, refused on append).
pub fn draft(json: bool, body: &[u8], terminal: bool) -> Result<Option<Draft>, BodyError> {
    let data = if json {
        match json_messages(body)? {
            Some(d) => d,
            None => return Ok(None),
        }
    } else {
        return Ok(Some(bytes_draft(body, terminal)));
    };
    Ok(Some(Draft {
        event_type: None,
        data,
        terminal,
    }))
}

/// The terminal event of a close without data.
pub fn close_draft() -> Draft {
    Draft {
        event_type: EventType::new(CLOSE_EVENT).ok(),
        data: String::new(),
        terminal: true,
    }
}

fn bytes_draft(body: &[u8], terminal: bool) -> Draft {
    match std::str::from_utf8(body) {
        Ok(text) if !text.contains('\r') => Draft {
            event_type: None,
            data: text.to_owned(),
            terminal,
        },
        _ => Draft {
            event_type: EventType::new(BYTES_EVENT).ok(),
            data: base64::engine::general_purpose::STANDARD.encode(body),
            terminal,
        },
    }
}

/// The messages of a JSON body as one JSON array text; `None` for `[]`.
fn json_messages(body: &[u8]) -> Result<Option<String>, BodyError> {
    let text = std::str::from_utf8(body).map_err(|e| BodyError::InvalidJson(e.to_string()))?;
    let bad = |e: serde_json::Error| BodyError::InvalidJson(e.to_string());
    let value: &RawValue = serde_json::from_str(text).map_err(bad)?;
    let raw = value.get();
    let messages: Vec<&RawValue> = if raw.starts_with('[') {
        serde_json::from_str(raw).map_err(bad)?
    } else {
        vec![value]
    };
    if messages.is_empty() {
        return Ok(None);
    }
    let mut out = String::with_capacity(raw.len() + 2);
    out.push('[');
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // A CR can only be whitespace between tokens in valid JSON; SSE
        // would turn it into a line break, so it becomes a space.
        out.push_str(&m.get().replace('\r', " "));
    }
    out.push(']');
    Ok(Some(out))
}

/// A copy of a stored event for a fork: the same event, never terminal
/// (a fork starts open). A close without data stays in place as an empty
/// `closed` event, so the fork's ids stay those of its source.
pub fn copy(ev: &ParsedEvent) -> Draft {
    Draft {
        event_type: (ev.event_type != "message")
            .then(|| EventType::new(ev.event_type.clone()).ok())
            .flatten(),
        data: ev.data.clone(),
        terminal: false,
    }
}

/// The event holding the first `n` messages (JSON) or bytes of `piece`,
/// for a fork that diverges inside an append; `None` when `n` names a
/// position past the piece's end.
pub fn head_of(piece: &Piece, n: usize) -> Option<Draft> {
    let body = match piece {
        Piece::Bytes(b) => b.get(..n)?.to_vec(),
        Piece::Json(inner) => {
            let array = format!("[{inner}]");
            let all: Vec<&RawValue> = serde_json::from_str(&array).ok()?;
            let kept = all.get(..n)?;
            let joined: Vec<&str> = kept.iter().map(|m| m.get()).collect();
            format!("[{}]", joined.join(",")).into_bytes()
        }
        Piece::Nothing => return None,
    };
    let json = matches!(piece, Piece::Json(_));
    draft(json, &body, false).unwrap_or_default()
}

/// How many units a fork's sub-offset counts in `piece`: messages of a
/// JSON append, bytes of any other.
pub fn units(piece: &Piece) -> usize {
    match piece {
        Piece::Bytes(b) => b.len(),
        Piece::Json(inner) => {
            serde_json::from_str::<Vec<&RawValue>>(&format!("[{inner}]")).map_or(0, |v| v.len())
        }
        Piece::Nothing => 0,
    }
}

/// What one stored event gives a reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Bytes of a byte stream.
    Bytes(Vec<u8>),
    /// JSON messages, comma-separated, without the brackets.
    Json(String),
    /// Nothing (a close without data).
    Nothing,
}

/// Longest line of an event rill stored; the store's own limit is far below.
pub const MAX_LINE: usize = 64 * 1024 * 1024;

/// A stored event as rill encoded it: its type, data and id.
pub fn parse(record: &Record) -> Option<ParsedEvent> {
    let mut parser = Parser::new(MAX_LINE);
    // Records hold whole events rill encoded.
    let _ = parser.feed(&record.frame);
    parser.next_event()
}

/// Decodes one stored event as `view` reads it.
pub fn decode(view: View, record: &Record) -> Piece {
    parse(record).map_or(Piece::Nothing, |ev| decode_event(view, ev))
}

/// Decodes one event, as parsed from what rill sent, as `view` reads it.
pub fn decode_event(view: View, ev: ParsedEvent) -> Piece {
    match view {
        View::Bytes if ev.event_type == CLOSE_EVENT && ev.data.is_empty() => Piece::Nothing,
        View::Bytes if ev.event_type == BYTES_EVENT => Piece::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(ev.data.as_bytes())
                .unwrap_or_default(),
        ),
        View::Bytes => Piece::Bytes(ev.data.into_bytes()),
        View::Json => {
            let inner = ev
                .data
                .strip_prefix('[')
                .and_then(|d| d.strip_suffix(']'))
                .unwrap_or_default();
            if inner.trim().is_empty() {
                Piece::Nothing
            } else {
                Piece::Json(inner.to_owned())
            }
        }
        View::Rill => {
            // A `message` is text (a token, a published string): kept as
            // it is, whatever it looks like. Typed events carry JSON.
            let data = ev.data.trim_start();
            let json =
                ev.event_type != "message" && (data.starts_with('{') || data.starts_with('['));
            let data = if json {
                serde_json::from_str::<serde_json::Value>(&ev.data)
                    .unwrap_or(serde_json::Value::String(ev.data.clone()))
            } else {
                serde_json::Value::String(ev.data.clone())
            };
            let message = serde_json::json!({
                "id": ev.last_event_id,
                "event": ev.event_type,
                "data": data,
            });
            Piece::Json(message.to_string())
        }
    }
}

/// A reader's body, built piece by piece.
#[derive(Debug, Default)]
pub struct Body {
    bytes: Vec<u8>,
    messages: usize,
}

impl Body {
    /// Adds a piece.
    pub fn push(&mut self, piece: Piece) {
        match piece {
            Piece::Bytes(b) => self.bytes.extend_from_slice(&b),
            Piece::Json(m) => {
                if self.messages > 0 {
                    self.bytes.push(b',');
                }
                self.bytes.extend_from_slice(m.as_bytes());
                self.messages += 1;
            }
            Piece::Nothing => {}
        }
    }

    /// Bytes so far (for a page's size limit).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The body: the bytes, or for JSON views the array of the messages.
    pub fn finish(self, view: View) -> Vec<u8> {
        if view.is_json() {
            let mut out = Vec::with_capacity(self.bytes.len() + 2);
            out.push(b'[');
            out.extend_from_slice(&self.bytes);
            out.push(b']');
            out
        } else {
            self.bytes
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::EventId;

    fn stored(d: &Draft) -> Record {
        Record {
            id: EventId(1),
            frame: d.encode(Some("p"), EventId(1)),
            terminal: d.terminal,
        }
    }

    fn round_trip(view: View, json: bool, body: &[u8]) -> Vec<u8> {
        let d = draft(json, body, false).ok().flatten().expect("a draft");
        let mut b = Body::default();
        b.push(decode(view, &stored(&d)));
        b.finish(view)
    }

    #[test]
    fn bytes_come_back_exactly() {
        for body in [
            &b"hello"[..],
            b"line\nbreaks\n\n",
            b"\r\n crlf \r",
            b"\x00\xff\xfe binary",
            b" leading space",
            "ünïcode".as_bytes(),
        ] {
            assert_eq!(round_trip(View::Bytes, false, body), body, "{body:?}");
        }
    }

    #[test]
    fn json_bodies_are_flattened_one_level() {
        assert_eq!(round_trip(View::Json, true, br#"{"a":1}"#), br#"[{"a":1}]"#);
        assert_eq!(
            round_trip(View::Json, true, b"[[1,2], [3]]"),
            b"[[1,2],[3]]"
        );
        assert_eq!(round_trip(View::Json, true, b"[[[1]]]"), b"[[[1]]]");
        assert_eq!(round_trip(View::Json, true, b"\"s\""), b"[\"s\"]");
        assert!(matches!(draft(true, b"[]", false), Ok(None)));
        assert!(matches!(
            draft(true, b"{oops", false),
            Err(BodyError::InvalidJson(_))
        ));
    }

    #[test]
    fn a_fork_keeps_the_head_of_an_append() {
        let json = Piece::Json("1,{\"a\":[2,3]},4".into());
        assert_eq!(units(&json), 3);
        let d = head_of(&json, 2).expect("two messages");
        assert_eq!(d.data, "[1,{\"a\":[2,3]}]");
        assert!(head_of(&json, 4).is_none());
        assert!(head_of(&json, 0).is_none(), "nothing to keep");
        let bytes = Piece::Bytes(b"hello".to_vec());
        assert_eq!(head_of(&bytes, 2).map(|d| d.data), Some("he".into()));
        assert!(head_of(&bytes, 6).is_none());
        assert!(head_of(&Piece::Nothing, 1).is_none());
    }

    #[test]
    fn a_close_reads_as_nothing() {
        let r = stored(&close_draft());
        assert_eq!(decode(View::Bytes, &r), Piece::Nothing);
        assert_eq!(decode(View::Json, &r), Piece::Nothing);
    }

    #[test]
    fn rill_events_read_as_messages() {
        let d = Draft {
            event_type: EventType::new("token").ok(),
            data: r#"{"text":"Hi"}"#.into(),
            terminal: false,
        };
        let Piece::Json(m) = decode(View::Rill, &stored(&d)) else {
            panic!("a message");
        };
        let v: serde_json::Value = serde_json::from_str(&m).unwrap_or_default();
        assert_eq!(v["event"], "token");
        assert_eq!(v["id"], "p.1");
        assert_eq!(v["data"]["text"], "Hi");
        // A token that looks like JSON stays the text it is.
        let token = Draft::message(" [1, 2]");
        let Piece::Json(m) = decode(View::Rill, &stored(&token)) else {
            panic!("a message");
        };
        let v: serde_json::Value = serde_json::from_str(&m).unwrap_or_default();
        assert_eq!(v["data"], " [1, 2]");
    }
}
