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
    let protocol = |names: &[&'static str]| {
        names
            .iter()
            .map(|n| HeaderName::from_static(n))
            .collect::<Vec<_>>()
    };
    let mut allow = vec![
        header::AUTHORIZATION,
        header::CONTENT_TYPE,
        header::ACCEPT,
        header::CACHE_CONTROL,
        HeaderName::from_static("last-event-id"),
        HeaderName::from_static("idempotency-key"),
    ];
    allow.extend(protocol(&crate::http::durable::REQUEST_HEADERS));
    let mut expose = vec![
        HeaderName::from_static("x-generation-id"),
        header::RETRY_AFTER,
        header::WWW_AUTHENTICATE,
        header::ETAG,
        header::LOCATION,
    ];
    expose.extend(protocol(&crate::http::durable::RESPONSE_HEADERS));
    let base = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::POST,
            Method::DELETE,
        ])
        .allow_headers(allow)
        .expose_headers(expose)
        .max_age(Duration::from_secs(600));
    let layer = if origins.iter().any(|o| o == "*") {
        base.allow_origin(Any)
    } else {
        let list = origins
            .iter()
            .map(|o| origin(o))
            .collect::<Result<Vec<_>, _>>()?;
        base.allow_origin(AllowOrigin::list(list))
            .allow_credentials(true)
    };
    Ok(app.layer(layer))
}

/// Checks one `--cors-origin`: `scheme://host[:port]`, as a browser sends it
/// in `Origin` (a trailing `/` is dropped).
fn origin(raw: &str) -> Result<HeaderValue, ConfigError> {
    let o = raw.trim().trim_end_matches('/');
    let rest = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"));
    let ok = rest.is_some_and(|host| !host.is_empty() && !host.contains(['/', '?', '#', ' ']));
    ok.then(|| HeaderValue::from_str(o).ok())
        .flatten()
        .ok_or_else(|| {
            ConfigError::new(format!(
                "--cors-origin `{raw}` is not an origin like https://app.example or http://localhost:3000"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked() {
        assert_eq!(
            origin("https://app.example/").unwrap(),
            "https://app.example"
        );
        assert!(origin("http://localhost:3000").is_ok());
        for bad in [
            "app.example",
            "https://",
            "https://a.example/path",
            "ftp://a",
        ] {
            assert!(origin(bad).is_err(), "{bad}");
        }
    }
}
