//! Configuration: one struct, built once at start-up, then passed down.
//! Nothing deeper in rill reads the environment.
//!
//! Precedence, highest first: command-line flags, `RILL_*` environment
//! variables, the TOML file named by `--config`, built-in defaults. clap
//! handles the first two and the defaults; [`load`] puts the file's values
//! in place of the defaults only, and refuses unknown keys and bad values
//! with a message that names the key.

use std::net::SocketAddr;
use std::time::Duration;

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

mod env_source;
mod file;
pub mod listen;
mod table;

pub use file::{load, load_from};
pub use table::markdown as settings_table;

use crate::generation::GenerationConfig;
use crate::http::accept::{Delivery, FanoutWrites};
use crate::hub::HubConfig;
use crate::store::Retention;

pub mod generation;
pub mod security;

/// rill: a Server-Sent Events server for LLM output and live events.
#[derive(Debug, Parser)]
#[command(name = "rill", version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Server options, when no subcommand is given.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// rill's subcommands.
// Parsed once at start-up; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Publish one event to a stream.
    Publish(crate::cli::publish::PublishArgs),
    /// Print a stream's events as they arrive.
    Tail(crate::cli::tail::TailArgs),
    /// Start a generation and print its answer as it streams.
    Generate(crate::cli::generate::GenerateArgs),
    /// Check that events reach browsers as rill sends them, through a proxy or CDN.
    Probe(crate::cli::probe::ProbeArgs),
    /// Print the effective configuration (flags > RILL_* env > --config file > defaults) as TOML.
    Config(ServeArgs),
}

/// Which model back-end serves `POST /v1/generations`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Replays the recorded seed answer; no model server needed.
    Mock,
    /// Ollama's `/api/chat` and `/api/generate`.
    Ollama,
    /// Any OpenAI-compatible `/v1/chat/completions`.
    Openai,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Options of `rill serve`. In a `--config` file each is a key named like
