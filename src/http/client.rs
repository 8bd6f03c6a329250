//! The browser client, served by the server it talks to: `GET /rill.js`
//! (one dependency-free ES module) and `GET /rill.d.ts` (its types).
//!
//! Both are compiled into the binary, so the client a page imports is
//! always the one written for this server's wire contract. The URL carries
//! no version, so the answer says `no-cache` with an `ETag`: a browser
//! keeps its copy and asks once per page load whether it is still current
//! (`304`), and an upgraded server is picked up at the next load. Anyone
//! may import them (`Access-Control-Allow-Origin: *`, no credentials): they
//! are public code, and a page on another origin imports the module with a
//! CORS request.

use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::store::Fnv;

const RILL_JS: &str = include_str!("../../static/rill.js");
const RILL_D_TS: &str = include_str!("../../static/rill.d.ts");

/// `GET /rill.js`: the client module.
#[utoipa::path(get, path = "/rill.js", tag = "client",
    responses(
        (status = 200, content_type = "text/javascript", description = "rill.js: follows streams and generations, resumes across reloads, shares one connection per stream across tabs (see docs/client.md)"),
        (status = 304, description = "The copy named by If-None-Match is current"),
    ))]
pub async fn script(headers: HeaderMap) -> Response {
    static TAG: OnceLock<String> = OnceLock::new();
    serve(
        &headers,
        RILL_JS,
        "text/javascript; charset=utf-8",
        TAG.get_or_init(|| etag(RILL_JS)),
    )
}

/// `GET /rill.d.ts`: the client's TypeScript declarations.
#[utoipa::path(get, path = "/rill.d.ts", tag = "client",
    responses(
        (status = 200, content_type = "application/typescript", description = "TypeScript declarations of rill.js"),
        (status = 304, description = "The copy named by If-None-Match is current"),
    ))]
pub async fn types(headers: HeaderMap) -> Response {
    static TAG: OnceLock<String> = OnceLock::new();
    serve(
        &headers,
        RILL_D_TS,
        "application/typescript; charset=utf-8",
        TAG.get_or_init(|| etag(RILL_D_TS)),
    )
}

/// A strong validator of `text` for this build: its hash and the version.
fn etag(text: &str) -> String {
    let mut h = Fnv::default();
    h.write(text.as_bytes());
    format!("\"{}-{:016x}\"", env!("CARGO_PKG_VERSION"), h.0)
}

/// Whether an `If-None-Match` value names `tag` (or is `*`).
fn matches(if_none_match: &str, tag: &str) -> bool {
    if_none_match
        .split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == tag || t == "*")
}

fn serve(
    headers: &HeaderMap,
    body: &'static str,
    content_type: &'static str,
    tag: &str,
) -> Response {
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| matches(v, tag));
    let mut res = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    };
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_name_the_text_and_match_as_http_says() {
        let tag = etag("a");
        assert_ne!(tag, etag("b"));
        assert!(tag.starts_with('"') && tag.ends_with('"'));
        assert!(matches(&tag, &tag));
        assert!(matches(&format!("\"x\", W/{tag}"), &tag));
        assert!(matches("*", &tag));
        assert!(!matches("\"other\"", &tag));
    }

    #[test]
    fn the_module_is_an_es_module_with_its_types_beside_it() {
        assert!(RILL_JS.contains("export function follow"));
        assert!(RILL_D_TS.contains("export declare function follow"));
    }
}
