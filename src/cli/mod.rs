//! Client commands: `rill publish` and `rill tail`, for using rill from a
//! shell.

pub mod publish;
pub mod tail;

/// Errors of the client commands.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The request failed.
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The server refused it.
    #[error("server answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Its body.
        body: String,
    },
    /// Reading input or writing output failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
}

/// `base` + `/v1/streams/` + `stream`.
pub fn stream_url(base: &str, stream: &str) -> String {
    format!("{}/v1/streams/{stream}", base.trim_end_matches('/'))
}
