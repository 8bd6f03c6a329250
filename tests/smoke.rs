//! The seed's demo over real HTTP.
mod common;

use std::time::Duration;

use common::{SseClient, TestServer};

#[tokio::test]
async fn sse_streams_the_recorded_answer_then_done() {
    let server = TestServer::start(&["--mock-delay-ms", "1"]);
    let mut c = SseClient::open(&server.url("/sse"), &[]).await;
    assert_eq!(c.status, 200);
    let events = c.collect(Duration::from_secs(20)).await;
    assert_eq!(events.len(), 70);
    let text: String = events[..69].iter().map(|e| e.data.as_str()).collect();
    assert!(text.starts_with("Here is a two-line summary about the planets:\n\n Our"));
    assert_eq!(events[69].event_type, "done");
}
