//! Who may publish and read: JSON Web Tokens whose claims name streams.
//!
//! Auth is off unless a key is configured. With a key, a request carries a
//! token (see [`crate::http::auth`] for where it is read from), [`Verifier`]
//! checks its signature, algorithm and expiry, and the `rill` claim becomes
//! a [`Grant`]: which streams the holder may publish to, which it may
//! subscribe to, and whether it may start generations. Stream names in the
//! claim are [`Pattern`]s. The full model is in `docs/security.md`.

pub mod pattern;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

pub use pattern::{Pattern, PatternError};

/// Signature algorithms rill accepts; a token signed with any other is refused.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
pub enum JwtAlg {
    /// HMAC with SHA-256 and a shared secret.
    #[value(name = "HS256")]
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256 and a public key.
    #[value(name = "RS256")]
    Rs256,
    /// ECDSA P-256 with SHA-256 and a public key.
    #[value(name = "ES256")]
    Es256,
}

impl JwtAlg {
    fn algorithm(self) -> Algorithm {
        match self {
            JwtAlg::Hs256 => Algorithm::HS256,
            JwtAlg::Rs256 => Algorithm::RS256,
            JwtAlg::Es256 => Algorithm::ES256,
        }
    }
}

/// Where the verification key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A shared HS256 secret.
    Secret(String),
    /// A PEM public key file (RS256 or ES256).
    PublicKey(PathBuf),
}

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

/// The claims rill reads; other registered claims are checked by the
/// JWT library (`exp`, `nbf`) or ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    /// Expiry, in seconds since the Unix epoch. Required.
    pub exp: u64,
    /// The subject, for logs.
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

    /// When the token expires.
    pub fn expires_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.claims.exp)
    }

    /// How long until the token expires (zero once it has).
    pub fn remaining(&self) -> Duration {
        self.expires_at()
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
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
}

/// A key or auth setting that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("auth: {0}")]
pub struct AuthConfigError(String);

/// Checks tokens.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for `alg` (HS256 for a secret, else required) with the key
    /// from `source`.
    pub fn new(source: &KeySource, alg: Option<JwtAlg>) -> Result<Self, AuthConfigError> {
        let (key, alg) = match source {
            KeySource::Secret(secret) => {
                if alg.is_some_and(|a| a != JwtAlg::Hs256) {
                    return Err(AuthConfigError(
                        "a shared secret signs HS256 only; for RS256/ES256 give --auth-jwt-public-key".into(),
                    ));
                }
                if secret.len() < 32 {
                    return Err(AuthConfigError(
                        "--auth-jwt-secret must be at least 32 bytes".into(),
                    ));
                }
                (DecodingKey::from_secret(secret.as_bytes()), JwtAlg::Hs256)
            }
            KeySource::PublicKey(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| AuthConfigError(format!("cannot read {}: {e}", path.display())))?;
                let key = match alg {
                    Some(JwtAlg::Rs256) => DecodingKey::from_rsa_pem(&pem),
                    Some(JwtAlg::Es256) => DecodingKey::from_ec_pem(&pem),
                    _ => {
                        return Err(AuthConfigError(
                            "--auth-jwt-public-key needs --auth-jwt-alg RS256 or ES256".into(),
                        ))
                    }
                }
                .map_err(|e| AuthConfigError(format!("{}: {e}", path.display())))?;
                (key, alg.unwrap_or(JwtAlg::Rs256))
            }
        };
        let mut validation = Validation::new(alg.algorithm());
        // Expiry is exact: a stream ends at `exp`, so the reconnect after
        // it must be refused, not waved through by a minute of leeway.
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        Ok(Self { key, validation })
    }

    /// Checks `token` and returns its grant.
    pub fn verify(&self, token: &str) -> Result<Grant, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let grant = Grant {
            claims: data.claims,
        };
        // The library accepts a token in its last second; rill does not.
        if grant.remaining().is_zero() {
            return Err(AuthError::Invalid("ExpiredSignature".into()));
        }
        Ok(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    fn token(claims: serde_json::Value) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn verifier() -> Verifier {
        Verifier::new(&KeySource::Secret(SECRET.into()), None).unwrap()
    }

    #[test]
    fn grants_follow_the_claim() {
        let t = token(serde_json::json!({
            "exp": now() + 60,
            "rill": {"publish": ["chat-*"], "subscribe": ["*"]}
        }));
        let g = verifier().verify(&t).unwrap();
        assert!(g.allows(Right::Publish, "chat-1"));
        assert!(!g.allows(Right::Publish, "news"));
        assert!(g.allows(Right::Subscribe, "news"));
        assert!(!g.may_generate());
    }

    #[test]
    fn refuses_bad_tokens() {
        let v = verifier();
        for bad in [
            String::new(),
            "garbage".into(),
            "a.b.c".into(),
            token(serde_json::json!({"exp": now() - 1})),
            token(serde_json::json!({"rill": {}})),
            token(serde_json::json!({"exp": now() + 60, "rill": {"publish": ["a b"]}})),
            token(serde_json::json!({"exp": now() + 60, "rill": {"admin": true}})),
        ] {
            assert!(
                matches!(v.verify(&bad), Err(AuthError::Invalid(_))),
                "{bad}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn any_token_text_is_refused_without_panic(t in "[A-Za-z0-9_.=-]{0,200}|\\PC{0,100}") {
            proptest::prop_assert!(verifier().verify(&t).is_err());
        }

        #[test]
        fn signed_patterns_grant_exactly_what_they_match(
            pat in "[a-c*-]{1,6}",
            name in "[a-c-]{1,6}",
        ) {
            let t = token(serde_json::json!({"exp": now() + 60, "rill": {"subscribe": [pat.clone()]}}));
            let g = verifier().verify(&t).unwrap();
            let want = Pattern::new(pat).unwrap().matches(&name);
            proptest::prop_assert_eq!(g.allows(Right::Subscribe, &name), want);
            proptest::prop_assert!(!g.allows(Right::Publish, &name));
        }
    }

    #[test]
    fn weak_or_mismatched_keys_are_config_errors() {
        assert!(Verifier::new(&KeySource::Secret("short".into()), None).is_err());
        assert!(Verifier::new(&KeySource::Secret(SECRET.into()), Some(JwtAlg::Rs256)).is_err());
        assert!(Verifier::new(
            &KeySource::PublicKey("/nonexistent".into()),
            Some(JwtAlg::Rs256)
        )
        .is_err());
    }
}
