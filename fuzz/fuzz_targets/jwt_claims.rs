//! Tokens and claims: any token text is accepted or refused without a
//! panic; any claims JSON parses or not; claims the fuzzer chooses, signed
//! with the verifier's key, are verified without a panic, and what is
//! accepted has an expiry the server can compute with (ahead, within the
//! ten-year bound, representable as a `SystemTime` and as an `Instant`
//! deadline); patterns match in bounded time, only names of the
//! stream-name alphabet, and reserved names only with their prefix.
#![no_main]

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arbitrary::Arbitrary;
use jsonwebtoken::{EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use rill::auth::{
    Claims, KeySource, Pattern, Right, Verifier, MAX_TOKEN_LIFETIME, RESERVED_PREFIXES,
};
use serde_json::Value;

const SECRET: &str = "fuzz-only-secret-0123456789abcdef";

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| Verifier::new(&KeySource::Secret(SECRET.into()), None).expect("verifier"))
}

/// A time claim as the fuzzer sets it: absent, any number, or an offset
/// from now (where the interesting edges are).
#[derive(Debug, Arbitrary)]
enum Time {
    Absent,
    Raw(u64),
    FromNow(i64),
    Float(f64),
    Text(String),
}

impl Time {
    fn value(&self, now: u64) -> Option<Value> {
        match self {
            Time::Absent => None,
            Time::Raw(n) => Some((*n).into()),
            Time::FromNow(d) => Some(now.saturating_add_signed(*d).into()),
            Time::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number),
            Time::Text(s) => Some(s.clone().into()),
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    /// Token text as a client might send it.
    token: &'a str,
    /// Claims JSON: parsed as rill's claims, and signed as a token's body.
    claims: &'a [u8],
    /// Time claims put into the signed body.
    exp: Time,
    nbf: Time,
    iat: Time,
    /// A pattern and a name to match.
    pattern: &'a str,
    name: &'a str,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Signs the fuzzer's claims (an object, with its time claims set) and
/// checks what the verifier makes of them.
fn signed(input: &Input) {
    let mut body = match serde_json::from_slice::<Value>(input.claims) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let now = now();
    for (key, time) in [
        ("exp", &input.exp),
        ("nbf", &input.nbf),
        ("iat", &input.iat),
    ] {
        if let Some(v) = time.value(now) {
            body.insert(key.into(), v);
        }
    }
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let Ok(token) = jsonwebtoken::encode(&Header::default(), &body, &key) else {
        return;
    };
    let Ok(grant) = verifier().verify(&token) else {
        return;
    };
    // Accepted: every computation the guard makes on it must work.
    let remaining = grant.remaining();
    assert!(!remaining.is_zero(), "accepted an expired token: {body:?}");
    assert!(
        remaining <= MAX_TOKEN_LIFETIME,
        "accepted an absurd exp: {body:?}"
    );
    assert!(grant.expires_at().is_some());
    assert!(grant.ends_at(Instant::now()).is_some());
    if let Some(nbf) = grant.claims.nbf {
        assert!(nbf <= now + 1, "accepted a token before its nbf: {body:?}");
    }
    let _ = grant.allows(Right::Subscribe, input.name);
    let _ = grant.allows(Right::Publish, input.name);
    let _ = (grant.may_generate(), grant.sub());
}

fn patterns(pattern: &str, name: &str) {
    let Ok(p) = Pattern::new(pattern) else {
        return;
    };
    let matched = p.matches(name);
    if matched && !pattern.contains('*') {
        assert_eq!(pattern, name);
    }
    let reserved = RESERVED_PREFIXES.iter().find(|r| name.starts_with(**r));
    match reserved {
        Some(prefix) => assert!(!matched || pattern.starts_with(prefix)),
        None if pattern.bytes().all(|b| b == b'*') => assert!(matched),
        None => {}
    }
}

fuzz_target!(|input: Input| {
    let _ = verifier().verify(input.token);
    let _ = serde_json::from_slice::<Claims>(input.claims);
    signed(&input);
    patterns(input.pattern, input.name);
});
