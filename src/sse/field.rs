//! Checked values for the single-line fields of an event.
//!
//! `event:` names and `:` comments end at the first CR or LF, so a value that
//! holds one would let its author write arbitrary fields (the injection behind
//! the Hono and h3 advisories). A NUL makes browsers drop an `id:`. These
//! types can only hold values without those bytes.

use std::fmt;

/// Longest event type name accepted, in bytes.
pub const MAX_EVENT_TYPE_LEN: usize = 128;

/// Why a field value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// The value is empty where a value is required.
    #[error("{field} must not be empty")]
    Empty {
        /// Which field.
        field: &'static str,
    },
    /// The value holds CR, LF or NUL.
    #[error("{field} must not contain CR, LF or NUL")]
    LineBreak {
        /// Which field.
        field: &'static str,
    },
    /// The value is longer than the field allows.
    #[error("{field} is longer than {max} bytes")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// The limit.
        max: usize,
    },
}

fn has_break(s: &str) -> bool {
    s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

/// The name in an `event:` line: non-empty, single-line, at most
/// [`MAX_EVENT_TYPE_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventType(String);

impl EventType {
    /// Checks `name` and wraps it.
    pub fn new(name: impl Into<String>) -> Result<Self, FieldError> {
        let name = name.into();
        let field = "event type";
        if name.is_empty() {
            return Err(FieldError::Empty { field });
        }
        if name.len() > MAX_EVENT_TYPE_LEN {
            return Err(FieldError::TooLong {
                field,
                max: MAX_EVENT_TYPE_LEN,
            });
        }
        if has_break(&name) {
            return Err(FieldError::LineBreak { field });
        }
        Ok(Self(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The text of a `:` comment line (may be empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment(String);

impl Comment {
    /// Checks `text` and wraps it.
    pub fn new(text: impl Into<String>) -> Result<Self, FieldError> {
        let text = text.into();
        if has_break(&text) {
            return Err(FieldError::LineBreak { field: "comment" });
        }
        Ok(Self(text))
    }

    /// The comment as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_rejects_line_breaks_and_nul() {
        for bad in ["a\nb", "a\rb", "a\r\nb", "x\0", "\n"] {
            assert_eq!(
                EventType::new(bad),
                Err(FieldError::LineBreak {
                    field: "event type"
                }),
                "{bad:?}"
            );
        }
        assert!(matches!(EventType::new(""), Err(FieldError::Empty { .. })));
        assert!(matches!(
            EventType::new("x".repeat(MAX_EVENT_TYPE_LEN + 1)),
            Err(FieldError::TooLong { .. })
        ));
        assert_eq!(EventType::new("done").unwrap().as_str(), "done");
        // Unicode line separators are not SSE line endings and stay allowed.
        assert!(EventType::new("a\u{2028}b").is_ok());
    }

    #[test]
    fn comment_rejects_line_breaks() {
        assert!(Comment::new("keep-alive").is_ok());
        assert!(Comment::new("").is_ok());
        assert!(Comment::new("a\nb").is_err());
        assert!(Comment::new("a\rb").is_err());
    }
}
