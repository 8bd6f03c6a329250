//! The accept loop: one task per connection, HTTP/1.1 and HTTP/2 on the same
//! port, optional TLS, and the limits that keep floods and slow clients from
//! exhausting the server.
//!
//! hyper-util's `auto` builder reads the first bytes of a connection and
//! serves HTTP/2 when they are the HTTP/2 preface (h2c with prior knowledge,
//! or TLS with ALPN `h2`), HTTP/1.1 otherwise. One HTTP/2 connection carries
//! many event streams, which lifts the browsers' six-connections-per-origin
//! limit of HTTP/1.1.
//!
//! Limits: at most `max_connections` open at once (more are accepted and
//! closed at once, so the kernel's backlog never fills with them); a
//! connection must finish its TLS handshake and its first request's headers
//! within `header_read_timeout`, or it is closed; later HTTP/1.1 requests get
//! hyper's header read timeout; request heads are capped at
//! `max_header_bytes`.
//!
//! Shutdown: the loop stops accepting, every connection is told to finish
//! (HTTP/2 `GOAWAY`, HTTP/1.1 close after the response), open event streams
//! end themselves with a jittered `retry:`, and after `drain` rill exits
//! whatever is still open.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::listener::Connection;
use crate::metrics as m;

/// How the server loop treats connections.
#[derive(Clone)]
pub struct ServeOptions {
    /// How long open responses may take to end at shutdown.
    pub drain: Duration,
    /// Serve HTTPS with this acceptor (ALPN `h2`, `http/1.1`).
    pub tls: Option<TlsAcceptor>,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Time allowed for the TLS handshake and the first request's headers.
    pub header_read_timeout: Duration,
    /// Largest request head, in bytes (at least 8192).
    pub max_header_bytes: usize,
}

impl ServeOptions {
    /// Plain TCP with generous limits and `drain` at shutdown.
    pub fn plain(drain: Duration) -> Self {
        Self {
            drain,
            tls: None,
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
        }
    }
}

fn builder(opts: &ServeOptions) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .max_buf_size(opts.max_header_bytes.max(8192));
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(opts.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then drains.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    opts: ServeOptions,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let scheme = if opts.tls.is_some() { "https" } else { "http" };
    tracing::info!("listening on {scheme}://{addr}");
    let builder = Arc::new(builder(&opts));
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little
                    // rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!(m::CONNECTIONS_DROPPED, "reason" => "limit").increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection::with_slot(stream, slot);
        let task = Task {
            builder: builder.clone(),
            app: app.clone(),
            first_request_within: opts.header_read_timeout,
            peer,
        };
        let watcher = graceful.watcher();
        // Two task types: a plain connection's task is then not sized for
        // a TLS stream's state, which it would carry unused for as long as
        // the connection is open. Idle RSS per connection at 5,000: 24,170
        // → 21,854 bytes (release build, bench/loadgen idle).
        match &opts.tls {
            None => drop(tokio::spawn(task.plain(conn, watcher))),
            Some(acceptor) => drop(tokio::spawn(task.tls(conn, acceptor.clone(), watcher))),
        }
    }
    drop(listener);
    tracing::info!("shutting down; open streams were told to reconnect later");
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(opts.drain) => {
            tracing::warn!("connections still open after {:?}; exiting anyway", opts.drain);
        }
    }
    Ok(())
}

/// One connection's work.
struct Task {
    builder: Arc<Builder<TokioExecutor>>,
    app: Router,
    first_request_within: Duration,
    peer: SocketAddr,
}

/// The per-connection service: the router, noting that a request arrived
/// and from where (`ConnectInfo`, for per-client limits).
macro_rules! service {
    ($app:expr, $seen:expr, $peer:expr) => {{
        let app = $app;
        let seen = $seen;
        let peer = $peer;
        TowerToHyperService::new(tower::service_fn(
            move |mut req: axum::http::Request<Incoming>| {
                seen.store(true, Ordering::Relaxed);
                req.extensions_mut().insert(ConnectInfo(peer));
                app.clone().oneshot(req.map(axum::body::Body::new))
            },
        ))
    }};
}

impl Task {
    async fn plain(self, conn: Connection, watcher: Watcher) {
        let started = Arc::new(AtomicBool::new(false));
        let svc = service!(self.app, started.clone(), self.peer);
        let deadline = tokio::time::Instant::now() + self.first_request_within;
        let c = self.builder.serve_connection(TokioIo::new(conn), svc);
        first_request_by(watcher.watch(c), &started, deadline).await;
    }

    async fn tls(self, conn: Connection, acceptor: TlsAcceptor, watcher: Watcher) {
        let deadline = tokio::time::Instant::now() + self.first_request_within;
        let Ok(Ok(tls)) = tokio::time::timeout_at(deadline, acceptor.accept(conn)).await else {
            metrics::counter!(m::CONNECTIONS_DROPPED, "reason" => "tls").increment(1);
            return;
        };
        let started = Arc::new(AtomicBool::new(false));
        let svc = service!(self.app, started.clone(), self.peer);
        let c = self.builder.serve_connection(TokioIo::new(tls), svc);
        first_request_by(watcher.watch(c), &started, deadline).await;
    }
}

/// Runs `conn`, but closes it at `deadline` if no request has arrived by
/// then: this covers what hyper's own header timeout does not, a client
/// that sends nothing, or only part of the HTTP/2 preface.
async fn first_request_by<F: Future>(
    conn: F,
    started: &AtomicBool,
    deadline: tokio::time::Instant,
) {
    tokio::pin!(conn);
    tokio::select! {
        _ = &mut conn => return,
        _ = tokio::time::sleep_until(deadline) => {}
    }
    if !started.load(Ordering::Relaxed) {
        metrics::counter!(m::CONNECTIONS_DROPPED, "reason" => "header_timeout").increment(1);
        return;
    }
    conn.await;
}
