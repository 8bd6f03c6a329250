//! Stream patterns in token claims: exact names and `*` wildcards.
//!
//! A pattern is 1 to 128 characters of the stream-name alphabet
//! (`A-Z a-z 0-9 _ . -`) and `*`. `*` matches any run, empty or not, of
//! stream-name characters; every other character matches itself. So `*`
//! covers every stream, `chat-*` covers `chat-` and `chat-room-1`, and
//! `gen-*.log` covers `gen-7.log`. There is no escaping, because stream
//! names can never contain `*`.
//!
//! Streams whose names start with a [reserved prefix](RESERVED_PREFIXES),
//! `_` (rill's own, such as `_dashboard`) or `gen-` (generations), are not
//! the users' streams: a token reaches them only through a pattern that
//! starts with the same prefix. So `*` and `*-x` grant none of them, and a
//! token minted for "every chat stream" cannot read the dashboard's list
//! of busiest streams or other people's generations.

use std::fmt;

use crate::generation::GENERATION_PREFIX;

/// Longest pattern accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 128;

/// Name prefixes that only a pattern starting with the same prefix covers.
pub const RESERVED_PREFIXES: [&str; 2] = ["_", GENERATION_PREFIX];

/// A pattern that does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream pattern `{0}` is not 1-128 characters of A-Z a-z 0-9 _ . - *")]
pub struct PatternError(pub String);

/// A checked stream pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    /// Checks `raw` against the grammar.
    pub fn new(raw: impl Into<String>) -> Result<Self, PatternError> {
        let raw = raw.into();
        let ok = !raw.is_empty()
            && raw.len() <= MAX_PATTERN_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'*'));
        if ok {
            Ok(Self(raw))
        } else {
            Err(PatternError(raw))
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `name` is covered by this pattern: the pattern matches it
    /// and, for a name with a [reserved prefix](RESERVED_PREFIXES), starts
    /// with that prefix itself.
    ///
    /// Linear-time wildcard matching (the classic two-pointer walk that
    /// remembers the last `*`), so a hostile pattern such as `*a*a*a*b`
    /// cannot make a check expensive.
    pub fn matches(&self, name: &str) -> bool {
        let reserved = RESERVED_PREFIXES.iter().find(|p| name.starts_with(**p));
        if reserved.is_some_and(|prefix| !self.0.starts_with(prefix)) {
            return false;
        }
        let (p, n) = (self.0.as_bytes(), name.as_bytes());
        let (mut pi, mut ni) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ni < n.len() {
            if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, ni));
                pi += 1;
            } else if pi < p.len() && p[pi] == n[ni] {
                pi += 1;
                ni += 1;
            } else if let Some((sp, sn)) = star {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&b| b == b'*')
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({})", self.0)
    }
}

impl TryFrom<String> for Pattern {
    type Error = PatternError;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::new(raw)
    }
}

impl<'de> serde::Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::new(raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Pattern {
        Pattern::new(s).unwrap()
    }

    #[test]
    fn exact_and_wildcards() {
        assert!(p("chat").matches("chat"));
        assert!(!p("chat").matches("chat-1"));
        assert!(!p("chat").matches("cha"));
        assert!(p("*").matches("anything.at_all-1"));
        assert!(p("chat-*").matches("chat-"));
        assert!(p("chat-*").matches("chat-room-1"));
        assert!(!p("chat-*").matches("chat"));
        assert!(!p("chat-*").matches("xchat-1"));
        assert!(p("*-log").matches("a-b-log"));
        assert!(!p("*-log").matches("a-log-b"));
        assert!(p("a*b*c").matches("abc"));
        assert!(p("a*b*c").matches("a-x-b-y-c"));
        assert!(!p("a*b*c").matches("a-x-c-y-b"));
        assert!(p("**").matches("x"));
    }

    #[test]
    fn reserved_streams_need_their_prefix_in_the_pattern() {
        for name in ["_dashboard", "_", "gen-1f2e", "gen-"] {
            for wide in ["*", "**", "*-*", "*d*", "*1f2e", "g*", "gen*", "_d*"] {
                if name.starts_with('_') && wide.starts_with('_') {
                    continue;
                }
                assert!(!p(wide).matches(name), "{wide} must not cover {name}");
            }
        }
        assert!(p("_*").matches("_dashboard"));
        assert!(p("_dashboard").matches("_dashboard"));
        assert!(!p("_*").matches("gen-1"));
        assert!(p("gen-*").matches("gen-1f2e"));
        assert!(p("gen-1f2e").matches("gen-1f2e"));
        assert!(!p("gen-*").matches("_dashboard"));
        // Names that only contain a prefix further in are ordinary.
        assert!(p("*").matches("a_b"));
        assert!(p("*").matches("chat-gen-1"));
        assert!(p("*").matches("gen"));
        assert!(p("*").matches("genx-1"));
        assert_eq!(RESERVED_PREFIXES[1], crate::generation::GENERATION_PREFIX);
    }

    #[test]
    fn grammar() {
        for bad in ["", "a b", "a/b", "ä", "a\n", "a?", &"x".repeat(129)] {
            assert!(Pattern::new(bad).is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<Pattern>("\"chat-*\"").is_ok());
        assert!(serde_json::from_str::<Pattern>("\"chat room\"").is_err());
    }

    /// A slow but obviously right reference: try every split at each `*`.
    fn reference(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| reference(rest, &n[i..])),
            Some((c, rest)) => n.first() == Some(c) && reference(rest, &n[1..]),
        }
    }

    proptest! {
        #[test]
        fn agrees_with_reference(pat in "[ab*]{1,8}", name in "[ab]{0,10}") {
            prop_assert_eq!(p(&pat).matches(&name), reference(pat.as_bytes(), name.as_bytes()));
        }

        #[test]
        fn reserved_names_match_only_patterns_with_their_prefix(
            pat in "(_|gen-|g|)[a-n*_-]{1,6}",
            name in "(_|gen-)[a-n_-]{0,6}",
        ) {
            let prefix = if name.starts_with('_') { "_" } else { "gen-" };
            let want = pat.starts_with(prefix) && reference(pat.as_bytes(), name.as_bytes());
            prop_assert_eq!(p(&pat).matches(&name), want);
        }
    }
}
