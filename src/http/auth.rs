//! The auth guard: reads a token from the request, checks it, and decides
//! from the route whether it is enough.
//!
//! Token sources, first found wins: `Authorization: Bearer <jwt>`, the
//! `rill_token` cookie (what an `EventSource` sends, since it cannot set
//! headers), then `?access_token=<jwt>`. A URL ends up in logs and history,
//! so a query token must expire within `--auth-query-token-max-secs`.
//!
//! The answers: `401` with `WWW-Authenticate: Bearer` when a needed token is
//! missing or invalid, `403` when a valid token does not cover the stream or
//! action. An event stream read with a token is ended at the token's expiry
//! with a `retry:` hint, so the client reconnects and must show a fresh
//! token. Which route needs what is [`need`]; `docs/security.md` explains it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath, Query, RawPathParams, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures_util::StreamExt;

use crate::auth::{AuthError, Grant, Right, Verifier};
use crate::sse::encode_retry;

/// The cookie an `EventSource` page carries its token in.
pub const TOKEN_COOKIE: &str = "rill_token";
/// The URL parameter for a short-lived token.
pub const TOKEN_PARAM: &str = "access_token";

/// What the guard needs to decide.
#[derive(Debug, Clone)]
pub struct Guard {
    /// Checks tokens.
    pub verifier: Verifier,
    /// Longest remaining lifetime a `?access_token=` may have.
    pub query_token_max: Duration,
    /// The `retry:` hint sent when a stream ends at its token's expiry.
    pub retry_ms: u64,
}

/// What a route asks of the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Nothing: open to all.
    Nothing,
    /// Any valid token.
    Token,
    /// A right on the named stream.
    Stream(Right, String),
    /// The right to start and cancel generations.
    Generate,
}

/// What the route `path` (as routed, e.g. `/v1/streams/{name}`) needs for
/// `method`, given its path parameter `name`.
///
/// Routes not listed need a valid token: a new route is closed until it is
/// placed here on purpose.
pub fn need(method: &Method, path: &str, name: Option<&str>) -> Need {
    let stream = |right| Need::Stream(right, name.unwrap_or_default().to_owned());
    match (path, method) {
        ("/" | "/sse" | "/healthz" | "/metrics" | "/openapi.json", _) => Need::Nothing,
        ("/v1/streams/{name}", &Method::GET | &Method::HEAD) => stream(Right::Subscribe),
        ("/v1/streams/{name}", _) => stream(Right::Publish),
        ("/v1/generations" | "/v1/generations/{id}/cancel", _) => Need::Generate,
        _ => Need::Token,
    }
}

