//! Tokens and claims: any token text is accepted or refused without a
//! panic; any claims JSON parses or not; patterns match in bounded time and
//! only names of the stream-name alphabet.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rill::auth::{Claims, KeySource, Pattern, Verifier};

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        Verifier::new(
            &KeySource::Secret("fuzz-only-secret-0123456789abcdef".into()),
            None,
        )
        .expect("verifier")
    })
}

fuzz_target!(|input: (&str, &[u8], &str, &str)| {
    let (token, claims, pattern, name) = input;
    let _ = verifier().verify(token);
    let _ = serde_json::from_slice::<Claims>(claims);
    if let Ok(p) = Pattern::new(pattern) {
        if p.matches(name) && !pattern.contains('*') {
            assert_eq!(pattern, name);
        }
        if pattern.bytes().all(|b| b == b'*') {
            assert!(p.matches(name));
        }
    }
});
