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
//! Limits: at most `max_connections` open at once, and at most
//! `max_connections_per_ip` from one address (more are accepted and closed
//! at once, so the kernel's backlog never fills with them); each socket's
//! send buffer is capped ([`listener::tune`]); a connection must finish its
//! TLS handshake and its first request's headers within
//! `header_read_timeout`, or it is closed; after that, a connection that
//! sits idle for as long is closed too: hyper's header read timeout does it
//! for HTTP/1.1, and [`activity`] for an HTTP/2 connection with no open
//! stream (which hyper would keep forever); request heads are capped at
//! `max_header_bytes`, and a request body must arrive within
//! `body_read_timeout` of its head ([`super::body`]).
//!
//! Shutdown: the loop stops accepting, every connection is told to finish
//! (HTTP/2 `GOAWAY`, HTTP/1.1 close after the response), open event streams
//! end themselves with a jittered `retry:`, and after `drain` rill exits
//! whatever is still open.

mod activity;
mod front;
mod publish;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::listener::{self, Connection, PerIp};
use super::park::Parking;
use crate::metrics as m;
use activity::{Activity, Phase};
use front::Prefixed;
pub use publish::Front;

/// Which path serves HTTP/1.1 event streams.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// rill's own: after the response head, the connection is parked and
    /// its stream's writer writes to it (see `http::park`).
    Parked,
    /// hyper serves every response, event streams included.
    Hyper,
}

/// How a parked stream's writer writes a frame to its subscribers.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum FanoutWrites {
    /// One non-blocking `send` system call per subscriber.
    Send,
    /// The same writes submitted in io_uring batches (Linux); falls back
    /// to `send` where the kernel refuses io_uring.
    Uring,
}

/// How the server loop treats connections.
#[derive(Clone)]
pub struct ServeOptions {
    /// How long open responses may take to end at shutdown.
    pub drain: Duration,
    /// Serve HTTPS with this acceptor (ALPN `h2`, `http/1.1`).
    pub tls: Option<TlsAcceptor>,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one address (IPv6: one /64);
    /// 0 is no cap.
    pub max_connections_per_ip: usize,
    /// Time allowed for the TLS handshake and the first request's headers,
    /// and how long a connection may then sit idle.
    pub header_read_timeout: Duration,
    /// Time allowed for a request body to arrive, from its head.
    pub body_read_timeout: Duration,
    /// Largest request head, in bytes (at least 8192).
    pub max_header_bytes: usize,
    /// `SO_SNDBUF` of every accepted socket; 0 leaves the kernel's autotuning.
    pub send_buffer_bytes: usize,
    /// Which path serves HTTP/1.1 event streams.
    pub delivery: Delivery,
    /// How the parked path's writers write to their subscribers.
    pub fanout_writes: FanoutWrites,
    /// The `retry:` base, for parked streams' jittered one at shutdown.
    pub retry_ms: u64,
    /// What rill's own HTTP/1.1 front needs to answer publishes itself;
    /// `None` leaves them to the router (they still work).
    pub front: Option<Front>,
}

