//! What a client may ask of the model: which models, which options, how
//! many output tokens. Everything else is refused before anything starts
//! upstream, so a client cannot spend more than the operator allows
//! (`n: 64`, `max_tokens: 1000000`, `service_tier`, `store`, a huge
//! `num_ctx`).

use crate::backend::GenerateRequest;

/// Options a request may set by default: sampling, stop sequences and the
/// output length (which is capped).
pub const DEFAULT_ALLOWED_OPTIONS: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "repeat_penalty",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "num_predict",
];

/// The names under which clients ask for an output length (OpenAI chat's
/// two, the Responses API's, Ollama's); when several are given, the later
/// in this list wins.
const OUTPUT_TOKEN_OPTIONS: &[&str] = &[
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "num_predict",
];

/// The operator's limits on requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Models a request may name; empty: only the back-end's default.
    pub allowed_models: Vec<String>,
    /// Options a request may set.
    pub allowed_options: Vec<String>,
    /// Most output tokens a request may ask for, and what it gets when it
    /// asks for none.
    pub max_output_tokens: u64,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The model is not allowed.
    #[error("model `{model}` is not allowed here; allowed: {allowed} (--allowed-model)")]
    Model {
        /// What was asked.
        model: String,
        /// What is allowed, comma-separated.
        allowed: String,
    },
    /// The option is not allowed.
    #[error("option `{name}` is not allowed here; allowed: {allowed} (--allowed-option)")]
    Option {
        /// The option.
        name: String,
        /// What is allowed, comma-separated.
        allowed: String,
    },
    /// More than one answer was asked for.
    #[error("rill streams one answer per generation: `n` must be 1")]
    Choices,
    /// Too many output tokens were asked for, or not as a positive number.
    #[error("`{name}` must be a whole number from 1 to {max} (--max-output-tokens)")]
    OutputTokens {
        /// The option.
        name: String,
        /// The cap.
        max: u64,
    },
}

impl Policy {
    /// Checks `request` and puts the output cap in it; `default_model` is
    /// the back-end's.
    pub fn apply(
        &self,
        request: &mut GenerateRequest,
        default_model: &str,
    ) -> Result<(), PolicyError> {
        if let Some(model) = &request.model {
            let allowed: Vec<&str> = if self.allowed_models.is_empty() {
                vec![default_model]
            } else {
                self.allowed_models.iter().map(String::as_str).collect()
            };
            if !allowed.contains(&model.as_str()) {
                return Err(PolicyError::Model {
                    model: model.clone(),
                    allowed: allowed.join(", "),
                });
            }
        }
        if let Some(n) = request.options.remove("n") {
            if n.as_u64() != Some(1) {
                return Err(PolicyError::Choices);
            }
        }
        let mut asked = None;
        for name in OUTPUT_TOKEN_OPTIONS {
            let Some(v) = request.options.remove(*name) else {
                continue;
            };
            if !self.allowed_options.iter().any(|o| o == name) {
                return Err(self.option_error(name));
            }
            match v.as_u64() {
                Some(n) if (1..=self.max_output_tokens).contains(&n) => asked = Some(n),
                _ => {
                    return Err(PolicyError::OutputTokens {
                        name: (*name).to_owned(),
                        max: self.max_output_tokens,
                    })
                }
            }
        }
        if let Some(name) = request
            .options
            .keys()
            .find(|k| !self.allowed_options.iter().any(|o| o == *k))
        {
            return Err(self.option_error(name));
        }
        request.max_output_tokens = Some(asked.unwrap_or(self.max_output_tokens));
        Ok(())
    }

    fn option_error(&self, name: &str) -> PolicyError {
        PolicyError::Option {
            name: name.to_owned(),
            allowed: self.allowed_options.join(", "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            allowed_models: Vec::new(),
            allowed_options: DEFAULT_ALLOWED_OPTIONS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            max_output_tokens: 100,
        }
    }

    fn request(model: Option<&str>, options: serde_json::Value) -> GenerateRequest {
        GenerateRequest {
            prompt: Some("hi".into()),
            model: model.map(str::to_owned),
            options: options.as_object().cloned().unwrap_or_default(),
            ..GenerateRequest::default()
        }
    }

    #[test]
    fn the_default_model_and_sampling_options_pass_with_the_cap() {
        let mut r = request(Some("m"), serde_json::json!({"temperature": 0.2, "n": 1}));
        policy().apply(&mut r, "m").unwrap();
        assert_eq!(r.max_output_tokens, Some(100));
        assert!(!r.options.contains_key("n"));
        let mut r = request(None, serde_json::json!({"max_tokens": 7}));
        policy().apply(&mut r, "m").unwrap();
        assert_eq!(r.max_output_tokens, Some(7));
        assert!(r.options.is_empty());
    }

    #[test]
    fn what_costs_more_than_allowed_is_refused() {
        let p = policy();
        for (model, options) in [
            (Some("other"), serde_json::json!({})),
            (None, serde_json::json!({"n": 64})),
            (None, serde_json::json!({"max_tokens": 1_000_000})),
            (None, serde_json::json!({"num_predict": 0})),
            (None, serde_json::json!({"max_tokens": "5"})),
            (None, serde_json::json!({"service_tier": "priority"})),
            (None, serde_json::json!({"store": true})),
            (None, serde_json::json!({"num_ctx": 1_048_576})),
        ] {
            let mut r = request(model, options.clone());
            assert!(p.apply(&mut r, "m").is_err(), "{model:?} {options}");
        }
        let listed = Policy {
            allowed_models: vec!["a".into(), "b".into()],
            ..policy()
        };
        let mut r = request(Some("b"), serde_json::json!({}));
        listed.apply(&mut r, "m").unwrap();
        let mut r = request(Some("m"), serde_json::json!({}));
        assert!(
            listed.apply(&mut r, "m").is_err(),
            "the list replaces the default"
        );
    }
}
