//! Named streams over real HTTP: what is published arrives exact, ids grow,
//! and resuming from any id gives exactly the rest, with `event: reset`
//! wherever something cannot be replayed.
mod common;

use std::time::Duration;

use common::{epoch, post_raw, publish, seq, SseClient, TestServer};
use rill::sse::ParsedEvent;

const WAIT: Duration = Duration::from_secs(20);
/// How long to wait to be sure nothing more comes.
const QUIET: Duration = Duration::from_millis(300);

/// Data that breaks naive encoders, and what a browser sees for each.
const TRICKY: [(&str, &str); 10] = [
    ("a\rb", "a\nb"),
    ("a\r\nb", "a\nb"),
    ("a\nb", "a\nb"),
    ("", ""),
    (
        "héllo 漢字 🚀 \u{2028} \u{85}",
        "héllo 漢字 🚀 \u{2028} \u{85}",
    ),
    ("\n", "\n"),
    ("  two leading spaces", "  two leading spaces"),
    (":\n\n", ":\n\n"),
    ("data: not a field\nid: 99", "data: not a field\nid: 99"),
    ("ends in CR\r", "ends in CR\n"),
];

fn reset_json(ev: &ParsedEvent) -> serde_json::Value {
    assert_eq!(ev.event_type, "reset", "expected reset, got {ev:?}");
    serde_json::from_str(&ev.data).expect("reset data is JSON")
}

fn ids(events: &[ParsedEvent]) -> Vec<u64> {
    events.iter().map(|e| seq(&e.last_event_id)).collect()
}

