//! Who may publish and read: JSON Web Tokens whose claims name streams.
//!
//! Auth is off unless a key is configured. With a key, a request carries a
//! token (see [`crate::http::auth`] for where it is read from), [`Verifier`]
//! checks its signature, algorithm and expiry, and the `rill` claim becomes
//! a [`Grant`]: which streams the holder may publish to, which it may
//! subscribe to, and whether it may start generations. Stream names in the
//! claim are [`Pattern`]s. [`csrf`] says when a token from a cookie may be
//! used. The full model is in `docs/security.md`.
//!
//! Times in a token are the signer's word, not ours: an `exp` too far ahead
//! to be meant is refused ([`MAX_TOKEN_LIFETIME`]), and every computation
//! on it is checked, so no signed value can make a request panic.

pub mod csrf;
pub mod pattern;
mod verifier;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

pub use pattern::{Pattern, PatternError, RESERVED_PREFIXES};
pub use verifier::{AuthConfigError, JwtAlg, KeySource, Verifier};

/// Longest a token may still have to live: an `exp` further ahead than
/// this (ten years) is refused as absurd. No one means it, and a bound
/// keeps the expiry arithmetic far from overflow.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// Publish to, or delete, a stream.
    Publish,
    /// Subscribe to a stream.
    Subscribe,
}

/// The `rill` claim, as signed into the token.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RillClaim {
    /// Streams the holder may publish to and delete.
    #[serde(default)]
    pub publish: Vec<Pattern>,
    /// Streams the holder may subscribe to.
    #[serde(default)]
    pub subscribe: Vec<Pattern>,
    /// Whether the holder may start and cancel generations.
    #[serde(default)]
    pub generate: bool,
}

/// The claims rill reads; other registered claims (`iat`, `aud`, `iss`)
/// are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    /// Expiry, in seconds since the Unix epoch. Required; at most
    /// [`MAX_TOKEN_LIFETIME`] ahead.
    pub exp: u64,
    /// Not before, in seconds since the Unix epoch. Checked by the JWT
    /// library (a token before its `nbf` is refused); read here so that a
    /// value that is not a whole number makes the token invalid rather
    /// than unchecked.
    #[serde(default)]
    pub nbf: Option<u64>,
    /// The subject: for logs, and the owner of the generations the token
    /// starts.
    #[serde(default)]
    pub sub: Option<String>,
    /// The grant; a token without it may do nothing stream-specific.
    #[serde(default)]
    pub rill: RillClaim,
}

/// A verified token: its rights and when they end.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The checked claims.
    pub claims: Claims,
}

impl Grant {
    /// Whether this grant gives `right` on the stream called `name`.
    pub fn allows(&self, right: Right, name: &str) -> bool {
        let patterns = match right {
            Right::Publish => &self.claims.rill.publish,
            Right::Subscribe => &self.claims.rill.subscribe,
        };
        patterns.iter().any(|p| p.matches(name))
    }

    /// Whether this grant lets its holder start and cancel generations.
    pub fn may_generate(&self) -> bool {
        self.claims.rill.generate
    }

    /// The token's subject, if it has one.
    pub fn sub(&self) -> Option<&str> {
        self.claims.sub.as_deref()
    }

    /// When the token expires; `None` if `exp` is past what the system
    /// clock can represent (a verified grant's never is).
    pub fn expires_at(&self) -> Option<SystemTime> {
        UNIX_EPOCH.checked_add(Duration::from_secs(self.claims.exp))
    }

    /// How long until the token expires (zero once it has).
    pub fn remaining(&self) -> Duration {
        self.remaining_at(SystemTime::now())
    }

    /// How long from `now` until the token expires (zero once it has).
    /// Computed on durations since the epoch, so no `exp` can overflow it.
    pub fn remaining_at(&self, now: SystemTime) -> Duration {
        let now = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        Duration::from_secs(self.claims.exp).saturating_sub(now)
    }

    /// The instant, on the clock of `now`, at which the token expires;
    /// `None` if that is past what the clock can represent (then nothing
    /// should end at expiry: it is not within the life of the process).
    pub fn ends_at(&self, now: Instant) -> Option<Instant> {
        now.checked_add(self.remaining())
    }
}

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No token was sent.
    #[error("this route needs a token: `Authorization: Bearer <jwt>`, the `rill_token` cookie, or `?access_token=`")]
    Missing,
    /// The token is malformed, badly signed, of the wrong algorithm or expired.
    #[error("the token was refused: {0}")]
    Invalid(String),
    /// The token is valid but does not cover this request.
    #[error("the token does not allow {0}")]
    Forbidden(String),
    /// The token came from the cookie, which this request may not use
    /// (see [`csrf`]).
    #[error("{0}; a page that writes to rill should send its token in `Authorization: Bearer <jwt>` instead")]
    Csrf(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_arithmetic_is_checked() {
        let grant = |exp| Grant {
            claims: Claims {
                exp,
                nbf: None,
                sub: None,
                rill: RillClaim::default(),
            },
        };
        let far = grant(u64::MAX);
        assert_eq!(far.expires_at(), None);
        assert!(far.remaining() > MAX_TOKEN_LIFETIME);
        // `Instant` cannot reach u64::MAX seconds ahead.
        assert_eq!(far.ends_at(Instant::now()), None);
        let at = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(grant(1_060).remaining_at(at), Duration::from_secs(60));
        assert_eq!(grant(999).remaining_at(at), Duration::ZERO);
        assert_eq!(
            grant(5).remaining_at(UNIX_EPOCH - Duration::from_secs(9)),
            Duration::from_secs(5)
        );
    }
}
