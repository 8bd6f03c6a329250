//! Wiring: from a configuration to a running server.
//!
//! Builds the store, the hub, the back-ends and the routes, starts the hub's
//! maintenance task, and serves until the shutdown token is cancelled: the
//! public listener, and with `--admin-listen` the operators' one.

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
    /// Binding or serving failed.
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
    let store: Arc<dyn Store> = match args.redis() {
        Some(redis) => Arc::new(
            RedisStore::new(&redis, args.retention(), args.max_streams)
                .map_err(|e| ConfigError::new(format!("--store: {e}")))?,
        ),
        None => Arc::new(MemoryStore::new(args.retention(), args.max_streams)),
    };
    let hub = Hub::new(store, args.hub(), shutdown);
    let demo = Arc::new(MockBackend::seed(Duration::from_millis(
        args.mock_delay_ms,
    ))?);
    let backend = backend(args, &demo)?;
    Ok(AppState {
        generations: Generations::new(hub.clone(), args.generations()),
        hub,
        backend,
        demo,
        max_event_bytes: args.max_event_bytes,
        metrics: crate::metrics::install(),
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
    if state.hub.store().shared() {
        for reader in 0..args.redis_readers as usize {
            tokio::spawn(state.hub.clone().run_feed(reader));
        }
        tokio::spawn(state.generations.clone().run_orphan_sweeper());
    }
    // With auth on, anyone may read the public ops routes; with it off,
    // everyone could read every stream anyway.
    let view = OpsView {
        detail: match args.security.key_source() {
            Some(_) => Detail::Redacted,
            None => Detail::Full,
        },
        operator_routes: admin.is_none(),
    };
    let app = secure(http::router(state, view), &args.security, retry_ms)?;
    let opts = serve_options(&args)?;
    let public = http::accept::serve_with(listener, app, shutdown.clone(), opts);
    tokio::select! {
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
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Io {
            context: format!("cannot listen on {addr}"),
            source,
        })
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
pub fn secure(app: Router, args: &SecurityArgs, retry_ms: u64) -> Result<Router, ServerError> {
    let app = match args.key_source() {
        Some(source) => {
            let guard = http::auth::Guard {
                verifier: Verifier::new(&source, args.auth_jwt_alg)?,
                query_token_max: Duration::from_secs(args.auth_query_token_max_secs),
                retry_ms,
                origins: AllowedOrigins::new(&args.cors_origins),
            };
            tracing::info!("auth is on: stream routes need a JWT");
            app.route_layer(axum::middleware::from_fn_with_state(
                Arc::new(guard),
                http::auth::guard,
            ))
        }
        None => app,
    };
    Ok(http::cors::apply(app, &args.cors_origins)?)
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
        header_read_timeout: s.header_read_timeout(),
        max_header_bytes: s.max_header_bytes,
    })
}
