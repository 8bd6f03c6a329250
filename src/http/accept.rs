//! The accept loop: each connection is served by hyper-util's HTTP/1 and
//! HTTP/2 builder directly, and shutdown drains them within a bound.
//!
//! `axum::serve` does the same job but holds more per connection (its own
//! shutdown and close channels and a `select!` around every connection).
//! Serving a handler directly measured 17.7 KB of RSS per idle SSE
//! connection against 20.4 KB through `axum::serve` (5,000 connections;
//! see `bench/RESULTS.md`); idle connections are what rill holds most of.

use std::time::Duration;

use axum::serve::Listener;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio_util::sync::CancellationToken;

use super::listener::Counted;

/// Accepts and serves connections until `shutdown` is cancelled; then
/// stops accepting, asks every connection to finish (an idle keep-alive
/// connection closes at once, an open event stream ends itself with a
/// `retry:`) and waits up to `drain` for them.
pub async fn serve_connections(
    mut listener: Counted,
    app: Router,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let builder = Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    loop {
        let (io, _addr) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            conn = listener.accept() => conn,
        };
        // A clone of the finished router is one `Arc`. (`axum::serve` given a
        // `Router` rebuilt its route table per connection: 5.8 KB of heap
        // per held connection, by heaptrack at 2,000 connections.)
        let service = TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down; open streams were told to reconnect later");
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {drain:?}; exiting anyway");
    }
}
