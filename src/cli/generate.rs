//! `rill generate URL PROMPT`: start a generation and print its answer as
//! it streams.
//!
//! The request asks for the answer itself (`Accept: text/event-stream`), so
//! the generation always has a listener and is never cancelled for want of
//! one. If that response ends before the generation does (a restart, a cut
//! connection), the rest is read from the generation's stream, resuming
//! after the last event printed, as `rill tail` would.

use clap::Args;

use super::print::{Format, Printer};
use super::tail::{Reader, Stop};
use super::{check, stream_url, CliError, TokenArg};

/// Arguments of `rill generate`.
#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// The server's base URL, e.g. http://127.0.0.1:8080.
    pub url: String,
    /// The prompt.
    pub prompt: String,
    /// The model; the server's `--model` when omitted.
    #[arg(long)]
    pub model: Option<String>,
    #[command(flatten)]
    /// The token, for a server with auth on.
    pub token: TokenArg,
}

/// Prints the answer to stdout (notes to stderr) until `done`; `failed`, an
/// HTTP error or a stream that ends without `done` is an error.
pub async fn run(args: GenerateArgs) -> Result<(), CliError> {
    let mut printer = Printer::new(
        Format::Text,
        std::io::stdout().lock(),
        std::io::stderr().lock(),
    );
    match generate(&args, &mut printer).await {
        Err(e) if e.is_broken_pipe() => Ok(()),
        other => other,
    }
}

async fn generate<O: std::io::Write, E: std::io::Write>(
    args: &GenerateArgs,
    printer: &mut Printer<O, E>,
) -> Result<(), CliError> {
    let client = reqwest::Client::new();
    let mut body = serde_json::json!({ "prompt": args.prompt });
    if let Some(model) = &args.model {
        body["model"] = model.clone().into();
    }
    let req = client
        .post(format!("{}/v1/generations", args.url.trim_end_matches('/')))
        .header("accept", "text/event-stream")
        .json(&body);
    let res = check(args.token.authorize(req).send().await?, &args.token).await?;
    let id = res
        .headers()
        .get("x-generation-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "{} did not answer with a generation (no x-generation-id header); is it a rill server?",
                args.url
            ))
        })?;
    printer.note(&format!("generation {id}"))?;
    let mut reader = Reader::new(None, None);
    let mut stop = reader.read(res, printer).await?;
    if matches!(stop, Stop::BodyEnded) {
        let url = stream_url(&args.url, &format!("gen-{id}"));
        if reader.last_id.is_none() {
            reader.last_id = Some(format!("{id}.0"));
        }
        stop = reader.follow(&client, &url, &args.token, printer).await?;
    }
    match stop {
        Stop::Terminal(ev) if ev.event_type == "done" => Ok(()),
        Stop::Terminal(ev) => Err(CliError::Failed(reason(&ev.data))),
        _ => Err(CliError::Failed(format!(
            "the stream of generation {id} ended without `done`"
        ))),
    }
}

/// The message of a `failed` event's JSON data (`{"error", "message"}`),
/// or the data as it is.
fn reason(data: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
    match (v["error"].as_str(), v["message"].as_str()) {
        (Some(kind), Some(message)) => format!("{kind}: {message}"),
        (None, Some(message)) => message.to_owned(),
        _ => data.to_owned(),
    }
}
