//! A parser for `text/event-stream`, following the WHATWG HTML
//! "interpreting an event stream" algorithm step by step.
//!
//! It is fed bytes in chunks of any size (a CR at the end of one chunk and an
//! LF at the start of the next are one line ending) and yields the events a
//! browser's `EventSource` would dispatch. `rill tail` and the
//! OpenAI-compatible back-end read with it; its unit tests run the shared
//! conformance vectors.

use std::collections::VecDeque;

/// An event as a browser dispatches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedEvent {
    /// The event type (`message` when the stream named none).
    pub event_type: String,
    /// The data, lines joined with LF.
    pub data: String,
    /// The last event id at dispatch time (it persists across events).
    pub last_event_id: String,
}

/// Incremental event-stream parser. Longest line accepted is `max_line`
/// bytes; a longer line is an error so a hostile peer cannot grow memory.
#[derive(Debug)]
pub struct Parser {
    line: Vec<u8>,
    after_cr: bool,
    started: bool,
    data: String,
    data_seen: bool,
    event_type: String,
    last_event_id: String,
    retry: Option<u64>,
    max_line: usize,
    ready: VecDeque<ParsedEvent>,
}

/// The parser met a line longer than its limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event-stream line longer than {0} bytes")]
pub struct LineTooLong(pub usize);

impl Default for Parser {
    fn default() -> Self {
        Self::new(16 * 1024 * 1024)
    }
}

impl Parser {
    /// A parser at the start of a stream.
    pub fn new(max_line: usize) -> Self {
        Self {
            line: Vec::new(),
            after_cr: false,
            started: false,
            data: String::new(),
            data_seen: false,
            event_type: String::new(),
            last_event_id: String::new(),
            retry: None,
            max_line,
            ready: VecDeque::new(),
        }
    }

    /// The last valid `retry:` value seen, in milliseconds.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// The current last event id.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Feeds bytes; completed events become available from [`Parser::next_event`].
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), LineTooLong> {
        if !self.started {
            // A UTF-8 BOM may open the stream; it can arrive split.
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            let have = self.line.len();
            let want = BOM.len() - have;
            let take = want.min(bytes.len());
            if BOM[have..have + take] == bytes[..take] {
                self.line.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if self.line.len() < BOM.len() {
                    return Ok(());
                }
                self.line.clear();
                self.started = true;
            } else {
                self.started = true;
            }
        }
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.process_line(&line);
                    self.line = line;
                    self.line.clear();
                }
                _ => {
                    self.after_cr = false;
                    self.line.push(b);
                    if self.line.len() > self.max_line {
                        self.line.clear();
                        return Err(LineTooLong(self.max_line));
                    }
                }
            }
        }
        Ok(())
    }

    /// The next dispatched event, if any.
    pub fn next_event(&mut self) -> Option<ParsedEvent> {
        self.ready.pop_front()
    }

    fn process_line(&mut self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&line[..], ""),
        };
        match field {
            "event" => self.event_type = value.to_owned(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.data_seen = true;
            }
            "id" if !value.contains('\0') => self.last_event_id = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    self.retry = Some(ms);
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        let event_type = std::mem::take(&mut self.event_type);
        if !self.data_seen {
            self.data.clear();
            return;
        }
        self.data_seen = false;
        let mut data = std::mem::take(&mut self.data);
        data.pop();
        self.ready.push_back(ParsedEvent {
            event_type: if event_type.is_empty() {
                "message".to_owned()
            } else {
                event_type
            },
            data,
            last_event_id: self.last_event_id.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Vector {
        name: String,
        wire: String,
        events: Vec<VEvent>,
        retry_ms: Option<u64>,
    }
    #[derive(serde::Deserialize)]
    struct VEvent {
        #[serde(rename = "type")]
        event_type: String,
        data: String,
        #[serde(rename = "lastEventId")]
        last_event_id: String,
    }

    fn run(bytes: &[u8], chunk: usize) -> (Vec<ParsedEvent>, Option<u64>) {
        let mut p = Parser::default();
        for c in bytes.chunks(chunk.max(1)) {
            p.feed(c).unwrap();
        }
        let mut out = Vec::new();
        while let Some(e) = p.next_event() {
            out.push(e);
        }
        (out, p.retry())
    }

    #[test]
    fn conformance_vectors_in_every_chunking() {
        let text = include_str!("../../tests/data/parse-vectors.json");
        let vectors: Vec<Vector> = serde_json::from_str(text).unwrap();
        assert!(vectors.len() >= 20);
        for v in &vectors {
            for chunk in [1, 2, 3, 7, usize::MAX] {
                let (events, retry) = run(v.wire.as_bytes(), chunk.min(v.wire.len()));
                let want: Vec<ParsedEvent> = v
                    .events
                    .iter()
                    .map(|e| ParsedEvent {
                        event_type: e.event_type.clone(),
                        data: e.data.clone(),
                        last_event_id: e.last_event_id.clone(),
                    })
                    .collect();
                assert_eq!(events, want, "{} (chunk {chunk})", v.name);
                assert_eq!(retry, v.retry_ms, "{} retry", v.name);
            }
        }
    }

    #[test]
    fn overlong_line_is_an_error() {
        let mut p = Parser::new(8);
        assert_eq!(p.feed(b"data: 0123456789"), Err(LineTooLong(8)));
    }
}
