//! CORS: which browser origins may call rill, from `--cors-origin`.
//!
//! Explicit origins get credentials (so the `rill_token` cookie travels);
//! `*` allows any origin without credentials, as the Fetch standard
//! requires. Without `--cors-origin` no CORS headers are sent, and browsers
//! allow same-origin pages only.

use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::Router;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use crate::config::ConfigError;

/// Adds CORS for `origins` to `app` (nothing when `origins` is empty).
pub fn apply(app: Router, origins: &[String]) -> Result<Router, ConfigError> {
    if origins.is_empty() {
        return Ok(app);
    }
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::CACHE_CONTROL,
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            HeaderName::from_static("x-generation-id"),
            header::RETRY_AFTER,
            header::WWW_AUTHENTICATE,
        ])
        .max_age(Duration::from_secs(600));
    let layer = if origins.iter().any(|o| o == "*") {
        base.allow_origin(Any)
    } else {
        let list = origins
            .iter()
            .map(|o| {
                HeaderValue::from_str(o.trim_end_matches('/')).map_err(|_| {
                    ConfigError::new(format!("--cors-origin `{o}` is not a valid origin"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        base.allow_origin(AllowOrigin::list(list))
            .allow_credentials(true)
    };
    Ok(app.layer(layer))
}
