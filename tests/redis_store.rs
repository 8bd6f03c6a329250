//! The Redis store on its own, against a real Redis: ids, replay as a
//! suffix, retention, incarnations, idempotency keys, the index of stream
//! names, stream attributes, the end of a stream, who listens to a generation, and orphaned
//! generations ended exactly once.

mod common;

use std::time::Duration;

use common::cluster::{redis_url, Keys};
use rill::ids::{EventId, StreamName};
use rill::store::redis::{RedisConfig, RedisStore};
use rill::store::{Claim, Draft, IdempotencyKey, Leases, Log, Retention, StoreError, StreamSpec};

fn store(keys: &Keys, max_events: usize, max_bytes: usize) -> RedisStore {
    store_with(keys, max_events, max_bytes, Duration::from_secs(60), 100)
}

fn store_with(
    keys: &Keys,
    max_events: usize,
    max_bytes: usize,
    max_age: Duration,
    max_streams: usize,
) -> RedisStore {
    let config = RedisConfig {
        url: keys.url.clone(),
        key_prefix: keys.prefix.clone(),
        readers: 1,
    };
    let retention = Retention {
        max_events,
        generation_events: 5,
        max_bytes,
        max_age,
    };
    RedisStore::new(&config, retention, max_streams).expect("store")
}

async fn append(s: &RedisStore, n: &StreamName, data: &str) -> rill::store::Appended {
    s.append(n, &Draft::message(data), None).await.unwrap()
}

fn spec(prefix: &str) -> StreamSpec {
    StreamSpec {
        prefix: prefix.into(),
        owner: Some("alice".into()),
    }
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
    let mut epoch = None;
    for i in 1..=10u64 {
        let r = append(&s, &n, &format!("line\n{i}")).await;
        assert_eq!(r.id, EventId(i));
        let prefix = r.prefix.clone().expect("an incarnation");
        assert_eq!(epoch.get_or_insert(prefix.clone()), &prefix);
        assert_eq!(
            r.record.expect("stored").frame,
            Draft::message(format!("line\n{i}")).encode(Some(&prefix), EventId(i))
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
        append(&by_count, &n, &i.to_string()).await;
    }
    let got = by_count.read_after(&n, EventId(0), 100).await.unwrap();
    assert_eq!(got.first_retained, EventId(8));
    assert_eq!(ids(&got), vec![8, 9, 10]);
    // 10 bytes of data each, at most 25 bytes kept: the newest two.
    let by_bytes = store(&keys, 100, 25);
    let n = name("bytes");
    for _ in 0..5 {
        append(&by_bytes, &n, &"x".repeat(10)).await;
    }
    let got = by_bytes.read_after(&n, EventId(0), 100).await.unwrap();
    assert_eq!(ids(&got), vec![4, 5]);
    let listed = by_bytes.list().await.unwrap();
    let info = listed.iter().find(|i| i.name == "bytes").expect("listed");
    assert_eq!((info.retained_events, info.retained_bytes), (2, 20));
    // A generation's stream keeps its whole answer (here: 5 events).
    let answer = name("gen-0a1b");
    for i in 0..10 {
        append(&by_count, &answer, &i.to_string()).await;
    }
    let got = by_count.read_after(&answer, EventId(0), 100).await.unwrap();
    assert_eq!(ids(&got), vec![6, 7, 8, 9, 10]);
}

#[tokio::test]
async fn a_finished_stream_refuses_appends_and_orphans_end_once() {
    let keys = Keys::new(&redis_url(), "store-orphan");
    let s = store(&keys, 100, 1 << 20);
    let n = name("gen-1");
    s.create(&n, spec("1")).await.unwrap();
    assert!(matches!(
        s.create(&n, spec("2")).await,
        Err(StoreError::Exists(_))
    ));
    let head = s.read_after(&n, EventId(0), 0).await.unwrap();
    assert_eq!(head.owner.as_deref(), Some("alice"));
    let r = append(&s, &n, "tok").await;
    assert_eq!(
        r.record.unwrap().frame,
        Draft::message("tok").encode(Some("1"), EventId(1))
    );
    // A lease is held: nothing is an orphan yet.
    let lease = s.renew_lease(&n, Duration::from_millis(200)).await.unwrap();
    assert_eq!(lease, rill::store::Lease::default());
    s.mark_watched(std::slice::from_ref(&n), &[], Duration::from_millis(100))
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
        s.append(&n, &Draft::message("late"), None).await,
        Err(StoreError::Finished(_))
    ));
    assert!(
        !s.request_cancel(&n).await.unwrap(),
        "no lease, no owner to ask"
    );
}

#[tokio::test]
async fn a_recreated_stream_is_a_new_incarnation() {
    let keys = Keys::new(&redis_url(), "store-epoch");
    let s = store(&keys, 100, 1 << 20);
    let n = name("again");
    let first = append(&s, &n, "old").await;
    assert_eq!(s.remove(&n).await.unwrap(), Some(EventId(1)));
    let again = append(&s, &n, "new").await;
    assert_eq!(again.id, EventId(1));
    assert_ne!(again.prefix, first.prefix, "same name and id, other epoch");
    assert_eq!(
        s.read_after(&n, EventId(0), 0).await.unwrap().prefix,
        again.prefix
    );
}

