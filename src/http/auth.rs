//! The auth guard: reads a token from the request, checks it, and decides
//! from the route whether it is enough.
//!
//! Token sources, first found wins: `Authorization: Bearer <jwt>`, the
//! `rill_token` cookie (what an `EventSource` sends, since it cannot set
//! headers), then `?access_token=<jwt>`. A URL ends up in logs and history,
//! so a query token must expire within `--auth-query-token-max-secs`. A
//! cookie is sent by the browser whoever made the request, so a cookie
//! token must also pass [`crate::auth::csrf`].
//!
//! The answers: `401` with `WWW-Authenticate: Bearer` when a needed token is
//! missing or invalid, `403` when a valid token does not cover the stream or
//! action, or came from the cookie on a request that may not use it. An
//! event stream read with a token is ended at the token's expiry with a
//! `retry:` hint, so the client reconnects and must show a fresh token.
//! Which route needs what is [`need`]; `docs/security.md` explains it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath, Query, RawPathParams, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures_util::StreamExt;

use crate::auth::csrf::{self, AllowedOrigins};
use crate::auth::{AuthError, Grant, Right, Verifier};
use crate::generation::GENERATION_PREFIX;
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
    /// Origins besides the request's own whose pages may write with a
    /// cookie token.
    pub origins: AllowedOrigins,
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
    /// `generate: true`: cancelling generations.
    Generate,
    /// `generate: true` and a `sub`, which will own the generation.
    StartGeneration,
    /// What the inner need asks, or else a token with a `sub`, which the
    /// handler lets through only if that `sub` started the generation.
    OwnerOr(Box<Need>),
}

/// Put in a request's extensions beside its [`Grant`] when the guard let
/// the request through only so that the handler can check ownership: the
/// token's patterns (or `generate`) do not cover the generation, and the
/// request is allowed only if the token's `sub` started it. Without this
/// marker the token's rights cover the request already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerOnly;

/// What the route `path` (as routed, e.g. `/v1/streams/{name}`) needs for
/// `method`, given its path parameter `name`.
///
/// Routes not listed need a valid token: a new route is closed until it is
/// placed here on purpose.
pub fn need(method: &Method, path: &str, name: Option<&str>) -> Need {
    let name = name.unwrap_or_default();
    let stream = |right| Need::Stream(right, name.to_owned());
    let owner_or = |need| Need::OwnerOr(Box::new(need));
    let generation = name.starts_with(GENERATION_PREFIX);
    match (path, method) {
        (
            "/" | "/sse" | "/rill.js" | "/rill.d.ts" | "/v1/probe" | "/healthz" | "/metrics"
            | "/openapi.json",
            _,
        ) => Need::Nothing,
        ("/v1/streams/{name}", &Method::GET | &Method::HEAD) if generation => {
            owner_or(stream(Right::Subscribe))
        }
        ("/v1/streams/{name}", &Method::DELETE) if generation => owner_or(stream(Right::Publish)),
        ("/v1/streams/{name}", &Method::GET | &Method::HEAD) => stream(Right::Subscribe),
        ("/v1/streams/{name}", _) => stream(Right::Publish),
        ("/v1/stream/{name}", &Method::GET | &Method::HEAD) if generation => {
            owner_or(stream(Right::Subscribe))
        }
        ("/v1/stream/{name}", &Method::GET | &Method::HEAD) => stream(Right::Subscribe),
        ("/v1/stream/{name}", _) => stream(Right::Publish),
        ("/v1/generations" | "/v1/chat/completions" | "/v1/responses", _) => Need::StartGeneration,
        ("/v1/generations/{id}/cancel" | "/v1/responses/{id}/cancel", _) => {
            owner_or(Need::Generate)
        }
        // Any token; the handler lets only the generation's owner (or a
        // token granted its stream) read it, as for its stream.
        ("/v1/responses/{id}", _) => Need::Token,
        _ => Need::Token,
    }
}

/// How a valid token meets a route's need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Its rights cover the request.
    Granted,
    /// Only if its `sub` owns the generation, which the handler checks.
    OwnerOnly,
}

