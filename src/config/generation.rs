//! The flags that bound what clients may spend on the model: how many
//! generations run, which models and options a request may use, and how
//! many tokens it may ask for. Flattened into `rill serve`.

use clap::Args;

use super::ConfigError;
use crate::generation::policy::{Policy, DEFAULT_ALLOWED_OPTIONS};

/// Cost caps on generations. In a `--config` file each is a key named like
/// its flag.
#[derive(Debug, Clone, Args, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GenerationArgs {
    /// Most generations running on this node; more get 429.
    #[arg(long, env = "RILL_MAX_GENERATIONS", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_generations: u64,

    /// Most generations running for one token `sub` (without auth: one
    /// client address); more get 429.
    #[arg(long, env = "RILL_MAX_GENERATIONS_PER_SUB", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_generations_per_sub: u64,

    /// Models a request may name (repeat, or comma-separate); by default
    /// only --model (or the back-end's default model).
    #[arg(
        long = "allowed-model",
        env = "RILL_ALLOWED_MODELS",
        value_name = "MODEL",
        value_delimiter = ','
    )]
    #[serde(rename = "allowed-model", default)]
    pub allowed_models: Vec<String>,

    /// Options a request may pass to the model (repeat, or comma-separate).
    #[arg(
        long = "allowed-option",
        env = "RILL_ALLOWED_OPTIONS",
        value_name = "OPTION",
        value_delimiter = ',',
        default_values_t = DEFAULT_ALLOWED_OPTIONS.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    )]
    #[serde(rename = "allowed-option")]
    pub allowed_options: Vec<String>,

    /// Most output tokens a generation may ask for (`max_tokens`,
    /// `num_predict`); a request that names none gets this many.
    #[arg(long, env = "RILL_MAX_OUTPUT_TOKENS", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_output_tokens: u64,
}

impl GenerationArgs {
    /// Checks values that depend on each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self
            .allowed_options
            .iter()
            .any(|o| o == "n" || o.trim().is_empty())
        {
            return Err(ConfigError::new(
                "--allowed-option cannot allow `n` (rill streams one answer per generation) or an empty name",
            ));
        }
        Ok(())
    }

    /// The policy requests are checked against.
    pub fn policy(&self) -> Policy {
        Policy {
            allowed_models: self.allowed_models.clone(),
            allowed_options: self.allowed_options.clone(),
            max_output_tokens: self.max_output_tokens,
        }
    }
}