/// its flag (`mock-delay-ms = 20`).
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ServeArgs {
    /// A TOML file of settings; flags and RILL_* variables override it.
    #[arg(long, env = "RILL_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address to listen on: IP:PORT, `[IPv6]:PORT`, `localhost:PORT`, or
    /// `:PORT` for all interfaces (port 0 picks a free port).
    #[arg(long, env = "RILL_LISTEN", default_value = "127.0.0.1:8080", value_parser = listen::parse)]
    #[serde(deserialize_with = "listen::deserialize")]
    pub listen: SocketAddr,

    /// Milliseconds between tokens of the mock model.
    #[arg(long, env = "RILL_MOCK_DELAY_MS", default_value_t = 100)]
    pub mock_delay_ms: u64,

    /// Seconds between `:` keep-alive comments on open streams.
    #[arg(long, env = "RILL_KEEPALIVE_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    pub keepalive_secs: u64,

    /// The `retry:` hint sent at the start of every stream, in milliseconds.
    #[arg(long, env = "RILL_RETRY_MS", default_value_t = 2000)]
    pub retry_ms: u64,

    /// Cancel a generation nobody has listened to for this many seconds
    /// (`never` keeps generations running for later readers).
    #[arg(long, env = "RILL_GENERATION_GRACE", default_value = "5", value_parser = parse_grace)]
    pub generation_grace: Grace,

    /// Fail a generation whose model server sends nothing for this many seconds.
    #[arg(long, env = "RILL_UPSTREAM_TIMEOUT_SECS", default_value_t = 60)]
    pub upstream_timeout_secs: u64,

    /// Events kept per stream. A generation's stream keeps at least twice
    /// --max-output-tokens plus 64, so a whole answer can be replayed.
    #[arg(long, env = "RILL_RETENTION_EVENTS", default_value_t = 1000)]
    pub retention_events: usize,

    /// Encoded bytes kept per stream.
    #[arg(long, env = "RILL_RETENTION_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub retention_bytes: usize,

    /// Seconds an event is kept.
    #[arg(long, env = "RILL_RETENTION_SECS", default_value_t = 3600)]
    pub retention_secs: u64,

    /// Seconds a Durable Streams long-poll (`/v1/stream/{name}?live=long-poll`)
    /// waits for data before it answers 204.
    #[arg(long, env = "RILL_LONG_POLL_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub long_poll_secs: u64,

    /// Largest event data accepted, in bytes (larger publishes get 413).
    #[arg(long, env = "RILL_MAX_EVENT_BYTES", default_value_t = 1024 * 1024)]
    pub max_event_bytes: usize,

    /// Most bytes of events (and idempotency keys) the memory store holds,
    /// all streams together; a publish past it gets 503 and nothing
    /// retained is dropped to make room.
    #[arg(long, env = "RILL_MAX_STORE_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub max_store_bytes: usize,

    /// Most streams held at once (a publish that would create one more gets 503).
    #[arg(long, env = "RILL_MAX_STREAMS", default_value_t = 10_000)]
    pub max_streams: usize,

    /// Most subscribers on one stream; more get `200`, `retry:` and a close.
    #[arg(
        long,
        env = "RILL_MAX_SUBSCRIBERS_PER_STREAM",
        default_value_t = 20_000
    )]
    pub max_subscribers_per_stream: usize,

    /// Most subscribers on this node; more get `200`, `retry:` and a close.
    #[arg(long, env = "RILL_MAX_SUBSCRIBERS", default_value_t = 50_000)]
    pub max_subscribers: usize,

    /// Events a subscriber may lag behind live before it is caught up from
    /// the store.
    #[arg(long, env = "RILL_SUBSCRIBER_BUFFER", default_value_t = 256)]
    pub subscriber_buffer: usize,

    /// Bytes of recent events a stream's live ring holds for its
    /// subscribers; one that falls further behind is caught up from the
    /// store.
    #[arg(long, env = "RILL_SUBSCRIBER_BUFFER_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub subscriber_buffer_bytes: usize,

    /// Which path serves HTTP/1.1 event streams: `parked` (rill's own: after
    /// the response head the connection leaves hyper, and one writer per
    /// stream writes to every subscriber) or `hyper` (a task and buffers
    /// per connection).
    #[arg(long, env = "RILL_DELIVERY", value_enum, default_value_t = Delivery::Parked)]
    pub delivery: Delivery,

    /// How the parked path writes an event to a stream's subscribers:
    /// `send` (one system call per subscriber) or `uring` (the same writes
    /// submitted in io_uring batches; rill falls back to `send` where the
    /// kernel refuses io_uring).
    #[arg(long, env = "RILL_FANOUT_WRITES", value_enum, default_value_t = FanoutWrites::Uring)]
    pub fanout_writes: FanoutWrites,

    /// Model back-end for `POST /v1/generations`.
    #[arg(long, env = "RILL_BACKEND", value_enum, default_value_t = BackendKind::Mock)]
    pub backend: BackendKind,

    /// Base URL of the model server (default: Ollama's or OpenAI's usual one).
    #[arg(long, env = "RILL_BACKEND_URL")]
    pub backend_url: Option<String>,

    /// Model used when a request names none.
    #[arg(long, env = "RILL_MODEL")]
    pub model: Option<String>,

    /// Name of the environment variable holding the OpenAI-compatible API key.
    #[arg(long, env = "RILL_API_KEY_ENV", default_value = "OPENAI_API_KEY")]
    pub api_key_env: String,

    /// Seconds to let open streams close at shutdown before exiting anyway.
    #[arg(long, env = "RILL_SHUTDOWN_TIMEOUT_SECS", default_value_t = 10)]
    pub shutdown_timeout_secs: u64,

    /// Where streams live: `memory` (this process), or Redis Streams shared
    /// by many nodes: `redis://HOST:PORT/DB` (one server),
    /// `redis+cluster://H1:P1,H2:P2,...` (a Redis Cluster, by seed nodes) or
    /// `redis+sentinel://S1:P1,S2:P2,.../MASTER[/DB]` (the master that
    /// Sentinel names). Credentials go before the hosts: `USER:PASS@`.
    #[arg(long, env = "RILL_STORE", default_value = "memory")]
    pub store: String,

    /// Prefix of every Redis key rill writes (with a Redis `--store`; on a
    /// Cluster it may not contain `{` or `}`).
    #[arg(long, env = "RILL_REDIS_PREFIX", default_value = "rill:")]
    pub redis_prefix: String,

    /// Live Redis readers on this node, each with one connection; streams
    /// are spread over them by name. On a Redis Cluster rill runs one per
    /// partition of its keys instead (16).
    #[arg(long, env = "RILL_REDIS_READERS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub redis_readers: u64,

    /// Seconds a generation's lease lasts without renewal: with a shared
    /// store, a generation whose node stopped is ended with `event: error`
    /// about this long after.
    #[arg(long, env = "RILL_GENERATION_LEASE_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub generation_lease_secs: u64,

    /// Log format.
    #[arg(long, env = "RILL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Cost caps on generations.
    #[command(flatten)]
    #[serde(flatten)]
    pub generation: generation::GenerationArgs,

    /// Auth, CORS, TLS and connection limits.
    #[command(flatten)]
    #[serde(flatten)]
    pub security: security::SecurityArgs,
}

/// How long an unwatched generation lives: seconds, or `never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grace {
    /// Cancel after this long.
    After(Duration),
    /// Never cancel.
    Never,
}

impl Serialize for Grace {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Grace::After(d) => s.serialize_f64(d.as_secs_f64()),
            Grace::Never => s.serialize_str("never"),
        }
    }
}

impl<'de> Deserialize<'de> for Grace {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(f64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Secs(v) => v.to_string(),
            Raw::Text(t) => t,
        };
        parse_grace(&text).map_err(serde::de::Error::custom)
    }
}

