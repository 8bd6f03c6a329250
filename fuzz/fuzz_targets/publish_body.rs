//! Publish bodies: any bytes under any content type are either refused
//! with an error or become a draft whose event encodes to one event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill::http::streams::draft_from_body;
use rill::sse::{encode_event, Parser};

fuzz_target!(|input: (bool, &[u8])| {
    let (json, body) = input;
    let content_type = json.then_some("application/json");
    let Ok(draft) = draft_from_body(content_type, body) else {
        return;
    };
    let bytes = encode_event(Some("1"), draft.event_type.as_ref(), &draft.data);
    let mut parser = Parser::new(usize::MAX);
    parser.feed(&bytes).expect("no line limit");
    assert!(parser.next_event().is_some());
    assert!(parser.next_event().is_none());
});
