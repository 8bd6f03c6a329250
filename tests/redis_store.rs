//! The Redis store on its own, against a real Redis: ids, replay as a
//! suffix, retention, the end of a stream, and orphaned generations ended
//! exactly once.

mod common;

use std::time::Duration;

use common::cluster::{redis_url, Keys};
use rill::ids::{EventId, StreamName};
use rill::store::redis::{RedisConfig, RedisStore};
use rill::store::{Draft, Retention, Store, StoreError};

fn store(keys: &Keys, max_events: usize, max_bytes: usize) -> RedisStore {
    let config = RedisConfig {
        url: keys.url.clone(),
        key_prefix: keys.prefix.clone(),
        readers: 1,
    };
    let retention = Retention {
        max_events,
        max_bytes,
        max_age: Duration::from_secs(60),
    };
    RedisStore::new(&config, retention, 100).expect("store")
}

fn name(s: &str) -> StreamName {
    StreamName::new(s).expect("name")
}

fn ids(replay: &rill::store::Replay) -> Vec<u64> {
    replay.records.iter().map(|r| r.id.0).collect()
}

#[tokio::test]
async fn ids_grow_and_replay_is_the_suffix() {
    let keys = Keys::new(&redis_url(), "store-suffix");
    let s = store(&keys, 100, 1 << 20);
    let n = name("a");
    for i in 1..=10u64 {
        let r = s
            .append(&n, &Draft::message(format!("line\n{i}")))
            .await
            .unwrap();
        assert_eq!(r.id, EventId(i));
        assert_eq!(
            r.frame,
            Draft::message(format!("line\n{i}")).encode(None, EventId(i))
        );
    }
    for after in 0..=10u64 {
        let got = s.read_after(&n, EventId(after), 100).await.unwrap();
        assert_eq!(ids(&got), ((after + 1)..=10).collect::<Vec<_>>());
        assert_eq!(got.last_id, EventId(10));
        assert_eq!(got.first_retained, EventId(1));
    }
    let page = s.read_after(&n, EventId(2), 3).await.unwrap();
    assert_eq!(ids(&page), vec![3, 4, 5]);
    let none = s
        .read_after(&name("nothing"), EventId(0), 10)
        .await
        .unwrap();
    assert_eq!(
        (none.last_id, none.first_retained),
        (EventId(0), EventId(1))
    );
}

#[tokio::test]
async fn retention_by_count_and_bytes_moves_first_retained() {
    let keys = Keys::new(&redis_url(), "store-retention");
    let by_count = store(&keys, 3, 1 << 20);
    let n = name("count");
    for i in 0..10 {
        by_count
            .append(&n, &Draft::message(i.to_string()))
            .await
            .unwrap();
    }
    let got = by_count.read_after(&n, EventId(0), 100).await.unwrap();
    assert_eq!(got.first_retained, EventId(8));
    assert_eq!(ids(&got), vec![8, 9, 10]);
    // 10 bytes of data each, at most 25 bytes kept: the newest two.
    let by_bytes = store(&keys, 100, 25);
    let n = name("bytes");
    for _ in 0..5 {
        by_bytes
            .append(&n, &Draft::message("x".repeat(10)))
            .await
            .unwrap();
    }
    let got = by_bytes.read_after(&n, EventId(0), 100).await.unwrap();
    assert_eq!(ids(&got), vec![4, 5]);
    let listed = by_bytes.list().await.unwrap();
    let info = listed.iter().find(|i| i.name == "bytes").expect("listed");
    assert_eq!((info.retained_events, info.retained_bytes), (2, 20));
}

#[tokio::test]
async fn a_finished_stream_refuses_appends_and_orphans_end_once() {
    let keys = Keys::new(&redis_url(), "store-orphan");
    let s = store(&keys, 100, 1 << 20);
    let n = name("gen-1");
    s.create(&n, Some("1".into())).await.unwrap();
    assert!(matches!(
        s.create(&n, None).await,
        Err(StoreError::Exists(_))
    ));
    let r = s.append(&n, &Draft::message("tok")).await.unwrap();
    assert_eq!(r.frame, Draft::message("tok").encode(Some("1"), EventId(1)));
    // A lease is held: nothing is an orphan yet.
    let lease = s.renew_lease(&n, Duration::from_millis(200)).await.unwrap();
    assert_eq!(lease, rill::store::Lease::default());
    s.mark_watched(std::slice::from_ref(&n), Duration::from_millis(100))
        .await
        .unwrap();
    assert!(
        s.renew_lease(&n, Duration::from_millis(200))
            .await
            .unwrap()
            .watched
    );
    let mut lost = Draft::message("{}");
    lost.terminal = true;
    assert!(s.end_orphans(&lost).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Two sweepers at once: exactly one ends the stream.
    let (a, b) = tokio::join!(s.end_orphans(&lost), s.end_orphans(&lost));
    assert_eq!(a.unwrap().len() + b.unwrap().len(), 1);
    let got = s.read_after(&n, EventId(0), 100).await.unwrap();
    assert!(got.finished);
    assert_eq!(ids(&got), vec![1, 2]);
    assert!(matches!(
        s.append(&n, &Draft::message("late")).await,
        Err(StoreError::Finished(_))
    ));
    assert!(
        !s.request_cancel(&n).await.unwrap(),
        "no lease, no owner to ask"
    );
}

#[test]
fn store_flag_selects_redis_and_refuses_other_urls() {
    use clap::Parser;
    use rill::config::Cli;
    let args = |store: &str| Cli::parse_from(["rill", "--store", store]).serve;
    let redis = args("redis://127.0.0.1:6379/3")
        .redis()
        .expect("redis config");
    assert_eq!(redis.url, "redis://127.0.0.1:6379/3");
    assert_eq!((redis.key_prefix.as_str(), redis.readers), ("rill:", 2));
    assert!(args("memory").redis().is_none());
    assert!(args("memory").validate().is_ok());
    assert!(args("postgres://db/rill").validate().is_err());
}