fn parse_grace(s: &str) -> Result<Grace, String> {
    if s.eq_ignore_ascii_case("never") {
        return Ok(Grace::Never);
    }
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| Grace::After(Duration::from_secs_f64(v)))
        .ok_or_else(|| format!("`{s}` is not a number of seconds or `never`"))
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl ServeArgs {
    /// Checks values that depend on each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_event_bytes == 0 || self.max_event_bytes >= self.retention_bytes {
            return Err(ConfigError(format!(
                "--max-event-bytes ({}) must be above 0 and below --retention-bytes ({})",
                self.max_event_bytes, self.retention_bytes
            )));
        }
        if self.keepalive_secs == 0 {
            return Err(ConfigError("keepalive-secs must be at least 1".into()));
        }
        if self.retention_events == 0
            || self.subscriber_buffer == 0
            || self.subscriber_buffer_bytes == 0
        {
            return Err(ConfigError(
                "--retention-events, --subscriber-buffer and --subscriber-buffer-bytes must be above 0"
                    .into(),
            ));
        }
        if self.max_store_bytes < self.max_event_bytes {
            return Err(ConfigError(format!(
                "--max-store-bytes ({}) must hold at least one event of --max-event-bytes ({})",
                self.max_store_bytes, self.max_event_bytes
            )));
        }
        self.generation.validate()?;
        if self.store != "memory" {
            crate::store::redis::topology::Topology::parse(&self.store).map_err(|e| {
                ConfigError(format!(
                    "--store must be `memory` or a Redis URL (redis://, redis+cluster://, redis+sentinel://): {e}"
                ))
            })?;
            if self.store.starts_with("redis+cluster://") && self.redis_prefix.contains(['{', '}'])
            {
                return Err(ConfigError(
                    "--redis-prefix may not contain `{` or `}` on a Redis Cluster".into(),
                ));
            }
        }
        self.security.validate()
    }

    /// The Redis store's part, when `--store` names Redis.
    pub fn redis(&self) -> Option<crate::store::redis::RedisConfig> {
        crate::store::redis::topology::Topology::is_redis(&self.store).then(|| {
            crate::store::redis::RedisConfig {
                url: self.store.clone(),
                key_prefix: self.redis_prefix.clone(),
                readers: self.redis_readers as usize,
            }
        })
    }

    /// The hub's part.
    pub fn hub(&self) -> HubConfig {
        HubConfig {
            subscriber_buffer: self.subscriber_buffer,
            subscriber_buffer_bytes: self.subscriber_buffer_bytes,
            keepalive: Duration::from_secs(self.keepalive_secs),
            retry_ms: self.retry_ms,
            max_subscribers_per_stream: self.max_subscribers_per_stream,
            max_subscribers: self.max_subscribers,
        }
    }

    /// The store's retention.
    pub fn retention(&self) -> Retention {
        Retention {
            max_events: self.retention_events,
            // Text and reasoning can each take the whole token cap; a few
            // more for tool calls and the closing events.
            generation_events: (self.generation.max_output_tokens as usize)
                .saturating_mul(2)
                .saturating_add(64),
            max_bytes: self.retention_bytes,
            max_age: Duration::from_secs(self.retention_secs),
        }
    }

    /// The API key for the OpenAI-compatible back-end: the value of the
    /// variable named by `--api-key-env`, if set and not empty.
    pub fn api_key(&self) -> Option<String> {
        std::env::var(&self.api_key_env)
            .ok()
            .filter(|k| !k.trim().is_empty())
    }

    /// The generations' part.
    pub fn generations(&self) -> GenerationConfig {
        GenerationConfig {
            grace: match self.generation_grace {
                Grace::After(d) => Some(d),
                Grace::Never => None,
            },
            upstream_timeout: Duration::from_secs(self.upstream_timeout_secs.max(1)),
            lease: Duration::from_secs(self.generation_lease_secs.max(1)),
            max_running: usize::try_from(self.generation.max_generations).unwrap_or(usize::MAX),
            max_per_starter: usize::try_from(self.generation.max_generations_per_sub)
                .unwrap_or(usize::MAX),
            key_ttl: Duration::from_secs(self.retention_secs.max(1)),
        }
    }
}

impl ServeArgs {
    /// The built-in defaults, ignoring the environment.
    pub fn defaults() -> ServeArgs {
        let mut cmd = Cli::command();
        cmd = cmd.mut_args(|a| a.env(None::<&str>).hide_env(true));
        let matches = cmd.get_matches_from(["rill"]);
        match ServeArgs::from_arg_matches(&matches) {
            Ok(a) => a,
            // The defaults are literals in this file; a failure here is a
            // bug caught by the unit tests below.
            Err(e) => unreachable!("built-in defaults do not parse: {e}"),
        }
    }

    /// The settings as TOML, as `rill config` prints them.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string(self).map_err(|e| ConfigError(format!("cannot print settings: {e}")))
    }
}
