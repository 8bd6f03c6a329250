use super::*;
use std::time::Duration;

fn store(max_events: usize) -> MemoryStore {
    MemoryStore::new(
        Retention {
            max_events,
            generation_events: 0,
            max_bytes: usize::MAX,
            max_age: Duration::from_secs(3600),
        },
        10,
        usize::MAX,
    )
}

fn name(s: &str) -> StreamName {
    StreamName::new(s).unwrap()
}

async fn append(s: &MemoryStore, n: &StreamName, data: &str) -> Appended {
    s.append(n, &Draft::message(data), None).await.unwrap()
}

#[tokio::test]
async fn ids_grow_and_replay_is_the_suffix() {
    let s = store(100);
    let n = name("a");
    for i in 1..=10u64 {
        let r = append(&s, &n, &i.to_string()).await;
        assert_eq!(r.id, EventId(i));
    }
    for after in 0..=10u64 {
        let got = s.read_after(&n, EventId(after), 100).await.unwrap();
        let ids: Vec<u64> = got.records.iter().map(|r| r.id.0).collect();
        assert_eq!(ids, ((after + 1)..=10).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn a_recreated_stream_is_a_new_incarnation() {
    let s = store(100);
    let n = name("a");
    let first = append(&s, &n, "x").await;
    assert_eq!(first.prefix.as_deref().map(str::len), Some(8));
    assert!(first.wire_id().ends_with(".1"));
    s.remove(&n).await.unwrap();
    let again = append(&s, &n, "y").await;
    assert_eq!(again.id, EventId(1));
    assert_ne!(again.prefix, first.prefix, "same name, new epoch");
}

#[tokio::test]
async fn retention_by_count_moves_first_retained() {
    let s = store(3);
    let n = name("a");
    for i in 0..10 {
        append(&s, &n, &i.to_string()).await;
    }
    let got = s.read_after(&n, EventId(0), 100).await.unwrap();
    assert_eq!(got.first_retained, EventId(8));
    assert_eq!(got.records.len(), 3);
    assert_eq!(got.last_id, EventId(10));
}

#[tokio::test]
async fn finished_streams_refuse_appends_and_limits_hold() {
    let s = store(10);
    let n = name("a");
    let mut done = Draft::message("{}");
    done.terminal = true;
    s.append(&n, &done, None).await.unwrap();
    assert!(matches!(
        s.append(&n, &Draft::message("x"), None).await,
        Err(StoreError::Finished(_))
    ));
    for i in 0..9 {
        append(&s, &name(&format!("s{i}")), "x").await;
    }
    assert!(matches!(
        s.append(&name("one-too-many"), &Draft::message("x"), None)
            .await,
        Err(StoreError::TooManyStreams(10))
    ));
}

#[tokio::test]
async fn a_repeated_key_stores_nothing_and_answers_the_first_id() {
    let s = store(100);
    let n = name("a");
    let d = Draft::message("once");
    let key = IdempotencyKey::new("k1", d.fingerprint()).unwrap();
    let first = s.append(&n, &d, Some(&key)).await.unwrap();
    assert!(first.record.is_some());
    append(&s, &n, "other").await;
    let again = s.append(&n, &d, Some(&key)).await.unwrap();
    assert!(again.record.is_none());
    assert_eq!(again.id, first.id);
    let got = s.read_after(&n, EventId(0), 100).await.unwrap();
    assert_eq!(got.records.len(), 2, "stored once");
    let other = Draft::message("different");
    let reused = IdempotencyKey::new("k1", other.fingerprint()).unwrap();
    assert!(matches!(
        s.append(&n, &other, Some(&reused)).await,
        Err(StoreError::KeyReused(_))
    ));
}

#[tokio::test]
async fn the_byte_budget_refuses_publishes_and_frees_with_retention() {
    let s = MemoryStore::new(
        Retention {
            max_events: 2,
            generation_events: 0,
            max_bytes: usize::MAX,
            max_age: Duration::from_secs(3600),
        },
        100,
        1_500,
    );
    let big = "x".repeat(600);
    append(&s, &name("a"), &big).await;
    // Stream a keeps two events; the third evicts the first, so it fits.
    append(&s, &name("a"), &big).await;
    append(&s, &name("a"), &big).await;
    assert!(s.used_bytes() <= 1_500);
    // A new stream would pass the budget: refused, and not created.
    let r = s
        .append(&name("b"), &Draft::message(big.clone()), None)
        .await;
    assert!(
        matches!(r, Err(StoreError::Full { budget: 1_500 })),
        "{r:?}"
    );
    assert!(!s
        .read_after(&name("b"), EventId(0), 0)
        .await
        .unwrap()
        .exists());
    // Removing a frees its bytes.
    s.remove(&name("a")).await.unwrap();
    assert_eq!(s.used_bytes(), 0);
    append(&s, &name("b"), &big).await;
}

#[tokio::test]
async fn claims_hold_a_value_for_the_same_request_only() {
    let s = store(10);
    let k = IdempotencyKey::new("gen-key", 7).unwrap();
    let ttl = Duration::from_secs(60);
    assert_eq!(s.claim("alice", &k, "g1", ttl).await.unwrap(), Claim::Fresh);
    assert_eq!(
        s.claim("alice", &k, "g2", ttl).await.unwrap(),
        Claim::Held("g1".into())
    );
    assert_eq!(s.claim("bob", &k, "g3", ttl).await.unwrap(), Claim::Fresh);
    let other = IdempotencyKey::new("gen-key", 8).unwrap();
    assert!(matches!(
        s.claim("alice", &other, "g4", ttl).await,
        Err(StoreError::KeyReused(_))
    ));
}

#[tokio::test]
async fn a_generation_stream_keeps_its_whole_answer() {
    let s = MemoryStore::new(
        Retention {
            max_events: 2,
            generation_events: 5,
            max_bytes: usize::MAX,
            max_age: Duration::from_secs(3600),
        },
        10,
        usize::MAX,
    );
    for stream in ["chat", "gen-0a1b"] {
        for i in 0..8 {
            append(&s, &name(stream), &format!("t{i}")).await;
        }
    }
    let kept = |stream: &'static str| {
        let s = &s;
        async move {
            let page = s.read_after(&name(stream), EventId::START, 100).await;
            page.expect("read").records.len()
        }
    };
    assert_eq!(kept("chat").await, 2);
    assert_eq!(kept("gen-0a1b").await, 5);
}

#[tokio::test]
async fn attributes_swap_only_from_what_was_read_and_leave_with_the_stream() {
    let s = store(10);
    let n = name("ds");
    assert!(!s.swap_attrs(&n, Some("x"), Some("a")).await.expect("swap"));
    assert!(s.swap_attrs(&n, None, Some("a")).await.expect("swap"));
    assert!(!s.swap_attrs(&n, None, Some("b")).await.expect("swap"));
    assert!(!s
        .swap_attrs(&n, Some("stale"), Some("b"))
        .await
        .expect("swap"));
    assert!(s.swap_attrs(&n, Some("a"), Some("b")).await.expect("swap"));
    assert_eq!(s.attrs(&n).await.expect("attrs").as_deref(), Some("b"));
    append(&s, &n, "e").await;
    s.remove(&n).await.expect("remove");
    assert_eq!(s.attrs(&n).await.expect("attrs"), None);
}