/// Whether `grant` meets `need`, and how.
fn decide(need: &Need, grant: &Grant) -> Result<Access, AuthError> {
    let refuse = |what: &str| Err(AuthError::Forbidden(what.to_owned()));
    match need {
        Need::Nothing | Need::Token => Ok(Access::Granted),
        Need::Generate if grant.may_generate() => Ok(Access::Granted),
        Need::Generate => refuse("starting or cancelling generations"),
        Need::StartGeneration if !grant.may_generate() => {
            refuse("starting or cancelling generations")
        }
        Need::StartGeneration if grant.sub().is_none() => refuse(
            "starting a generation without a `sub` claim: a generation belongs to the `sub` that starts it, so tokens that start generations need a `sub`",
        ),
        Need::StartGeneration => Ok(Access::Granted),
        // A name outside the grammar is the handler's 400 to give.
        Need::Stream(right, name) => {
            if crate::ids::StreamName::new(name.clone()).is_err() || grant.allows(*right, name) {
                return Ok(Access::Granted);
            }
            match right {
                Right::Publish => Err(AuthError::Forbidden(format!("publishing to `{name}`"))),
                Right::Subscribe => Err(AuthError::Forbidden(format!("subscribing to `{name}`"))),
            }
        }
        Need::OwnerOr(inner) => match decide(inner, grant) {
            Ok(access) => Ok(access),
            // The handler enforces ownership: a generation may be read,
            // deleted and cancelled by the token `sub` that started it, and
            // only the handler knows who that was. So a token the patterns
            // do not cover is let through with its `Grant` and [`OwnerOnly`]
            // in the request's extensions, and the handler must refuse it
            // unless its `sub` owns the generation. A token without a `sub`
            // owns nothing and is refused here.
            Err(_) if grant.sub().is_some() => Ok(Access::OwnerOnly),
            Err(e) => Err(e),
        },
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
    let shape = if crate::http::openai::speaks_openai(&route) {
        Shape::OpenAi
    } else {
        Shape::Rill
    };
    let admitted = admit(
        &guard,
        &parts.method,
        &route,
        name.as_deref(),
        &parts.headers,
        &parts.uri,
    );
    let admitted = match admitted {
        Ok(admitted) => admitted,
        Err(e) => return refuse_as(e, shape),
    };
    let Some((grant, access)) = admitted else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    let deadline = grant.ends_at(Instant::now());
    let mut req = Request::from_parts(parts, body);
    req.extensions_mut().insert(grant);
    if access == Access::OwnerOnly {
        req.extensions_mut().insert(OwnerOnly);
    }
    let res = next.run(req).await;
    end_at_expiry(res, deadline, guard.retry_ms, shape)
}

/// The shape of a refusal, and of a stream's end at expiry: rill's own,
/// or OpenAI's for the routes its SDKs call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Rill,
    OpenAi,
}

/// The guard's decision for a request to `route` (as routed, with its
/// `name` parameter decoded): nothing needed (`None`), the token's grant
/// and how it was admitted, or why not (answer it with [`refuse`]). Every path that
/// serves a route asks here, the router's middleware and rill's own
/// HTTP/1.1 front alike.
pub fn admit(
    guard: &Guard,
    method: &Method,
    route: &str,
    name: Option<&str>,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
) -> Result<Option<(Grant, Access)>, AuthError> {
    let need = need(method, route, name);
    if need == Need::Nothing {
        return Ok(None);
    }
    let grant = authenticate(guard, method, headers, uri)?;
    let access = decide(&need, &grant)?;
    Ok(Some((grant, access)))
}

