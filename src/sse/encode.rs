//! Turning an event into the bytes of the wire, once.
//!
//! Rules (WHATWG HTML, "server-sent events", and the bug trackers of other
//! servers):
//! - data is split on CRLF, LF and lone CR, and only on those (never on
//!   U+2028, NEL or form feed); each piece becomes its own `data:` line;
//! - every `data:` line is written as `data: ` with the space, because a
//!   parser strips exactly one leading space and a token's own leading space
//!   must survive;
//! - lines end in LF alone (CRLF broke some JavaScript clients);
//! - an empty value is one `data: ` line, so the browser dispatches `""`;
//!   a value that ends in a line ending gets a final empty `data: ` line so
//!   the ending is kept.

use bytes::{BufMut, Bytes, BytesMut};

use super::field::{Comment, EventType};

/// Encodes one event. `id` must be single-line: callers pass ids rill made
/// (digits and a checked prefix), never client text.
pub fn encode_event(id: Option<&str>, event_type: Option<&EventType>, data: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(data.len() + 32);
    if let Some(id) = id {
        debug_assert!(!id.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)));
        buf.put_slice(b"id: ");
        buf.put_slice(id.as_bytes());
        buf.put_u8(b'\n');
    }
    if let Some(t) = event_type {
        buf.put_slice(b"event: ");
        buf.put_slice(t.as_str().as_bytes());
        buf.put_u8(b'\n');
    }
    for line in split_lines(data) {
        buf.put_slice(b"data: ");
        buf.put_slice(line.as_bytes());
        buf.put_u8(b'\n');
    }
    buf.put_u8(b'\n');
    buf.freeze()
}

/// Encodes a `:` comment block, such as the keep-alive.
pub fn encode_comment(comment: &Comment) -> Bytes {
    let mut buf = BytesMut::with_capacity(comment.as_str().len() + 4);
    buf.put_slice(b": ");
    buf.put_slice(comment.as_str().as_bytes());
    buf.put_slice(b"\n\n");
    buf.freeze()
}

/// Encodes a `retry:` hint, telling the browser how long to wait before it
/// reconnects. The line has no blank line of its own: a `retry:` field
/// takes effect when its line is read, and several popular clients
/// dispatch an empty event on every blank line (or ignore a `retry:` in a
/// block without data), so it rides in front of the next event's block.
pub fn encode_retry(millis: u64) -> Bytes {
    Bytes::from(format!("retry: {millis}\n"))
}

/// The keep-alive: one comment line, without a blank line after it (a
/// blank line makes several popular clients dispatch an empty event).
pub const KEEPALIVE: &[u8] = b":\n";

/// Splits on CRLF, LF and lone CR. Always yields at least one piece, and a
/// trailing line ending yields a final empty piece.
pub fn split_lines(data: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(s)
            }
            Some(i) => {
                let skip = if s[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&s[i + skip..]);
                Some(&s[..i])
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(data: &str) -> String {
        String::from_utf8(encode_event(None, None, data).to_vec()).unwrap()
    }

    #[test]
    fn seed_token_with_newlines_is_split() {
        assert_eq!(enc(":\n\n"), "data: :\ndata: \ndata: \n\n");
    }

    #[test]
    fn leading_space_survives() {
        assert_eq!(enc(" is"), "data:  is\n\n");
    }

    #[test]
    fn every_line_ending_splits() {
        assert_eq!(
            enc("a\r\nb\rc\nd"),
            "data: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        assert_eq!(enc("\r\r\n"), "data: \ndata: \ndata: \n\n");
    }

    #[test]
    fn unicode_separators_do_not_split() {
        let s = "a\u{2028}b\u{85}c\u{c}d";
        assert_eq!(enc(s), format!("data: {s}\n\n"));
    }

    #[test]
    fn empty_and_fields() {
        assert_eq!(enc(""), "data: \n\n");
        let t = EventType::new("done").unwrap();
        let b = encode_event(Some("7"), Some(&t), "{}");
        assert_eq!(&b[..], b"id: 7\nevent: done\ndata: {}\n\n");
        assert_eq!(&encode_retry(3000)[..], b"retry: 3000\n");
        let c = Comment::new("ka").unwrap();
        assert_eq!(&encode_comment(&c)[..], b": ka\n\n");
    }
}
