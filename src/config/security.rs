//! The flags that make rill safe to expose: auth, CORS, TLS and the limits
//! on connections, request heads and bodies, and socket buffers. Flattened
//! into `rill serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::ConfigError;
use crate::auth::{JwtAlg, KeySource};

/// Largest `--send-buffer-bytes`: the kernel doubles the value into an
/// `int`, and far larger buffers are what the flag exists to avoid.
const MAX_SEND_BUFFER_BYTES: usize = 256 * 1024 * 1024;

/// Security options of `rill serve`. In a `--config` file each is a key
/// named like its flag.
#[derive(Debug, Clone, Args, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SecurityArgs {
    /// Turn on auth with this HS256 secret (at least 32 bytes); every
    /// stream route then needs a JWT.
    #[arg(
        long,
        env = "RILL_AUTH_JWT_SECRET",
        hide_env_values = true,
        conflicts_with = "auth_jwt_public_key"
    )]
    #[serde(skip_serializing)]
    pub auth_jwt_secret: Option<String>,

    /// Turn on auth with this PEM public key (RS256 or ES256, see --auth-jwt-alg).
    #[arg(long, env = "RILL_AUTH_JWT_PUBLIC_KEY", value_name = "FILE")]
    pub auth_jwt_public_key: Option<PathBuf>,

    /// The one signature algorithm tokens may use (HS256 with a secret;
    /// RS256 or ES256 with a public key).
    #[arg(long, env = "RILL_AUTH_JWT_ALG", value_enum)]
    pub auth_jwt_alg: Option<JwtAlg>,

    /// Longest remaining lifetime of a `?access_token=` token, in seconds
    /// (URLs end up in logs; longer-lived tokens belong in a header or cookie).
    #[arg(long, env = "RILL_AUTH_QUERY_TOKEN_MAX_SECS", default_value_t = 300)]
    pub auth_query_token_max_secs: u64,

    /// An origin allowed to call rill from a browser (repeat, or comma-separate
    /// in the variable); `*` allows any origin but without cookies.
    #[arg(
        long = "cors-origin",
        env = "RILL_CORS_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    #[serde(rename = "cors-origin", default)]
    pub cors_origins: Vec<String>,

    /// A second listener for operators, without auth: /metrics with
    /// per-stream series, /healthz with the store's error, /dashboard and
    /// its stream. Bind it to loopback or a private network; the public
    /// listener then answers 404 for /metrics and /dashboard.
    #[arg(long, env = "RILL_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,

    /// PEM certificate chain; with --tls-key, serve HTTPS (HTTP/2 and HTTP/1.1 by ALPN).
    #[arg(long, env = "RILL_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, env = "RILL_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Most open connections; more are accepted and closed at once. Keep it
    /// above --max-subscribers, whose answer (200, retry:) is the polite one.
    #[arg(long, env = "RILL_MAX_CONNECTIONS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,

    /// Most open connections from one client address (an IPv6 client: its
    /// /64); more are accepted and closed at once. 0 (the default) turns
    /// the cap off: behind a reverse proxy every connection comes from the
    /// proxy. Facing the internet directly, 256 is a sensible value.
    #[arg(long, env = "RILL_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: u64,

    /// Seconds a connection may take to send its request headers (and its
    /// TLS handshake) before it is closed; an idle connection (HTTP/1.1
    /// keep-alive, or HTTP/2 with no open stream) is closed after it too.
    #[arg(long, env = "RILL_HEADER_READ_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_secs: u64,

    /// Seconds a request body may take to arrive in full, counted from its
    /// request head; a slower one gets 408 and the connection is closed.
    #[arg(long, env = "RILL_BODY_READ_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout_secs: u64,

    /// Kernel send buffer of each accepted socket (SO_SNDBUF; Linux doubles
    /// it), which bounds the stale events a slow reader still gets before
    /// it is told `event: reset`. 0 leaves the kernel's autotuning on.
    #[arg(long, env = "RILL_SEND_BUFFER_BYTES", default_value_t = 64 * 1024)]
    pub send_buffer_bytes: usize,

    /// Largest request head (request line and headers), in bytes; at least 8192.
    #[arg(long, env = "RILL_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,
}

impl SecurityArgs {
    /// Checks values that depend on each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_header_bytes < 8192 || self.max_header_bytes > 1024 * 1024 {
            return Err(ConfigError::new(format!(
                "--max-header-bytes ({}) must be between 8192 and 1048576",
                self.max_header_bytes
            )));
        }
        // clap checks these ranges on flags and variables; a --config file
        // bypasses clap's parsers, so they are checked here as well.
        if self.header_read_timeout_secs == 0 || self.body_read_timeout_secs == 0 {
            return Err(ConfigError::new(
                "--header-read-timeout-secs and --body-read-timeout-secs must be at least 1",
            ));
        }
        if self.send_buffer_bytes > MAX_SEND_BUFFER_BYTES {
            return Err(ConfigError::new(format!(
                "--send-buffer-bytes ({}) must be at most {MAX_SEND_BUFFER_BYTES}",
                self.send_buffer_bytes
            )));
        }
        if self.auth_jwt_alg.is_some() && self.key_source().is_none() {
            return Err(ConfigError::new(
                "--auth-jwt-alg needs --auth-jwt-secret or --auth-jwt-public-key",
            ));
        }
        if self.cors_origins.iter().any(|o| o == "*") && self.cors_origins.len() > 1 {
            return Err(ConfigError::new(
                "--cors-origin `*` cannot be mixed with explicit origins",
            ));
        }
        Ok(())
    }

    /// The token key, when auth is on.
    pub fn key_source(&self) -> Option<KeySource> {
        match (&self.auth_jwt_secret, &self.auth_jwt_public_key) {
            (Some(s), _) => Some(KeySource::Secret(s.clone())),
            (None, Some(p)) => Some(KeySource::PublicKey(p.clone())),
            (None, None) => None,
        }
    }

    /// The header read timeout.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }

    /// The body read timeout.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_secs(self.body_read_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::ServeArgs;

    /// A `--config` file bypasses clap's range checks; `validate` does not.
    #[test]
    fn zero_timeouts_and_huge_send_buffers_are_refused() {
        let mut a = ServeArgs::defaults();
        a.security.body_read_timeout_secs = 0;
        assert!(a.validate().is_err());
        let mut a = ServeArgs::defaults();
        a.security.header_read_timeout_secs = 0;
        assert!(a.validate().is_err());
        let mut a = ServeArgs::defaults();
        a.security.send_buffer_bytes = usize::MAX;
        assert!(a.validate().is_err());
        a.security.send_buffer_bytes = 0;
        a.validate().unwrap();
    }
}
