//! Client commands: `rill publish`, `rill tail`, `rill generate` and
//! `rill probe`, for using rill from a shell.
//!
//! They talk to a server over plain HTTP like any other client, carry a
//! token when auth is on, and say what to do when the server refuses them.

pub mod generate;
mod print;
pub mod probe;
pub mod publish;
pub mod tail;

use clap::Args;

/// Errors of the client commands.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The request failed.
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The server needs a token and got none, or refused the one it got.
    #[error("server answered 401 Unauthorized: {body}\n{advice}")]
    Unauthorized {
        /// Its body.
        body: String,
        /// What to do.
        advice: &'static str,
    },
    /// The server refused it.
    #[error("server answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Its body.
        body: String,
    },
    /// A generation ended with `event: failed`, or its stream stopped short.
    #[error("generation failed: {0}")]
    Failed(String),
    /// Reading input or writing output failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    /// Whether this is a write to a closed pipe (`rill tail | head`): the
    /// reader has all it wanted, which is success, not an error.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Io(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// The token flag shared by every client command.
#[derive(Debug, Clone, Default, Args)]
pub struct TokenArg {
    /// A JWT sent as `Authorization: Bearer`, for a server with auth on.
    #[arg(long, env = "RILL_TOKEN", hide_env_values = true, value_name = "JWT")]
    pub token: Option<String>,
}

impl TokenArg {
    /// `req` with the token, if there is one.
    fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t.trim()),
            None => req,
        }
    }
}

/// `res` when it succeeded, else an error that says what the server said
/// and, for a `401`, what to do about it.
async fn check(res: reqwest::Response, token: &TokenArg) -> Result<reqwest::Response, CliError> {
    let status = res.status();
    if status.is_success() {
        return Ok(res);
    }
    let body = res.text().await.unwrap_or_default();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        let advice = match token.token {
            None => "this server has auth on: pass a token with --token <JWT> or set RILL_TOKEN",
            Some(_) => {
                "the token was refused (expired, or not signed with the server's key): \
                 pass a valid one with --token <JWT> or RILL_TOKEN"
            }
        };
        return Err(CliError::Unauthorized { body, advice });
    }
    Err(CliError::Status {
        status: status.as_u16(),
        body,
    })
}

/// `base` + `/v1/streams/` + `stream`.
pub fn stream_url(base: &str, stream: &str) -> String {
    format!("{}/v1/streams/{stream}", base.trim_end_matches('/'))
}
