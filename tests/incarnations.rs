//! A stream that is made anew (deleted then published to, lost with a
//! memory-store node's restart, expired) is a new incarnation: its ids
//! carry a new prefix, so an id a client holds from before never names a
//! different event. It gets `event: reset`, never a silent skip.
mod common;

use std::time::Duration;

use common::{delete, publish, SseClient, TestServer};
use rill::sse::ParsedEvent;

const WAIT: Duration = Duration::from_secs(10);

fn reset_json(ev: &ParsedEvent) -> serde_json::Value {
    assert_eq!(ev.event_type, "reset", "{ev:?}");
    serde_json::from_str(&ev.data).unwrap()
}

/// Resumes `stream` after `id` and reads `n` events.
async fn resume(server: &TestServer, stream: &str, id: &str, n: usize) -> Vec<ParsedEvent> {
    let url = server.url(&format!("/v1/streams/{stream}"));
    let mut c = SseClient::open(&url, &[("last-event-id", id)]).await;
    assert_eq!(c.status, 200);
    c.take(n, WAIT).await
}

#[tokio::test]
async fn an_id_from_before_a_delete_gets_a_reset_not_a_skip() {
    let server = TestServer::start(&[]);
    let mut old = Vec::new();
    for i in 0..5 {
        old.push(publish(&server.base, "news", &format!("old {i}"), None).await);
    }
    assert_eq!(delete(&server.base, "news").await.status().as_u16(), 204);
    let mut new = Vec::new();
    for i in 0..8 {
        new.push(publish(&server.base, "news", &format!("new {i}"), None).await);
    }
    let (old_epoch, old_n) = old[2].rsplit_once('.').unwrap();
    let (new_epoch, new_n) = new[2].rsplit_once('.').unwrap();
    assert_eq!(old_n, new_n, "the same event number in both");
    assert_ne!(old_epoch, new_epoch, "but another incarnation");
    // The client holds old id 3; the new stream has events past 3. Today's
    // answer is a reset and everything retained, never "after 3".
    let got = resume(&server, "news", &old[2], 9).await;
    let reset = reset_json(&got[0]);
    assert_eq!(reset["reason"], "unknown");
    assert_eq!(reset["requested"], old[2].as_str());
    let data: Vec<&str> = got[1..].iter().map(|e| e.data.as_str()).collect();
    assert_eq!(data, (0..8).map(|i| format!("new {i}")).collect::<Vec<_>>());
    let ids: Vec<&str> = got[1..].iter().map(|e| e.last_event_id.as_str()).collect();
    assert_eq!(ids, new);
}

#[tokio::test]
async fn an_id_from_before_a_restart_gets_a_reset() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let args = ["serve", "--listen", listen.as_str()];
    let server = TestServer::start_exact(&args, &[]);
    let mut before = Vec::new();
    for i in 0..3 {
        before.push(publish(&server.base, "feed", &format!("before {i}"), None).await);
    }
    drop(server);
    let server = TestServer::start_exact(&args, &[]);
    for i in 0..6 {
        publish(&server.base, "feed", &format!("after {i}"), None).await;
    }
    let got = resume(&server, "feed", &before[2], 7).await;
    assert_eq!(reset_json(&got[0])["reason"], "unknown");
    assert_eq!(got[1].data, "after 0", "everything retained follows");
    assert_eq!(got[6].data, "after 5");
}

#[tokio::test]
async fn a_plain_number_is_no_id_of_this_stream_but_zero_still_means_from_the_start() {
    let server = TestServer::start(&[]);
    for i in 0..4 {
        publish(&server.base, "nums", &i.to_string(), None).await;
    }
    let got = resume(&server, "nums", "2", 5).await;
    assert_eq!(reset_json(&got[0])["reason"], "unknown");
    let url = server.url("/v1/streams/nums?lastEventId=0");
    let mut c = SseClient::open(&url, &[]).await;
    let all = c.take(4, WAIT).await;
    assert!(all.iter().all(|e| e.event_type == "message"));
    assert_eq!(all[0].data, "0");
}
