//! The `text/event-stream` wire format.
//!
//! rill writes every event exactly once, into a [`bytes::Bytes`] that all
//! subscribers share ([`encode`]), and reads event streams from model
//! back-ends and for `rill tail` with a parser that follows the WHATWG
//! "interpreting an event stream" rules ([`parse`]).
//!
//! The field types in [`field`] make an injected line impossible: an event
//! name or comment can only be built through a checked constructor that
//! rejects CR, LF and NUL, and data is split on every line ending when it is
//! encoded.

pub mod encode;
pub mod field;
pub mod parse;

pub use encode::{encode_comment, encode_event, encode_retry, KEEPALIVE};
pub use field::{Comment, EventType, FieldError};
pub use parse::{ParsedEvent, Parser};