#[tokio::test]
async fn attributes_swap_only_from_what_was_read() {
    let keys = Keys::new(&redis_url(), "store-attrs");
    let s = store(&keys, 100, 1 << 20);
    let n = name("ds");
    assert_eq!(s.attrs(&n).await.unwrap(), None);
    assert!(!s.swap_attrs(&n, Some("x"), Some("a")).await.unwrap());
    assert!(s.swap_attrs(&n, None, Some("a")).await.unwrap());
    assert!(
        !s.swap_attrs(&n, None, Some("b")).await.unwrap(),
        "someone set them first"
    );
    assert!(!s.swap_attrs(&n, Some("stale"), Some("b")).await.unwrap());
    assert!(s.swap_attrs(&n, Some("a"), Some("b")).await.unwrap());
    assert_eq!(s.attrs(&n).await.unwrap().as_deref(), Some("b"));
    assert!(s.swap_attrs(&n, Some("b"), None).await.unwrap());
    assert_eq!(s.attrs(&n).await.unwrap(), None);
    s.set_attrs(&n, Some("c")).await.unwrap();
    assert_eq!(s.attrs(&n).await.unwrap().as_deref(), Some("c"));
}

#[tokio::test]
async fn a_repeated_idempotency_key_stores_nothing() {
    let keys = Keys::new(&redis_url(), "store-idem");
    let s = store(&keys, 100, 1 << 20);
    let n = name("keyed");
    let d = Draft::message("once");
    let key = IdempotencyKey::new("k-1", d.fingerprint()).unwrap();
    let first = s.append(&n, &d, Some(&key)).await.unwrap();
    assert!(first.record.is_some());
    append(&s, &n, "between").await;
    let again = s.append(&n, &d, Some(&key)).await.unwrap();
    assert!(again.record.is_none(), "nothing stored the second time");
    assert_eq!((again.id, again.prefix.clone()), (first.id, first.prefix));
    assert_eq!(
        s.read_after(&n, EventId(0), 100)
            .await
            .unwrap()
            .records
            .len(),
        2
    );
    let other = Draft::message("different");
    let reused = IdempotencyKey::new("k-1", other.fingerprint()).unwrap();
    assert!(matches!(
        s.append(&n, &other, Some(&reused)).await,
        Err(StoreError::KeyReused(_))
    ));
    // Claims: a key held for a value answers that value to the same request.
    let ttl = Duration::from_secs(5);
    let k = IdempotencyKey::new("start-1", 42).unwrap();
    assert_eq!(s.claim("bob", &k, "g1", ttl).await.unwrap(), Claim::Fresh);
    assert_eq!(
        s.claim("bob", &k, "g2", ttl).await.unwrap(),
        Claim::Held("g1".into())
    );
    let k2 = IdempotencyKey::new("start-1", 43).unwrap();
    assert!(matches!(
        s.claim("bob", &k2, "g3", ttl).await,
        Err(StoreError::KeyReused(_))
    ));
}

#[tokio::test]
async fn expired_streams_leave_the_index_and_free_their_place() {
    let keys = Keys::new(&redis_url(), "store-index");
    let s = store_with(&keys, 100, 1 << 20, Duration::from_millis(300), 2);
    append(&s, &name("one"), "x").await;
    append(&s, &name("two"), "x").await;
    assert!(matches!(
        s.append(&name("three"), &Draft::message("x"), None).await,
        Err(StoreError::TooManyStreams(2))
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Nobody listed the streams; their expiry alone frees the places.
    append(&s, &name("three"), "x").await;
    let listed: Vec<String> = s
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(listed, ["three"]);
}

#[tokio::test]
async fn who_listens_is_told_with_the_time_the_last_one_left() {
    let keys = Keys::new(&redis_url(), "store-watch");
    let s = store(&keys, 100, 1 << 20);
    let n = name("gen-w");
    s.create(&n, spec("w")).await.unwrap();
    let ttl = Duration::from_secs(2);
    let lease = s.renew_lease(&n, ttl).await.unwrap();
    assert_eq!(
        (lease.watched, lease.unheard_for),
        (false, None),
        "never heard"
    );
    s.mark_watched(std::slice::from_ref(&n), &[], ttl)
        .await
        .unwrap();
    assert!(s.renew_lease(&n, ttl).await.unwrap().watched);
    s.mark_watched(&[], std::slice::from_ref(&n), ttl)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lease = s.renew_lease(&n, ttl).await.unwrap();
    assert!(!lease.watched);
    let ago = lease.unheard_for.expect("a departure time");
    assert!(
        ago >= Duration::from_millis(250) && ago < Duration::from_secs(2),
        "{ago:?}"
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