/// Finds and checks the request's token; one from the cookie must also be
/// one this request may use ([`csrf::check`]).
pub fn authenticate(
    guard: &Guard,
    method: &Method,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
) -> Result<Grant, AuthError> {
    if let Some(t) = bearer(headers) {
        return guard.verifier.verify(&t);
    }
    if let Some(t) = cookie(headers, TOKEN_COOKIE) {
        let grant = guard.verifier.verify(&t)?;
        csrf::check(method, headers, uri, &guard.origins)?;
        return Ok(grant);
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

/// The answer to a request the guard refused: `401` or `403`, with the
/// `WWW-Authenticate` challenge.
pub fn refuse(e: AuthError) -> Response {
    refuse_as(e, Shape::Rill)
}

fn refuse_as(e: AuthError, shape: Shape) -> Response {
    let (status, kind) = match e {
        AuthError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
        AuthError::Csrf(_) => (StatusCode::FORBIDDEN, "csrf"),
        AuthError::Missing | AuthError::Invalid(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
    };
    metrics::counter!(crate::metrics::REJECTED, "reason" => kind).increment(1);
    let body = match shape {
        Shape::Rill => serde_json::json!({ "error": kind, "message": e.to_string() }),
        Shape::OpenAi => {
            let openai_type = if status == StatusCode::UNAUTHORIZED {
                "authentication_error"
            } else {
                "permission_error"
            };
            crate::http::openai::error::body(&e.to_string(), openai_type, None, Some(kind))
        }
    };
    let mut res = (status, Json(body)).into_response();
    let challenge = match e {
        AuthError::Missing | AuthError::Csrf(_) => "Bearer realm=\"rill\"",
        AuthError::Invalid(_) => "Bearer realm=\"rill\", error=\"invalid_token\"",
        AuthError::Forbidden(_) => "Bearer realm=\"rill\", error=\"insufficient_scope\"",
    };
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    res
}

/// When an event-stream response must end because its token expires, for
/// a delivery path that serves the stream without polling its body.
#[derive(Debug, Clone, Copy)]
pub struct StreamExpiry(pub tokio::time::Instant);

/// Ends an event-stream response at `deadline`, when its token expires: a
/// comment saying why, a `retry:` hint, then the end of the body. The
/// client reconnects and must present a fresh token. Without a deadline
/// (one past what the clock can hold) the stream is left as it is. An
/// OpenAI-shaped stream gets the comment alone: a `retry:` line breaks the
/// Python SDK's parser, and its clients resume by sequence number.
fn end_at_expiry(
    res: Response,
    deadline: Option<Instant>,
    retry_ms: u64,
    shape: Shape,
) -> Response {
    let is_stream = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let Some(deadline) = deadline.filter(|_| is_stream && res.status() == StatusCode::OK) else {
        return res;
    };
    let (mut parts, body) = res.into_parts();
    let deadline = tokio::time::Instant::from_std(deadline);
    // For the parked delivery path, which serves the stream itself.
    parts.extensions.insert(StreamExpiry(deadline));
    let body =
        futures_util::stream::unfold(Some(body.into_data_stream()), move |state| async move {
            let mut data = state?;
            tokio::select! {
                biased;
                next = data.next() => next.map(|chunk| (chunk, Some(data))),
                _ = tokio::time::sleep_until(deadline) => {
                    let mut last = b": token expired\n".to_vec();
                    if shape == Shape::Rill {
                        last.extend_from_slice(&encode_retry(retry_ms));
                    }
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
        let (get, head, post, delete) = (Method::GET, Method::HEAD, Method::POST, Method::DELETE);
        let route = "/v1/streams/{name}";
        let stream = |r, n: &str| Need::Stream(r, n.into());
        let owner_or = |n| Need::OwnerOr(Box::new(n));
        let cases = [
            (&get, route, Some("s"), stream(Right::Subscribe, "s")),
            (&head, route, Some("s"), stream(Right::Subscribe, "s")),
            (&post, route, Some("s"), stream(Right::Publish, "s")),
            (&delete, route, Some("s"), stream(Right::Publish, "s")),
            // rill's own streams: patterns only (see `Pattern::matches`).
            (
                &get,
                route,
                Some("_dashboard"),
                stream(Right::Subscribe, "_dashboard"),
            ),
            (
                &delete,
                route,
                Some("_dashboard"),
                stream(Right::Publish, "_dashboard"),
            ),
            // Generations: patterns, or the owner, whom the handler checks.
            (
                &get,
                route,
                Some("gen-1"),
                owner_or(stream(Right::Subscribe, "gen-1")),
            ),
            (
                &head,
                route,
                Some("gen-1"),
                owner_or(stream(Right::Subscribe, "gen-1")),
            ),
            (
                &delete,
                route,
                Some("gen-1"),
                owner_or(stream(Right::Publish, "gen-1")),
            ),
            (&post, route, Some("gen-1"), stream(Right::Publish, "gen-1")),
            (
                &get,
                route,
                Some("xgen-1"),
                stream(Right::Subscribe, "xgen-1"),
            ),
            (&post, "/v1/generations", None, Need::StartGeneration),
            (
                &post,
                "/v1/generations/{id}/cancel",
                None,
                owner_or(Need::Generate),
            ),
            (&post, "/v1/chat/completions", None, Need::StartGeneration),
            (&post, "/v1/responses", None, Need::StartGeneration),
            (&get, "/v1/responses/{id}", None, Need::Token),
            (
                &post,
                "/v1/responses/{id}/cancel",
                None,
                owner_or(Need::Generate),
            ),
            (&get, "/v1/models", None, Need::Token),
            (&get, "/v1/streams", None, Need::Token),
            (&get, "/dashboard", None, Need::Token),
            (&get, "/v1/something-new", None, Need::Token),
            (&post, "/v1/something-new", None, Need::Token),
        ];
        for (method, path, name, want) in cases {
            assert_eq!(need(method, path, name), want, "{method} {path} {name:?}");
        }
        for open in [
            "/",
            "/sse",
            "/rill.js",
            "/rill.d.ts",
            "/v1/probe",
            "/healthz",
            "/metrics",
            "/openapi.json",
        ] {
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
