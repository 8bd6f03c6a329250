//! The `rill` binary: parses the command line and runs the server or a
//! client command.

use std::io::IsTerminal;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use rill::config::{Command, LogFormat, ServeArgs};

fn main() -> anyhow::Result<()> {
    let cli = rill::config::load()?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    match cli.command {
        None => runtime.block_on(serve(cli.serve)),
        Some(Command::Serve(args)) => runtime.block_on(serve(args)),
        Some(Command::Publish(args)) => {
            let id = runtime.block_on(rill::cli::publish::run(args))?;
            println!("{id}");
            Ok(())
        }
        Some(Command::Tail(args)) => Ok(runtime.block_on(rill::cli::tail::run(args))?),
        Some(Command::Generate(args)) => Ok(runtime.block_on(rill::cli::generate::run(args))?),
        Some(Command::Probe(args)) => {
            let level = runtime.block_on(rill::cli::probe::run(args))?;
            // A failing verdict is a failing command, for scripts and CI.
            if level == rill::cli::probe::verdict::Level::Fail {
                std::process::exit(1);
            }
            Ok(())
        }
        Some(Command::Config(args)) => {
            args.validate()?;
            print!("{}", args.to_toml()?);
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let shutdown = CancellationToken::new();
    tokio::spawn(on_signal(shutdown.clone()));
    rill::server::run(args, shutdown).await?;
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RILL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// Cancels `token` on SIGTERM or ctrl-c.
async fn on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("signal received");
    token.cancel();
}