impl ServeOptions {
    /// Plain TCP with generous limits and `drain` at shutdown.
    pub fn plain(drain: Duration) -> Self {
        Self {
            drain,
            tls: None,
            max_connections: 10_000,
            max_connections_per_ip: 0,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_header_bytes: 16 * 1024,
            send_buffer_bytes: 64 * 1024,
            delivery: Delivery::Parked,
            fanout_writes: FanoutWrites::Uring,
            retry_ms: 2000,
            front: None,
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
    // Event streams of plain HTTP/1.1 connections are parked (TLS keeps
    // hyper: the TLS state would have to be kept per connection anyway).
    let parking = (opts.delivery == Delivery::Parked && opts.tls.is_none())
        .then(|| Parking::new(opts.retry_ms, opts.fanout_writes));
    let shared = Arc::new(Shared {
        builder: builder(&opts),
        app,
        idle: opts.header_read_timeout,
        body_read_timeout: opts.body_read_timeout,
        max_header_bytes: opts.max_header_bytes.max(8192),
        parking: parking.clone(),
        front: opts.front.clone().filter(|_| parking.is_some()),
    });
    // The drain: every connection holds a receiver; at shutdown the sender
    // signals, then waits until every receiver is gone. hyper-util's
    // GracefulShutdown works the same way but drives the connection itself,
    // and the idle HTTP/2 close needs to call `graceful_shutdown` too.
    let (drain, _) = watch::channel(());
    let slots = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    let mut per_ip = PerIp::new(opts.max_connections_per_ip);
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
        let Ok(ip_slot) = per_ip.admit(peer.ip()) else {
            drop(stream);
            continue;
        };
        listener::tune(&stream, opts.send_buffer_bytes);
        let conn = Connection::with_slots(stream, slot, ip_slot);
        let task = Task {
            shared: shared.clone(),
            drain: drain.subscribe(),
            peer,
        };
        // Two task types: a plain connection's task is then not sized for
        // a TLS stream's state, which it would carry unused for as long as
        // the connection is open. Idle RSS per connection at 5,000: 24,170
        // → 21,854 bytes (release build, bench/loadgen idle).
        match &opts.tls {
            None => drop(tokio::spawn(task.plain(conn))),
            Some(acceptor) => drop(tokio::spawn(task.tls(conn, acceptor.clone()))),
        }
    }
    drop(listener);
    tracing::info!("shutting down; open streams were told to reconnect later");
    let _ = drain.send(());
    // Parked streams were told to come back later by the hub; they close
    // as their writers reach them.
    let parked = async {
        if let Some(p) = &parking {
            p.closed().await;
        }
    };
    tokio::select! {
        _ = async { tokio::join!(drain.closed(), parked) } => {}
        _ = tokio::time::sleep(opts.drain) => {
            tracing::warn!("connections still open after {:?}; exiting anyway", opts.drain);
        }
    }
    Ok(())
}

/// What every connection's task shares: one allocation for all of them.
struct Shared {
    builder: Builder<TokioExecutor>,
    app: Router,
    /// How long a connection may wait for its first request, or sit idle.
    idle: Duration,
    body_read_timeout: Duration,
    max_header_bytes: usize,
    /// Parked event streams, unless hyper serves them.
    parking: Option<Parking>,
    /// Publishes answered by rill's own front.
    front: Option<Front>,
}

/// One connection's work.
struct Task {
    shared: Arc<Shared>,
    drain: watch::Receiver<()>,
    /// The client's address, for per-client limits (`ConnectInfo`).
    peer: SocketAddr,
}

impl Task {
    async fn plain(self, conn: Connection) {
        if self.shared.parking.is_some() {
            return self.plain_front(conn).await;
        }
        let deadline = Instant::now() + self.shared.idle;
        self.serve(Prefixed::new(conn, bytes::Bytes::new()), deadline)
            .await;
    }

    async fn tls(self, conn: Connection, acceptor: TlsAcceptor) {
        let deadline = Instant::now() + self.shared.idle;
        let Ok(Ok(tls)) = tokio::time::timeout_at(deadline, acceptor.accept(conn)).await else {
            metrics::counter!(m::CONNECTIONS_DROPPED, "reason" => "tls").increment(1);
            return;
        };
        self.serve(tls, deadline).await;
    }

    /// Runs the connection to its end. It is closed if no request has
    /// arrived by `first_request_by` (a client that sends nothing, or only
    /// part of the HTTP/2 preface: hyper's own header timeout does not see
    /// those), closed gracefully once an HTTP/2 connection has had no open
    /// stream for `idle`, and finished gracefully at shutdown.
    ///
    /// One timer at most, reset only when the connection goes idle, not a
    /// periodic tick: it runs until the first request arrives, then only
    /// while an HTTP/2 connection has no open stream.
    async fn serve<I>(mut self, io: I, first_request_by: Instant)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::default());
        let svc = activity::service(self.shared.clone(), activity.clone(), self.peer);
        let conn = self.shared.builder.serve_connection(TokioIo::new(io), svc);
        tokio::pin!(conn);
        let mut timer = Some(Box::pin(tokio::time::sleep_until(first_request_by)));
        let mut seen_idle = 0;
        let mut closing = false;
        loop {
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = self.drain.changed(), if !closing => {
                    closing = true;
                    timer = None;
                    conn.as_mut().graceful_shutdown();
                }
                idle = activity.went_idle(seen_idle), if !closing => {
                    seen_idle = idle;
                    arm(&mut timer, Instant::now() + self.shared.idle);
                }
                _ = fired(&mut timer), if timer.is_some() => {
                    timer = None;
                    match activity.phase() {
                        Phase::NoRequest => {
                            metrics::counter!(m::CONNECTIONS_DROPPED, "reason" => "header_timeout")
                                .increment(1);
                            return;
                        }
                        Phase::Http2Idle => {
                            closing = true;
                            conn.as_mut().graceful_shutdown();
                        }
                        // HTTP/1.1: hyper's header read timeout takes over.
                        // HTTP/2 with open streams: `went_idle` re-arms the
                        // timer when the last one ends.
                        Phase::Http1 | Phase::Http2Busy => {}
                    }
                }
            }
        }
    }
}

/// Sets `timer` to fire at `at`, reusing its allocation when it has one.
fn arm(timer: &mut Option<Pin<Box<Sleep>>>, at: Instant) {
    match timer {
        Some(t) => t.as_mut().reset(at),
        None => *timer = Some(Box::pin(tokio::time::sleep_until(at))),
    }
}

/// Waits for `timer`, forever when there is none.
async fn fired(timer: &mut Option<Pin<Box<Sleep>>>) {
    match timer {
        Some(t) => t.as_mut().await,
        None => std::future::pending().await,
    }
}
