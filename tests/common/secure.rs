//! Support for TLS and limit tests: the test-only certificate, a client
//! that trusts its CA, and reading one value from `/metrics`.

use super::jwt::key_path;

/// Flags that make rill serve HTTPS with the test-only certificate.
pub fn tls_args() -> Vec<String> {
    vec![
        "--tls-cert".into(),
        key_path("test-only-tls-cert.pem"),
        "--tls-key".into(),
        key_path("test-only-tls-key.pem"),
    ]
}

/// A client from `builder` that trusts the test-only CA and nothing else.
pub fn tls_client(builder: reqwest::ClientBuilder) -> reqwest::Client {
    let ca = std::fs::read(key_path("test-only-tls-ca.pem")).unwrap();
    builder
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap()
}

/// The value of the sample `series` (name and labels, as Prometheus
/// renders them) in `/metrics` text, if present.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The `/metrics` text of the server at `base`, read over `client`.
pub async fn scrape(client: &reqwest::Client, base: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
