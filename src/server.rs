//! Wiring: from a configuration to a running server.
//!
//! Builds the store, the hub, the back-ends and the routes, starts the hub's
//! maintenance task, and serves until the shutdown token is cancelled: the
//! public listener, and with `--admin-listen` the operators' one.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::csrf::AllowedOrigins;
use crate::auth::Verifier;
use crate::backend::mock::{MockBackend, RecordingError};
use crate::backend::ollama::{self, OllamaBackend};
use crate::backend::openai::{self, OpenAiBackend};
use crate::backend::upstream::{self, BaseUrl};
use crate::backend::Backend;
use crate::config::security::SecurityArgs;
use crate::config::{BackendKind, ConfigError, ServeArgs};
use crate::generation::Generations;
use crate::http::accept::ServeOptions;
use crate::http::demo::SeedAnswer;
use crate::http::durable::DurableState;
use crate::http::ops::{Detail, OpsView};
use crate::http::{self, AppState};
use crate::hub::Hub;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::store::Store;

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The recorded answer did not parse.
    #[error(transparent)]
    Recording(#[from] RecordingError),
    /// The auth key could not be loaded.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthConfigError),
    /// The TLS certificate or key could not be loaded.
    #[error(transparent)]
    Tls(#[from] crate::http::tls::TlsError),
    /// The listening address could not be bound.
    #[error("cannot listen on {addr}: {}", bind_advice(*addr, source))]
    Listen {
        /// The address of `--listen`.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("{context}: {source}")]
    Io {
        /// What rill was doing.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Builds the application state from `args`.
pub fn build(args: &ServeArgs, shutdown: CancellationToken) -> Result<AppState, ServerError> {
    args.validate()?;
    let store = match args.redis() {
        Some(redis) => Store::shared(Arc::new(
            RedisStore::new(&redis, args.retention(), args.max_streams)
                .map_err(|e| ConfigError::new(format!("--store: {e}")))?,
        )),
        None => Store::local(Arc::new(MemoryStore::new(
            args.retention(),
            args.max_streams,
            args.max_store_bytes,
        ))),
    };
    let hub = Hub::new(store, args.hub(), shutdown);
    let delay = Duration::from_millis(args.mock_delay_ms);
    let mock = Arc::new(MockBackend::seed(delay)?);
    let backend = backend(args, &mock)?;
    Ok(AppState {
        generations: Generations::new(hub.clone(), args.generations()),
        seed: Arc::new(SeedAnswer::new(&mock, delay)),
        hub,
        backend,
        policy: Arc::new(args.generation.policy()),
        max_event_bytes: args.max_event_bytes,
        metrics: crate::metrics::install(),
        durable: Arc::new(DurableState::new(Duration::from_secs(args.long_poll_secs))),
    })
}

/// The back-end `args` choose; the API key is read here, once.
fn backend(args: &ServeArgs, demo: &Arc<MockBackend>) -> Result<Arc<dyn Backend>, ServerError> {
    let default_url = match args.backend {
        BackendKind::Mock => return Ok(demo.clone()),
        BackendKind::Ollama => ollama::DEFAULT_URL,
        BackendKind::Openai => openai::DEFAULT_URL,
    };
    let base = BaseUrl::parse(args.backend_url.as_deref().unwrap_or(default_url))
        .map_err(|e| ConfigError::new(e.to_string()))?;
    let client = upstream::client(args.generations().upstream_timeout)
        .map_err(|e| ConfigError::new(e.to_string()))?;
    let model = args.model.clone();
    Ok(match args.backend {
        BackendKind::Openai => Arc::new(OpenAiBackend::new(client, base, model, args.api_key())),
        _ => Arc::new(OllamaBackend::new(client, base, model)),
    })
}

/// Binds `args.listen` (and `--admin-listen`, if given) and serves until
/// `shutdown` is cancelled.
pub async fn run(args: ServeArgs, shutdown: CancellationToken) -> Result<(), ServerError> {
    let state = build(&args, shutdown.clone())?;
    let listener = bind(args.listen).await?;
    let admin = match args.security.admin_listen {
        Some(addr) => Some((bind(addr).await?, http::admin_router(state.clone()))),
        None => None,
    };
    let retry_ms = state.hub.config().retry_ms;
    tokio::spawn(state.hub.clone().run_maintenance());
    tokio::spawn(crate::dashboard::run(
        state.hub.clone(),
        state.generations.clone(),
        Duration::from_secs(1),
    ));
    if state.hub.store().is_shared() {
        for reader in 0..state.hub.live_readers() {
            tokio::spawn(state.hub.clone().run_feed(reader));
        }
        tokio::spawn(state.generations.clone().run_marker());
    }
    let generations = state.generations.clone();
    // With auth on, anyone may read the public ops routes; with it off,
    // everyone could read every stream anyway.
    let view = OpsView {
        detail: match args.security.key_source() {
            Some(_) => Detail::Redacted,
            None => Detail::Full,
        },
        operator_routes: admin.is_none(),
    };
    let guard = guard(&args.security, retry_ms)?;
    let front = http::accept::Front {
        state: state.clone(),
        guard: guard.clone(),
        cors: !args.security.cors_origins.is_empty(),
        body_limit: http::body_limit(state.max_event_bytes),
    };
    let app = secure(http::router(state, view), guard, &args.security)?;
    let mut opts = serve_options(&args)?;
    opts.front = Some(front);
    let drain = opts.drain;
    let public = http::accept::serve_with(listener, app, shutdown.clone(), opts);
    let served = tokio::select! {
        // Polled first: `serve_with` logs `listening on …` before it first
        // waits, so that line comes before `admin listening on …`, and
        // whoever reads the first `listening on` line (tests, scripts)
        // finds the public address.
        biased;
        served = public => served.map_err(|source| ServerError::Io {
            context: "server failed".into(),
            source,
        }),
        failed = serve_admin(admin, shutdown) => failed,
    };
    // Every generation ends with its `done` (cancelled_by: shutdown) in the
    // store before the process exits.
    let tracker = generations.tracker();
    tracker.close();
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        tracing::warn!(
            running = generations.active(),
            "generations still running after {drain:?}; exiting anyway"
        );
    }
    served
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Listen { addr, source })
}

/// Serves the admin listener, if there is one, until `shutdown`; returns
/// only if it fails. Plain HTTP without the public listener's connection
/// limits: it is for a private address. The public listener's drain
/// decides when rill exits.
async fn serve_admin(
    admin: Option<(TcpListener, Router)>,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    if let Some((listener, app)) = admin {
        let failed = |source| ServerError::Io {
            context: "admin listener failed".into(),
            source,
        };
        let addr = listener.local_addr().map_err(failed)?;
        tracing::info!("admin listening on http://{addr}");
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .map_err(failed)?;
    }
    std::future::pending().await
}

/// Puts the auth guard (when a key is configured) and CORS around `app`.
pub fn secure(
    app: Router,
    guard: Option<Arc<http::auth::Guard>>,
    args: &SecurityArgs,
) -> Result<Router, ServerError> {
    let app = match guard {
        Some(guard) => {
            tracing::info!("auth is on: stream routes need a JWT");
            app.route_layer(axum::middleware::from_fn_with_state(
                guard,
                http::auth::guard,
            ))
        }
        None => app,
    };
    Ok(http::cors::apply(app, &args.cors_origins)?)
}

/// The auth guard, when a key is configured.
pub fn guard(
    args: &SecurityArgs,
    retry_ms: u64,
) -> Result<Option<Arc<http::auth::Guard>>, ServerError> {
    let Some(source) = args.key_source() else {
        return Ok(None);
    };
    Ok(Some(Arc::new(http::auth::Guard {
        verifier: Verifier::new(&source, args.auth_jwt_alg)?,
        query_token_max: Duration::from_secs(args.auth_query_token_max_secs),
        retry_ms,
        origins: AllowedOrigins::new(&args.cors_origins),
    })))
}

fn serve_options(args: &ServeArgs) -> Result<ServeOptions, ServerError> {
    let s = &args.security;
    let tls = match (&s.tls_cert, &s.tls_key) {
        (Some(cert), Some(key)) => Some(http::tls::acceptor(cert, key)?),
        _ => None,
    };
    Ok(ServeOptions {
        drain: Duration::from_secs(args.shutdown_timeout_secs),
        tls,
        max_connections: usize::try_from(s.max_connections).unwrap_or(usize::MAX),
        max_connections_per_ip: usize::try_from(s.max_connections_per_ip).unwrap_or(usize::MAX),
        header_read_timeout: s.header_read_timeout(),
        body_read_timeout: s.body_read_timeout(),
        max_header_bytes: s.max_header_bytes,
        send_buffer_bytes: s.send_buffer_bytes,
        delivery: args.delivery,
        fanout_writes: args.fanout_writes,
        retry_ms: args.retry_ms,
        front: None,
    })
}

/// What a failed bind means and what to do about it.
fn bind_advice(addr: SocketAddr, source: &std::io::Error) -> String {
    let elsewhere = |port: u16| SocketAddr::new(addr.ip(), port);
    match source.kind() {
        ErrorKind::AddrInUse => format!(
            "address already in use — another process (perhaps another rill) holds this port; \
             stop it or pass --listen {} (or RILL_LISTEN)",
            elsewhere(addr.port().checked_add(1).unwrap_or(8080))
        ),
        ErrorKind::PermissionDenied if addr.port() < 1024 => format!(
            "permission denied — ports below 1024 need root or the CAP_NET_BIND_SERVICE \
             capability; pass a port from 1024 up, e.g. --listen {} (or RILL_LISTEN), \
             and put a proxy in front for port {}",
            elsewhere(8080),
            addr.port()
        ),
        ErrorKind::AddrNotAvailable => format!(
            "no interface of this machine has the address {} — pass one it has, \
             127.0.0.1 (this machine only) or 0.0.0.0 (all interfaces)",
            addr.ip()
        ),
        _ => source.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    use super::*;

    fn shown(addr: &str, kind: ErrorKind) -> String {
        ServerError::Listen {
            addr: addr.parse().unwrap(),
            source: Error::from(kind),
        }
        .to_string()
    }

    #[test]
    fn a_port_in_use_says_what_to_do() {
        assert_eq!(
            shown("127.0.0.1:8080", ErrorKind::AddrInUse),
            "cannot listen on 127.0.0.1:8080: address already in use — another process \
             (perhaps another rill) holds this port; stop it or pass --listen \
             127.0.0.1:8081 (or RILL_LISTEN)"
        );
    }

    #[test]
    fn a_refused_low_port_explains_why() {
        let e = shown("0.0.0.0:80", ErrorKind::PermissionDenied);
        assert!(
            e.starts_with("cannot listen on 0.0.0.0:80: permission denied"),
            "{e}"
        );
        assert!(
            e.contains("below 1024") && e.contains("--listen 0.0.0.0:8080"),
            "{e}"
        );
        let e = shown("[::1]:8080", ErrorKind::PermissionDenied);
        assert!(!e.contains("below 1024"), "{e}");
    }
}