/// The middleware: lets the request through, with its [`Grant`] in the
/// extensions, or answers `401`/`403`.
pub async fn guard(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let (mut parts, body) = req.into_parts();
    // Percent-decoded exactly as the handler's `Path` will see it.
    let name = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .ok()
        .and_then(|p| {
            p.iter()
                .find(|(k, _)| *k == "name")
                .map(|(_, v)| v.to_owned())
        });
    let need = need(&parts.method, &route, name.as_deref());
    if need == Need::Nothing {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let grant = match authenticate(&guard, &parts.headers, &parts.uri) {
        Ok(g) => g,
        Err(e) => return refuse(e),
    };
    let allowed = match &need {
        Need::Nothing | Need::Token => true,
        Need::Generate => grant.may_generate(),
        // A name outside the grammar is the handler's 400 to give.
        Need::Stream(right, name) => {
            crate::ids::StreamName::new(name.clone()).is_err() || grant.allows(*right, name)
        }
    };
    if !allowed {
        let what = match need {
            Need::Stream(Right::Publish, n) => format!("publishing to `{n}`"),
            Need::Stream(Right::Subscribe, n) => format!("subscribing to `{n}`"),
            _ => "starting or cancelling generations".into(),
        };
        return refuse(AuthError::Forbidden(what));
    }
    let remaining = grant.remaining();
    let mut req = Request::from_parts(parts, body);
    req.extensions_mut().insert(grant);
    let res = next.run(req).await;
    end_at_expiry(res, remaining, guard.retry_ms)
}

/// Finds and checks the request's token.
pub fn authenticate(
    guard: &Guard,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
) -> Result<Grant, AuthError> {
    if let Some(t) = bearer(headers).or_else(|| cookie(headers, TOKEN_COOKIE)) {
        return guard.verifier.verify(&t);
    }
    let query =
        Query::<Vec<(String, String)>>::try_from_uri(uri).map_err(|_| AuthError::Missing)?;
    let Some((_, t)) = query.0.into_iter().find(|(k, _)| k == TOKEN_PARAM) else {
        return Err(AuthError::Missing);
    };
    let grant = guard.verifier.verify(&t)?;
    if grant.remaining() > guard.query_token_max {
        return Err(AuthError::Invalid(format!(
            "a ?{TOKEN_PARAM}= token must expire within {}s; send longer-lived tokens in a header or cookie",
            guard.query_token_max.as_secs()
        )));
    }
    Ok(grant)
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
}

fn refuse(e: AuthError) -> Response {
    let (status, kind) = match e {
        AuthError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
        _ => (StatusCode::UNAUTHORIZED, "unauthorized"),
    };
    metrics::counter!(crate::metrics::REJECTED, "reason" => kind).increment(1);
    let body = serde_json::json!({ "error": kind, "message": e.to_string() });
    let mut res = (status, Json(body)).into_response();
    let challenge = match e {
        AuthError::Missing => "Bearer realm=\"rill\"",
        AuthError::Invalid(_) => "Bearer realm=\"rill\", error=\"invalid_token\"",
        AuthError::Forbidden(_) => "Bearer realm=\"rill\", error=\"insufficient_scope\"",
    };
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    res
}

/// Ends an event-stream response when its token expires: a comment saying
/// why, a `retry:` hint, then the end of the body. The client reconnects
/// and must present a fresh token.
fn end_at_expiry(res: Response, remaining: Duration, retry_ms: u64) -> Response {
    let is_stream = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !is_stream || res.status() != StatusCode::OK {
        return res;
    }
    let (parts, body) = res.into_parts();
    let deadline = tokio::time::Instant::now() + remaining;
    let body =
        futures_util::stream::unfold(Some(body.into_data_stream()), move |state| async move {
            let mut data = state?;
            tokio::select! {
                biased;
                next = data.next() => next.map(|chunk| (chunk, Some(data))),
                _ = tokio::time::sleep_until(deadline) => {
                    let mut last = b": token expired\n".to_vec();
                    last.extend_from_slice(&encode_retry(retry_ms));
                    Some((Ok(Bytes::from(last)), None))
                }
            }
        });
    Response::from_parts(parts, Body::from_stream(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_what_the_docs_say() {
        let stream = |r| Need::Stream(r, "s".into());
        let n = Some("s");
        assert_eq!(
            need(&Method::GET, "/v1/streams/{name}", n),
            stream(Right::Subscribe)
        );
        assert_eq!(
            need(&Method::POST, "/v1/streams/{name}", n),
            stream(Right::Publish)
        );
        assert_eq!(
            need(&Method::DELETE, "/v1/streams/{name}", n),
            stream(Right::Publish)
        );
        assert_eq!(
            need(&Method::HEAD, "/v1/streams/{name}", n),
            stream(Right::Subscribe)
        );
        assert_eq!(need(&Method::POST, "/v1/generations", None), Need::Generate);
        assert_eq!(
            need(&Method::POST, "/v1/generations/{id}/cancel", None),
            Need::Generate
        );
        assert_eq!(need(&Method::GET, "/v1/streams", None), Need::Token);
        assert_eq!(need(&Method::GET, "/v1/something-new", None), Need::Token);
        for open in ["/", "/sse", "/healthz", "/metrics", "/openapi.json"] {
            assert_eq!(need(&Method::GET, open, None), Need::Nothing, "{open}");
        }
    }

    #[test]
    fn reads_bearer_and_cookie() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  abc.def.ghi "),
        );
        assert_eq!(bearer(&h).as_deref(), Some("abc.def.ghi"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; rill_token_x=no"),
        );
        assert_eq!(cookie(&h, TOKEN_COOKIE), None);
        h.append(
            header::COOKIE,
            HeaderValue::from_static("b=2; rill_token=\"t.o.k\""),
        );
        assert_eq!(cookie(&h, TOKEN_COOKIE).as_deref(), Some("t.o.k"));
    }
}
