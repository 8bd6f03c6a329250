//! The encoder against the parser: whatever data and event type go in, a
//! spec-following parser must get exactly one event back with the same
//! event type, the same id and the data with its line endings made LF.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill::ids::{wire_id, EventId};
use rill::sse::{encode_event, EventType, Parser};

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    id: u64,
    event_type: Option<String>,
    data: String,
}

fuzz_target!(|input: Input| {
    let event_type = match input.event_type {
        None => None,
        Some(t) => match EventType::new(t) {
            Ok(t) => Some(t),
            Err(_) => return,
        },
    };
    let id = wire_id(None, EventId(input.id));
    let bytes = encode_event(Some(&id), event_type.as_ref(), &input.data);
    let mut parser = Parser::new(usize::MAX);
    parser.feed(&bytes).expect("no line limit");
    let event = parser.next_event().expect("one event");
    assert!(parser.next_event().is_none(), "exactly one event");
    let want = input.data.replace("\r\n", "\n").replace('\r', "\n");
    assert_eq!(event.data, want);
    assert_eq!(event.last_event_id, id);
    let want_type = event_type.as_ref().map_or("message", |t| t.as_str());
    assert_eq!(event.event_type, want_type);
});
