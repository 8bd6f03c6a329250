//! `rill publish URL STREAM [DATA|-]`: publish one event.

use std::io::Read;

use clap::Args;

use super::{check, stream_url, CliError, TokenArg};

/// Arguments of `rill publish`.
#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    /// The server's base URL, e.g. http://127.0.0.1:8080.
    pub url: String,
    /// The stream.
    pub stream: String,
    /// The data; `-` or nothing reads standard input.
    pub data: Option<String>,
    /// The event type.
    #[arg(long)]
    pub event: Option<String>,
    #[command(flatten)]
    /// The token, for a server with auth on.
    pub token: TokenArg,
}

/// Publishes and prints the new event's id.
pub async fn run(args: PublishArgs) -> Result<String, CliError> {
    let data = match args.data.as_deref() {
        None | Some("-") => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        }
        Some(d) => d.to_owned(),
    };
    let body = serde_json::json!({ "data": data, "event": args.event });
    let req = reqwest::Client::new()
        .post(stream_url(&args.url, &args.stream))
        .json(&body);
    let res = check(args.token.authorize(req).send().await?, &args.token).await?;
    let text = res.text().await?;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    Ok(v["id"].as_str().unwrap_or_default().to_owned())
}