#[tokio::test]
async fn tricky_data_arrives_exact_live_and_replayed() {
    let server = TestServer::start(&[]);
    let mut live = SseClient::open(&server.url("/v1/streams/tricky"), &[]).await;
    assert_eq!(live.status, 200);
    assert_eq!(
        live.headers["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let mut published = Vec::new();
    for (data, _) in TRICKY {
        published.push(publish(&server.base, "tricky", data, None).await);
    }
    let got = live.take(TRICKY.len(), WAIT).await;
    let mut replay = SseClient::open(&server.url("/v1/streams/tricky?lastEventId=0"), &[]).await;
    let replayed = replay.take(TRICKY.len(), WAIT).await;
    for events in [got, replayed] {
        for ((ev, (_, seen)), id) in events.iter().zip(TRICKY).zip(&published) {
            assert_eq!(ev.data, seen);
            assert_eq!(ev.event_type, "message");
            assert_eq!(&ev.last_event_id, id);
        }
    }
    assert!(live.next_event(QUIET).await.is_none());
}

#[tokio::test]
async fn a_one_mib_event_arrives_exact() {
    let server = TestServer::start(&[]);
    let line = "0123456789abcdefghijklmnopqrstuvwxyzé漢\n";
    let mut data = line.repeat(1024 * 1024 / line.len() + 1);
    while data.len() > 1024 * 1024 {
        data.pop();
    }
    assert_eq!(data.len(), 1024 * 1024);
    let mut live = SseClient::open(&server.url("/v1/streams/big"), &[]).await;
    publish(&server.base, "big", &data, Some("blob")).await;
    let ev = live.take(1, WAIT).await.remove(0);
    assert_eq!(ev.event_type, "blob");
    assert!(ev.data == data, "1 MiB came back different");
    let mut replay = SseClient::open(&server.url("/v1/streams/big?lastEventId=0"), &[]).await;
    assert!(replay.take(1, WAIT).await[0].data == data);
}

#[tokio::test]
async fn json_and_text_bodies_publish() {
    let server = TestServer::start(&[]);
    let b = &server.base;
    let (status, _, body) = post_raw(b, "bodies", "plain\r\ntext", "text/plain").await;
    assert_eq!(status, 201);
    assert_eq!(seq(body["id"].as_str().unwrap()), 1);
    let (status, _, body) = post_raw(b, "bodies", "no content type", "").await;
    assert_eq!((status, body["id"].as_str().map(seq)), (201, Some(2)));
    let (status, _, body) = post_raw(
        b,
        "bodies",
        r#"{"data":"typed","event":"update"}"#,
        "application/json",
    )
    .await;
    assert_eq!((status, body["id"].as_str().map(seq)), (201, Some(3)));
    let (status, _, _) = post_raw(
        b,
        "bodies",
        r#"{"data":{"n":1}}"#,
        "application/json; charset=utf-8",
    )
    .await;
    assert_eq!(status, 201);
    let (status, _, body) = post_raw(b, "bodies", "{not json", "application/json").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "bad_request");
    let (status, _, _) = post_raw(b, "bodies", vec![0xff, 0xfe], "text/plain").await;
    assert_eq!(status, 400, "non-UTF-8 text");

    let mut c = SseClient::open(&server.url("/v1/streams/bodies?lastEventId=0"), &[]).await;
    let got = c.take(4, WAIT).await;
    let seen: Vec<(&str, &str)> = got
        .iter()
        .map(|e| (e.event_type.as_str(), e.data.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("message", "plain\ntext"),
            ("message", "no content type"),
            ("update", "typed"),
            ("message", r#"{"n":1}"#),
        ]
    );
    assert!(c.next_event(QUIET).await.is_none());
}

#[tokio::test]
async fn ids_grow_strictly_and_every_resume_is_the_exact_suffix() {
    let server = TestServer::start(&[]);
    let n = 30u64;
    let mut last = 0;
    let mut incarnation = String::new();
    for i in 1..=n {
        let wire = publish(&server.base, "suffix", &format!("event {i}"), None).await;
        let id = seq(&wire);
        assert!(id > last, "id {id} after {last}");
        last = id;
        incarnation = epoch(&wire).to_owned();
    }
    let checks = (0..=n).flat_map(|from| {
        let base = server.url("/v1/streams/suffix");
        let incarnation = incarnation.clone();
        [true, false].map(move |by_header| {
            let base = base.clone();
            let from_s = if from == 0 {
                "0".to_owned()
            } else {
                format!("{incarnation}.{from}")
            };
            async move {
                let mut c = if by_header {
                    SseClient::open(&base, &[("last-event-id", from_s.as_str())]).await
                } else {
                    SseClient::open(&format!("{base}?lastEventId={from_s}"), &[]).await
                };
                let got = c.take((n - from) as usize, WAIT).await;
                assert_eq!(ids(&got), ((from + 1)..=n).collect::<Vec<_>>());
                for e in &got {
                    assert_eq!(e.data, format!("event {}", seq(&e.last_event_id)));
                }
                assert!(c.next_event(QUIET).await.is_none(), "nothing after the end");
            }
        })
    });
    futures_util::future::join_all(checks).await;
    // The header wins over the query.
    let at = |n: u64| format!("{incarnation}.{n}");
    let mut c = SseClient::open(
        &server.url(&format!("/v1/streams/suffix?lastEventId={}", at(3))),
        &[("last-event-id", at(28).as_str())],
    )
    .await;
    assert_eq!(ids(&c.take(2, WAIT).await), [29, 30]);
    // A repeated query parameter (some reconnecting clients append one per
    // attempt): the last one wins, not a 400.
    let path = format!(
        "/v1/streams/suffix?lastEventId={}&lastEventId={}",
        at(5),
        at(27)
    );
    let mut c = SseClient::open(&server.url(&path), &[]).await;
    assert_eq!(c.status, 200);
    assert_eq!(ids(&c.take(3, WAIT).await), [28, 29, 30]);
}

#[tokio::test]
async fn resume_then_live_has_no_seam() {
    let server = TestServer::start(&[]);
    let mut published = Vec::new();
    for i in 1..=5 {
        published.push(publish(&server.base, "seam", &i.to_string(), None).await);
    }
    let two = published[1].as_str();
    let mut c = SseClient::open(&server.url("/v1/streams/seam"), &[("last-event-id", two)]).await;
    for i in 6..=9 {
        publish(&server.base, "seam", &i.to_string(), None).await;
    }
    assert_eq!(ids(&c.take(7, WAIT).await), (3..=9).collect::<Vec<_>>());
    // No id: start at the live edge.
    let mut edge = SseClient::open(&server.url("/v1/streams/seam"), &[]).await;
    assert!(edge.next_event(QUIET).await.is_none());
    publish(&server.base, "seam", "10", None).await;
    assert_eq!(ids(&edge.take(1, WAIT).await), [10]);
}

#[tokio::test]
async fn an_expired_id_gets_reset_then_the_retained_events() {
    let server = TestServer::start(&["--retention-events", "5"]);
    let mut published = Vec::new();
    for i in 1..=12 {
        published.push(publish(&server.base, "short", &i.to_string(), None).await);
    }
    let at = |n: u64| format!("{}.{n}", epoch(&published[0]));
    let three = at(3);
    let mut c = SseClient::open(
        &server.url("/v1/streams/short"),
        &[("last-event-id", &three)],
    )
    .await;
    let got = c.take(6, WAIT).await;
    let reset = reset_json(&got[0]);
    assert_eq!(reset["reason"], "expired");
    assert_eq!(reset["missed"], 4, "ids 4..=7 are gone");
    assert_eq!(reset["requested"], three.as_str());
    assert_eq!(reset["resume_from"], at(7).as_str());
    assert_eq!(got[0].last_event_id, at(7));
    assert_eq!(ids(&got[1..]), (8..=12).collect::<Vec<_>>());
    assert!(c.next_event(QUIET).await.is_none());

    // `0` asks for everything: what is gone is said first.
    let mut c = SseClient::open(&server.url("/v1/streams/short?lastEventId=0"), &[]).await;
    let got = c.take(6, WAIT).await;
    assert_eq!(reset_json(&got[0])["missed"], 7);
    assert_eq!(ids(&got[1..]), (8..=12).collect::<Vec<_>>());
    // The oldest retained is not a gap.
    let seven = at(7);
    let mut c = SseClient::open(
        &server.url("/v1/streams/short"),
        &[("last-event-id", &seven)],
    )
    .await;
    assert_eq!(ids(&c.take(5, WAIT).await), (8..=12).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_unknown_or_garbage_id_gets_reset_then_the_retained_events() {
    let server = TestServer::start(&[]);
    let mut published = Vec::new();
    for i in 1..=3 {
        published.push(publish(&server.base, "known", &i.to_string(), None).await);
    }
    // Past the newest id of this incarnation, a plain number (ids carry
    // their incarnation), another incarnation's id, and garbage.
    let past = format!("{}.999", epoch(&published[0]));
    for bad in [past.as_str(), "2", "999", "garbage", "abc.2", "-1", "1.5.x"] {
        let mut c =
            SseClient::open(&server.url("/v1/streams/known"), &[("last-event-id", bad)]).await;
        assert_eq!(c.status, 200, "{bad}");
        let got = c.take(4, WAIT).await;
        let reset = reset_json(&got[0]);
        assert_eq!(reset["reason"], "unknown", "{bad}");
        assert_eq!(reset["requested"], bad);
        assert_eq!(ids(&got[1..]), [1, 2, 3], "{bad}");
    }
}

#[tokio::test]
async fn events_older_than_the_age_limit_are_dropped_with_a_reset() {
    let server = TestServer::start(&["--retention-secs", "1", "--keepalive-secs", "60"]);
    for i in 1..=3 {
        publish(&server.base, "aging", &i.to_string(), None).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    publish(&server.base, "aging", "4", None).await;
    let mut c = SseClient::open(&server.url("/v1/streams/aging?lastEventId=0"), &[]).await;
    let got = c.take(2, WAIT).await;
    let reset = reset_json(&got[0]);
    assert_eq!(reset["reason"], "expired");
    assert_eq!(reset["missed"], 3);
    assert_eq!(ids(&got[1..]), [4]);
    let list = common::get_json(server.url("/v1/streams")).await;
    assert_eq!(list["streams"][0]["retained_events"], 1);
}

#[tokio::test]
async fn retention_by_bytes_keeps_the_newest_events() {
    // Each encoded event is 1014 or 1015 bytes (`id: n`, `data: `, 1000
    // bytes, line ends), so 4096 bytes keep the last four.
    let server = TestServer::start(&["--retention-bytes", "4096", "--max-event-bytes", "1000"]);
    for i in 1..=10u64 {
        let data = format!("{i:>1000}");
        publish(&server.base, "heavy", &data, None).await;
    }
    let mut c = SseClient::open(&server.url("/v1/streams/heavy?lastEventId=0"), &[]).await;
    let got = c.take(5, WAIT).await;
    let reset = reset_json(&got[0]);
    assert_eq!(reset["reason"], "expired");
    assert_eq!(reset["missed"], 6);
    assert_eq!(ids(&got[1..]), [7, 8, 9, 10]);
    assert_eq!(got[4].data, format!("{:>1000}", 10));
    assert!(c.next_event(QUIET).await.is_none());
}

#[tokio::test]
async fn a_stream_idle_past_retention_keeps_its_ids_while_watched() {
    // Maintenance runs every keep-alive; events older than 1 s are dropped.
    let server = TestServer::start(&["--retention-secs", "1", "--keepalive-secs", "1"]);
    for i in 1..=3 {
        publish(&server.base, "quiet", &i.to_string(), None).await;
    }
    let mut c = SseClient::open(&server.url("/v1/streams/quiet"), &[]).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let id = publish(&server.base, "quiet", "after the quiet", None).await;
    assert_eq!(seq(&id), 4, "ids never restart under a subscriber");
    let ev = c.take(1, WAIT).await.remove(0);
    assert_eq!(
        (ev.last_event_id.as_str(), ev.data.as_str()),
        (id.as_str(), "after the quiet")
    );
}

#[tokio::test]
async fn retention_is_settable_by_environment() {
    let server = TestServer::start_with_env(&[], &[("RILL_RETENTION_EVENTS", "2")]);
    for i in 1..=5 {
        publish(&server.base, "env", &i.to_string(), None).await;
    }
    let mut c = SseClient::open(&server.url("/v1/streams/env?lastEventId=0"), &[]).await;
    let got = c.take(3, WAIT).await;
    assert_eq!(reset_json(&got[0])["missed"], 3);
    assert_eq!(ids(&got[1..]), [4, 5]);
}
