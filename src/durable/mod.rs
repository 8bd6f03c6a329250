//! The Durable Streams protocol's model of a stream, on rill's log.
//!
//! [Durable Streams](https://github.com/durable-streams/durable-streams) is
//! an open HTTP protocol for append-only streams read from any offset. rill
//! serves it at `/v1/stream/{name}` (see `http::durable`); this module is
//! what that route stands on, with no HTTP in it:
//!
//! - a protocol stream *is* a rill stream: each append is one event of it,
//!   closing is its terminal event, deleting removes it. rill subscribers,
//!   limits, metrics and Redis work unchanged, and any rill stream (a
//!   generation's, say) can be read through the protocol too;
//! - what the protocol adds (content type, TTL, writers' sequence state)
//!   lives in the stream's [attributes](crate::store::Log::attrs), as
//!   [`Attrs`], which name the incarnation they belong to;
//! - an [`offset`] is the id of the last event read;
//! - [`message`] turns appended bytes into events and events back into
//!   the bytes (or JSON messages) a reader gets;
//! - [`producer`] checks idempotent producers and `Stream-Seq`.

pub mod message;
pub mod offset;
pub mod producer;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use offset::Offset;
pub use producer::ProducerState;

/// What the protocol keeps about a stream beside its events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attrs {
    /// The incarnation of the rill stream these belong to (its wire-id
    /// prefix). Attributes of another incarnation are stale.
    pub prefix: String,
    /// The content type the stream was created with.
    pub content_type: String,
    /// Sliding time to live, in seconds (`Stream-TTL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    /// Absolute expiry (`Stream-Expires-At`), as the client sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The same expiry, in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
    /// Last read or write, in milliseconds since the Unix epoch (for the
    /// sliding TTL).
    #[serde(default)]
    pub touched_ms: u64,
    /// Idempotent producers by id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub producers: BTreeMap<String, ProducerState>,
    /// The last `Stream-Seq` accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<String>,
    /// The producer request that closed the stream, so its retry is a
    /// duplicate rather than a conflict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<producer::Stamp>,
    /// For a fork: where it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork: Option<ForkOf>,
    /// How many forks were made of this stream and not yet deleted.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub forks: u64,
    /// Deleted while forks of it remain: gone to clients (`410`), kept
    /// until the last fork is deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Where a fork was made from: the configuration a repeated `PUT` must
/// match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkOf {
    /// The source stream.
    pub source: String,
    /// The source's offset the fork diverged at (an event id).
    pub offset: u64,
    /// Messages (JSON) or bytes of the next append inherited past it.
    #[serde(default)]
    pub sub: u64,
}

impl Attrs {
    /// Reads attributes stored by [`Attrs::to_json`]; `None` for text
    /// that is not (a store holds only what rill wrote, so that means a
    /// newer or older rill wrote it).
    pub fn from_json(text: &str) -> Option<Attrs> {
        serde_json::from_str(text).ok()
    }

    /// The stored form.
    pub fn to_json(&self) -> String {
        // A struct of strings and numbers always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether the stream has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        let by_ttl = self
            .ttl
            .is_some_and(|ttl| now_ms >= self.touched_ms.saturating_add(ttl.saturating_mul(1000)));
        let by_date = self.expires_ms.is_some_and(|at| now_ms >= at);
        by_ttl || by_date
    }

    /// Whether reads and writes move the expiry (a sliding TTL).
    pub fn slides(&self) -> bool {
        self.ttl.is_some()
    }

    /// Whether the stream holds JSON messages (`application/json`).
    pub fn is_json(&self) -> bool {
        is_json(&self.content_type)
    }

    /// Whether an SSE reader gets the data as text (`text/*` and JSON)
    /// rather than base64.
    pub fn sse_text(&self) -> bool {
        let media = media_type(&self.content_type);
        media.starts_with("text/") || media == "application/json"
    }
}

/// The media type of a `Content-Type`, lower-cased, without parameters.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether `content_type` is JSON mode.
pub fn is_json(content_type: &str) -> bool {
    media_type(content_type) == "application/json"
}

/// Whether two content types name the same media type.
pub fn same_type(a: &str, b: &str) -> bool {
    media_type(a) == media_type(b)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The content type of a rill stream read through the protocol without
/// having been made by it (a generation's, a published stream): JSON
/// messages, one per event.
pub const RILL_VIEW_TYPE: &str = "application/json";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attrs_round_trip_and_expire() {
        let a = Attrs {
            prefix: "abc".into(),
            content_type: "text/plain".into(),
            ttl: Some(2),
            touched_ms: 1_000,
            ..Attrs::default()
        };
        assert_eq!(Attrs::from_json(&a.to_json()), Some(a.clone()));
        assert!(!a.expired(2_999));
        assert!(a.expired(3_000));
        let b = Attrs {
            expires_ms: Some(5_000),
            ..Attrs::default()
        };
        assert!(!b.expired(4_999) && b.expired(5_000));
        assert!(Attrs::from_json("{not json").is_none());
    }

    #[test]
    fn content_types_compare_by_media_type() {
        assert!(same_type(
            "application/json; charset=utf-8",
            "Application/JSON"
        ));
        assert!(!same_type("text/plain", "application/json"));
        assert!(is_json("application/json;charset=utf-8"));
        let t = Attrs {
            content_type: "text/markdown".into(),
            ..Attrs::default()
        };
        assert!(t.sse_text());
        let b = Attrs {
            content_type: "application/octet-stream".into(),
            ..Attrs::default()
        };
        assert!(!b.sse_text());
    }
}
