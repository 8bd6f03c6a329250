//! When a token from the `rill_token` cookie may be used: the defence
//! against cross-site request forgery.
//!
//! A browser attaches a site's cookies to requests that any page makes to
//! it: a form posted from another site, or a `fetch` that needs no CORS
//! preflight. So a cookie shows that the browser holds a token, not that
//! a page allowed to use it made the request. rill takes a cookie token
//! as it is only for `GET` and `HEAD`: reads, chiefly event streams, which
//! `EventSource` can authenticate no other way. Any other method must also
//!
//! - be JSON (`application/json` or `…+json`): a page on another site
//!   cannot send that without a CORS preflight, which rill answers only
//!   for `--cors-origin`s; and
//! - carry an allowed `Origin`: one of `--cors-origin`'s explicit origins,
//!   or the request's own (`Origin`'s host and port equal to `Host`).
//!   Browsers send `Origin` on every such request, including same-origin
//!   `fetch`.
//!
//! Tokens in `Authorization` or `?access_token=` are never attached by the
//! browser on its own, so they are not checked here.

use axum::http::{header, HeaderMap, Method, Uri};

use super::AuthError;

/// The origins, besides the request's own, whose pages may write with the
/// cookie: `--cors-origin`'s explicit origins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins(Vec<String>);

impl AllowedOrigins {
    /// From the `--cors-origin` values. `*` adds nothing: it lets no
    /// cookie travel, so no cookie request can come from it.
    pub fn new(origins: &[String]) -> Self {
        Self(
            origins
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .filter(|o| o != "*" && !o.is_empty())
                .collect(),
        )
    }

    fn contains(&self, origin: &str) -> bool {
        self.0.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }
}

/// Whether a request whose token came from the cookie may use it; the
/// error says why not.
pub fn check(
    method: &Method,
    headers: &HeaderMap,
    uri: &Uri,
    allowed: &AllowedOrigins,
) -> Result<(), AuthError> {
    if method == Method::GET || method == Method::HEAD {
        return Ok(());
    }
    if !is_json(headers) {
        return Err(AuthError::Csrf(format!(
            "a token from the rill_token cookie is accepted for {method} only in a JSON request (`Content-Type: application/json`)"
        )));
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Err(AuthError::Csrf(format!(
            "a token from the rill_token cookie is accepted for {method} only with an `Origin` header"
        )));
    };
    if allowed.contains(origin) || same_origin(origin, headers, uri) {
        return Ok(());
    }
    Err(AuthError::Csrf(format!(
        "a token from the rill_token cookie is not accepted for {method} from this `Origin`: it is neither this site nor a --cors-origin"
    )))
}

/// Whether the body is declared JSON: `application/json` or a `+json` type.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || m.ends_with("+json")
        })
}

/// Whether `origin` (`scheme://host[:port]`) names the host the request
/// was sent to: its `Host` header, or the authority of an HTTP/2 request.
/// The scheme is not compared, because a proxy in front may end TLS.
fn same_origin(origin: &str, headers: &HeaderMap, uri: &Uri) -> bool {
    let Some(origin_host) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    host.is_some_and(|h| !h.is_empty() && h.eq_ignore_ascii_case(origin_host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_static(v));
        }
        h
    }

    fn allowed() -> AllowedOrigins {
        AllowedOrigins::new(&["https://App.example/".into(), "*".into()])
    }

    #[test]
    fn reads_are_always_allowed() {
        let uri = Uri::from_static("/v1/streams/a");
        for m in [Method::GET, Method::HEAD] {
            assert!(check(&m, &HeaderMap::new(), &uri, &allowed()).is_ok());
        }
    }

    #[test]
    fn writes_need_json_and_an_allowed_origin() {
        use header::{CONTENT_TYPE as CT, HOST, ORIGIN};
        let uri = Uri::from_static("/v1/streams/a");
        let json = (CT, "application/json; charset=utf-8");
        let host = (HOST, "rill.example:8443");
        let ok: &[&[(header::HeaderName, &'static str)]] = &[
            &[json.clone(), (ORIGIN, "https://app.example")],
            &[json.clone(), (ORIGIN, "https://APP.example")],
            &[
                json.clone(),
                host.clone(),
                (ORIGIN, "https://rill.example:8443"),
            ],
            &[
                (CT, "application/merge-patch+json"),
                host.clone(),
                (ORIGIN, "http://rill.example:8443"),
            ],
        ];
        for h in ok {
            for m in [Method::POST, Method::DELETE, Method::PUT] {
                assert!(
                    check(&m, &headers(h), &uri, &allowed()).is_ok(),
                    "{m} {h:?}"
                );
            }
        }
        let refused: &[&[(header::HeaderName, &'static str)]] = &[
            &[],
            &[(CT, "text/plain"), (ORIGIN, "https://app.example")],
            &[
                (CT, "application/x-www-form-urlencoded"),
                (ORIGIN, "https://app.example"),
            ],
            &[
                (CT, "multipart/form-data"),
                host.clone(),
                (ORIGIN, "https://rill.example:8443"),
            ],
            std::slice::from_ref(&json),
            &[json.clone(), host.clone()],
            &[json.clone(), (ORIGIN, "null")],
            &[json.clone(), (ORIGIN, "*")],
            &[json.clone(), (ORIGIN, "https://evil.example")],
            &[json.clone(), (ORIGIN, "https://app.example.evil.example")],
            &[json.clone(), host.clone(), (ORIGIN, "https://rill.example")],
            &[
                json.clone(),
                host.clone(),
                (ORIGIN, "https://rill.example:8443/"),
            ],
            &[json.clone(), host.clone(), (ORIGIN, "rill.example:8443")],
        ];
        for h in refused {
            let err = check(&Method::POST, &headers(h), &uri, &allowed()).unwrap_err();
            assert!(matches!(err, AuthError::Csrf(_)), "{h:?}");
            assert!(err.to_string().contains("Authorization: Bearer"), "{err}");
        }
    }

    #[test]
    fn an_http2_request_is_compared_with_its_authority() {
        let uri = Uri::from_static("https://rill.example/v1/streams/a");
        let h = headers(&[
            (header::CONTENT_TYPE, "application/json"),
            (header::ORIGIN, "https://rill.example"),
        ]);
        assert!(check(&Method::POST, &h, &uri, &AllowedOrigins::default()).is_ok());
        let other = Uri::from_static("https://other.example/v1/streams/a");
        assert!(check(&Method::POST, &h, &other, &AllowedOrigins::default()).is_err());
    }

    #[test]
    fn a_wildcard_cors_origin_allows_no_cookie_writes() {
        assert_eq!(
            AllowedOrigins::new(&["*".into()]),
            AllowedOrigins::default()
        );
    }
}
