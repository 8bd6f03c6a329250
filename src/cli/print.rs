//! How the client commands print events: as text a person reads, one line
//! per event, or one JSON object per event.
//!
//! Text mode exists for generations: each `message` event is a token that
//! carries its own spaces and newlines, so tokens are written back to back,
//! flushed as they come, and stdout holds exactly the answer. Everything
//! else (`done`, `failed`, `reset`, `end`) is about the answer, not part of
//! it, and goes to stderr on its own line.

use std::io::Write;

use crate::sse::ParsedEvent;

/// An output format of `rill tail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Message data back to back; other events to stderr.
    Text,
    /// One line per event: its data, or `[type] data`.
    Lines,
    /// One JSON object per event: `{"id", "event", "data"}`.
    Json,
}

/// Writes events in a [`Format`] to `out`, notes to `err`.
pub struct Printer<O: Write, E: Write> {
    format: Format,
    out: O,
    err: E,
    /// Whether the text on `out` ends mid-line, so a note on `err` (often
    /// the same terminal) must start on a new line.
    mid_line: bool,
}

impl<O: Write, E: Write> Printer<O, E> {
    /// A printer of `format` to `out` and `err`.
    pub fn new(format: Format, out: O, err: E) -> Self {
        Self {
            format,
            out,
            err,
            mid_line: false,
        }
    }

    /// Prints one event and flushes it.
    pub fn event(&mut self, ev: &ParsedEvent) -> std::io::Result<()> {
        match self.format {
            Format::Json => {
                let line = serde_json::json!({
                    "id": ev.last_event_id, "event": ev.event_type, "data": ev.data,
                });
                writeln!(self.out, "{line}")?;
            }
            Format::Lines if ev.event_type == "message" => writeln!(self.out, "{}", ev.data)?,
            Format::Lines => writeln!(self.out, "[{}] {}", ev.event_type, ev.data)?,
            Format::Text if ev.event_type == "message" => {
                self.out.write_all(ev.data.as_bytes())?;
                if !ev.data.is_empty() {
                    self.mid_line = !ev.data.ends_with('\n');
                }
            }
            Format::Text => {
                return self.note(&format!("[{}] {}", ev.event_type, ev.data));
            }
        }
        self.out.flush()
    }

    /// Writes `line` to `err`, on a line of its own.
    pub fn note(&mut self, line: &str) -> std::io::Result<()> {
        self.out.flush()?;
        let lead = if std::mem::take(&mut self.mid_line) {
            "\n"
        } else {
            ""
        };
        writeln!(self.err, "{lead}{line}")?;
        self.err.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event_type: &str, data: &str) -> ParsedEvent {
        ParsedEvent {
            event_type: event_type.into(),
            data: data.into(),
            last_event_id: "1".into(),
        }
    }

    fn print(format: Format, events: &[ParsedEvent]) -> (String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        {
            let mut p = Printer::new(format, &mut out, &mut err);
            for e in events {
                p.event(e).unwrap();
            }
        }
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn text_joins_tokens_and_puts_other_events_on_stderr() {
        let events = [
            ev("message", "Hello"),
            ev("message", ", world"),
            ev("message", ".\n\nNext"),
            ev("done", "{}"),
        ];
        let (out, err) = print(Format::Text, &events);
        assert_eq!(out, "Hello, world.\n\nNext");
        assert_eq!(err, "\n[done] {}\n", "the note starts on its own line");
        let (out, err) = print(Format::Text, &[ev("message", "line\n"), ev("end", "")]);
        assert_eq!((out.as_str(), err.as_str()), ("line\n", "[end] \n"));
    }

    #[test]
    fn lines_and_json_print_one_line_per_event() {
        let events = [ev("message", "a"), ev("done", "{}")];
        assert_eq!(print(Format::Lines, &events).0, "a\n[done] {}\n");
        let (out, err) = print(Format::Json, &events);
        assert!(err.is_empty());
        assert_eq!(out.lines().count(), 2);
        assert!(
            out.starts_with(r#"{"data":"a","event":"message","id":"1"}"#),
            "{out}"
        );
    }
}
