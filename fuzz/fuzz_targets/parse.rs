//! The parser on hostile bytes: it must not panic, must respect its line
//! limit, and must give the same events however the bytes are chunked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill::sse::Parser;

fn events(chunks: &[&[u8]]) -> Option<Vec<rill::sse::ParsedEvent>> {
    let mut p = Parser::new(4096);
    let mut out = Vec::new();
    for c in chunks {
        p.feed(c).ok()?;
        while let Some(e) = p.next_event() {
            out.push(e);
        }
    }
    Some(out)
}

fuzz_target!(|input: (u16, &[u8])| {
    let (split, bytes) = input;
    let at = usize::from(split) % (bytes.len() + 1);
    let whole = events(&[bytes]);
    let (a, b) = bytes.split_at(at);
    let parts = events(&[a, b]);
    if let (Some(w), Some(p)) = (whole, parts) {
        assert_eq!(w, p, "chunking changed the events");
    }
});
