//! The accept loop over real HTTP: both protocol versions are served, and
//! shutdown closes idle keep-alive connections instead of waiting out the
//! drain bound.
mod common;

use std::time::Duration;

use common::TestServer;

#[tokio::test]
async fn http1_and_http2_prior_knowledge_are_served() {
    let server = TestServer::start(&[]);
    let h1 = reqwest::Client::new()
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("http/1.1 request");
    assert_eq!(h1.status().as_u16(), 200);
    assert_eq!(h1.version(), reqwest::Version::HTTP_11);
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client")
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("h2c request");
    assert_eq!(h2.status().as_u16(), 200);
    assert_eq!(h2.version(), reqwest::Version::HTTP_2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_keep_alive_connections_at_once() {
    // A drain bound far longer than the wait below: exiting in time means
    // the idle connection was closed, not waited out.
    let mut server = TestServer::start(&["--shutdown-timeout-secs", "60"]);
    let client = reqwest::Client::new();
    let res = client
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200);
    let _ = res.bytes().await;
    // The connection now sits idle in the client's pool.
    let status = tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(20)))
        .await
        .expect("join");
    let status = status.expect("server exited before the drain bound");
    assert!(status.success(), "{status:?}");
    drop(client);
}
