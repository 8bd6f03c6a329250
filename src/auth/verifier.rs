//! Checking tokens: the one accepted algorithm and its key, the signature,
//! and the times (`exp` ahead and within [`MAX_TOKEN_LIFETIME`], `nbf`
//! passed).

use std::path::PathBuf;
use std::time::SystemTime;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::{AuthError, Claims, Grant, MAX_TOKEN_LIFETIME};

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
        check_lifetime(&grant, SystemTime::now())?;
        Ok(grant)
    }
}

/// Refuses a grant that has expired at `now`, or whose `exp` is more than
/// [`MAX_TOKEN_LIFETIME`] ahead of it.
fn check_lifetime(grant: &Grant, now: SystemTime) -> Result<(), AuthError> {
    let remaining = grant.remaining_at(now);
    // The library accepts a token in its last second; rill does not.
    if remaining.is_zero() {
        return Err(AuthError::Invalid("ExpiredSignature".into()));
    }
    if remaining > MAX_TOKEN_LIFETIME {
        return Err(AuthError::Invalid(
            "`exp` is more than 10 years ahead, which rill refuses as absurd".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Pattern, Right, RillClaim};
    use jsonwebtoken::{encode, EncodingKey, Header};
    use proptest::strategy::Strategy;
    use std::time::{Duration, Instant, UNIX_EPOCH};

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
        fn any_signed_times_verify_without_panic(
            exp in proptest::prop_oneof![
                proptest::prelude::any::<u64>(),
                (-100i64..20 * 365 * 24 * 3600).prop_map(|d| now().saturating_add_signed(d)),
            ],
            nbf in proptest::option::of(proptest::prelude::any::<u64>()),
        ) {
            let t = token(serde_json::json!({"exp": exp, "nbf": nbf}));
            if let Ok(g) = verifier().verify(&t) {
                proptest::prop_assert!(!g.remaining().is_zero());
                proptest::prop_assert!(g.remaining() <= MAX_TOKEN_LIFETIME);
                proptest::prop_assert!(g.expires_at().is_some());
                proptest::prop_assert!(g.ends_at(Instant::now()).is_some());
                proptest::prop_assert!(nbf.is_none_or(|n| n <= now()));
            }
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
    fn absurd_times_are_refused_without_panic() {
        let v = verifier();
        let ten_years = MAX_TOKEN_LIFETIME.as_secs();
        for (what, claims) in [
            ("exp 2^63", serde_json::json!({"exp": 1u64 << 63})),
            ("exp u64::MAX", serde_json::json!({"exp": u64::MAX})),
            (
                "exp past the bound",
                serde_json::json!({"exp": now() + ten_years + 60}),
            ),
            (
                "nbf u64::MAX",
                serde_json::json!({"exp": now() + 60, "nbf": u64::MAX}),
            ),
            (
                "nbf not a number",
                serde_json::json!({"exp": now() + 60, "nbf": "later"}),
            ),
            ("exp negative", serde_json::json!({"exp": -1})),
            ("exp fractional", serde_json::json!({"exp": 1e30})),
        ] {
            assert!(
                matches!(v.verify(&token(claims)), Err(AuthError::Invalid(_))),
                "{what}"
            );
        }
        let near_bound = token(serde_json::json!({"exp": now() + ten_years - 60, "nbf": 0}));
        assert!(v.verify(&near_bound).is_ok());
    }

    #[test]
    fn lifetimes_are_bounded() {
        let grant = |exp| Grant {
            claims: Claims {
                exp,
                nbf: None,
                sub: None,
                rill: RillClaim::default(),
            },
        };
        let at = UNIX_EPOCH + Duration::from_secs(1_000);
        assert!(check_lifetime(&grant(1_060), at).is_ok());
        assert!(check_lifetime(&grant(1_000), at).is_err());
        let bound = 1_000 + MAX_TOKEN_LIFETIME.as_secs();
        assert!(check_lifetime(&grant(bound), at).is_ok());
        assert!(check_lifetime(&grant(bound + 1), at).is_err());
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
