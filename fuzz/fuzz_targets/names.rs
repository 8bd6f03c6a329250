//! Stream names and event ids from clients: parsing never panics, and what
//! parses formats back to the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill::ids::{wire_id, StreamName, WireId};

fuzz_target!(|s: &str| {
    if let Ok(name) = StreamName::new(s) {
        assert_eq!(name.as_str(), s);
        assert!(!s.is_empty() && s.len() <= 128);
        assert!(s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')));
    }
    if let Ok(id) = s.parse::<WireId>() {
        let again: WireId = wire_id(id.prefix.as_deref(), id.id)
            .parse()
            .expect("round trip");
        assert_eq!(again, id);
    }
});
