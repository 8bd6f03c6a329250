//! Reading Redis Stream entries back into rill's types: an event entry into
//! a [`Record`] (encoded for the wire here, once per read), an entry id into
//! an [`EventId`], a removals entry into the stream it names.

use redis::streams::{StreamId, StreamRangeReply};

use crate::ids::{EventId, StreamName};
use crate::sse::EventType;
use crate::store::{Draft, Record};

/// Turns an entry into a record, encoding it for the wire with the prefix
/// the entry carries (or `prefix`, for entries written before they did).
pub(super) fn record(entry: &StreamId, prefix: Option<&str>) -> Option<Record> {
    let n = entry.id.strip_prefix("0-")?.parse::<u64>().ok()?;
    let text = |k: &str| field(entry, k);
    let kind = text("t").unwrap_or_default();
    let draft = Draft {
        event_type: if kind.is_empty() {
            None
        } else {
            EventType::new(kind).ok()
        },
        data: text("d").unwrap_or_default(),
        terminal: text("x").as_deref() == Some("1"),
    };
    let id = EventId(n);
    let own = text("p");
    let prefix = own.as_deref().or(prefix).filter(|p| !p.is_empty());
    Some(Record {
        id,
        frame: draft.encode(prefix, id),
        terminal: draft.terminal,
    })
}

pub(super) fn first_id(reply: &StreamRangeReply) -> Option<u64> {
    reply.ids.first()?.id.strip_prefix("0-")?.parse().ok()
}

/// A field of an entry, as text.
pub(super) fn field(entry: &StreamId, k: &str) -> Option<String> {
    entry
        .map
        .get(k)
        .and_then(|v| redis::from_redis_value::<String>(v).ok())
}

/// A removals entry: the stream and its last id.
pub(super) fn removal(entry: &StreamId) -> Option<(StreamName, EventId)> {
    let text = |k: &str| field(entry, k);
    let name = StreamName::new(text("name")?).ok()?;
    let last = text("last")?.parse().ok()?;
    Some((name, EventId(last)))
}
