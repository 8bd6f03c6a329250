//! A subscriber that stops reading must not grow the server's memory, must
//! not hold up the others, and when it reads again it is caught up from the
//! store or told `event: reset`, never left with a silent gap.
//!
//! Between the two sits what the socket buffers already hold: events the
//! slow reader gets, stale, before its `event: reset`. The capped kernel
//! send buffer (`--send-buffer-bytes`) bounds them.
//!
//! The memory bound: what the server may hold for streams is the store's
//! retention (`--retention-bytes`) plus each stream's live ring
//! (`--subscriber-buffer` frames, shared by all its subscribers) plus, per
//! connection, the frame being written. On top of that comes a fixed slack
//! for the allocator, the runtime and the HTTP stack. The test publishes
//! more than twice that bound through a stream a subscriber does not read.
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{SseClient, TestServer};
use rill::sse::{ParsedEvent, Parser};

const EVENTS: u64 = 2000;
const EVENT_BYTES: usize = 32 * 1024;
const RETENTION_BYTES: u64 = 8 * 1024 * 1024;
const BUFFER_FRAMES: u64 = 16;
/// Allocator, runtime, HTTP buffers and the like.
const SLACK: u64 = 16 * 1024 * 1024;
const WAIT: Duration = Duration::from_secs(60);

/// Growth of the server's RSS that the slow subscriber must stay under.
fn bound_bytes() -> u64 {
    RETENTION_BYTES + BUFFER_FRAMES * EVENT_BYTES as u64 + 4 * EVENT_BYTES as u64 + SLACK
}

fn data_of(i: u64) -> String {
    sized_data_of(i, EVENT_BYTES)
}

/// Event `i`'s data, `bytes` long.
fn sized_data_of(i: u64, bytes: usize) -> String {
    let head = format!("event {i} ");
    format!("{head}{}", "x".repeat(bytes - head.len()))
}

/// Undoes HTTP/1.1 chunked framing, as much as has arrived.
#[derive(Default)]
struct Dechunk {
    buf: Vec<u8>,
}

impl Dechunk {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        self.buf.extend_from_slice(bytes);
        loop {
            let Some(eol) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size_text = std::str::from_utf8(&self.buf[..eol]).expect("chunk size");
            let size = usize::from_str_radix(size_text.trim(), 16).expect("hex chunk size");
            if self.buf.len() < eol + 2 + size + 2 {
                return;
            }
            out.extend_from_slice(&self.buf[eol + 2..eol + 2 + size]);
            self.buf.drain(..eol + 2 + size + 2);
        }
    }
}

/// Opens a subscription on a plain socket and reads only the response head.
fn open_raw(addr: &str, path: &str) -> (TcpStream, Vec<u8>) {
    subscribe_on(TcpStream::connect(addr).expect("connect"), addr, path)
}

/// Sends a subscription request on `s` and reads only the response head.
fn subscribe_on(mut s: TcpStream, addr: &str, path: &str) -> (TcpStream, Vec<u8>) {
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("response head");
        head.push(byte[0]);
    }
    let head_text = String::from_utf8_lossy(&head);
    assert!(head_text.starts_with("HTTP/1.1 200"), "{head_text}");
    assert!(head_text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked"));
    (s, Vec::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_neither_grows_memory_nor_loses_events_silently() {
    let server = start(RETENTION_BYTES);
    let addr = server.base.trim_start_matches("http://").to_owned();

    // Warm up: the stream, a subscription and a publish, then the baseline.
    let client = reqwest::Client::new();
    let url = server.url("/v1/streams/firehose");
    let res = client.post(&url).body(data_of(0)).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let (mut slow, _) = open_raw(&addr, "/v1/streams/firehose");
    let mut normal = SseClient::open(&url, &[]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = server.rss_kib() * 1024;

    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..EVENTS {
            let ev = normal
                .next_event(WAIT)
                .await
                .expect("normal subscriber event");
            normal.raw.clear();
            got.push(ev);
        }
        got
    });
    let mut peak = baseline;
    for i in 1..=EVENTS {
        let res = client.post(&url).body(data_of(i)).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 201);
        if i % 50 == 0 {
            peak = peak.max(server.rss_kib() * 1024);
        }
    }
    let normal_got = reader.await.unwrap();
    peak = peak.max(server.rss_kib() * 1024);
    let growth = peak.saturating_sub(baseline);
    println!(
        "published {} MiB; RSS baseline {} MiB, peak growth {} MiB, bound {} MiB",
        (EVENTS * EVENT_BYTES as u64) >> 20,
        baseline >> 20,
        growth >> 20,
        bound_bytes() >> 20
    );
    assert!(
        growth < bound_bytes(),
        "RSS grew by {growth} bytes, bound {}",
        bound_bytes()
    );
    assert!(
        EVENTS * EVENT_BYTES as u64 > 2 * bound_bytes(),
        "the test means something"
    );

    // The normal subscriber got every event, in order, exact.
    assert!(normal_got.iter().all(|e| e.event_type == "message"));
    let ids: Vec<u64> = normal_got
        .iter()
        .map(|e| common::seq(&e.last_event_id))
        .collect();
    assert_eq!(ids, (2..=EVENTS + 1).collect::<Vec<_>>());
    assert!(normal_got
        .iter()
        .zip(1..)
        .all(|(e, i)| e.data == data_of(i)));

    // The slow one reads again: every id accounted for, up to the last.
    let events = tokio::task::spawn_blocking(move || read_to(&mut slow, EVENTS + 1))
        .await
        .unwrap();
    let resets = accounted_for(&events, EVENTS + 1);
    let (catchups, drops) = slow_metrics(&server.base).await;
    println!("slow subscriber: {resets} resets; server: {catchups} catch-ups, {drops} drops");
    assert!(catchups >= 1.0, "the slow subscriber fell behind the ring");
    assert_eq!(drops, resets as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_is_caught_up_from_the_store_while_retained() {
    // 25 MiB, more than the socket buffers hold, all of it retained.
    const N: u64 = 800;
    let server = start(64 * 1024 * 1024);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let client = reqwest::Client::new();
    let url = server.url("/v1/streams/retained");
    let res = client.post(&url).body(data_of(0)).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let (mut slow, _) = open_raw(&addr, "/v1/streams/retained");
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 1..=N {
        let res = client.post(&url).body(data_of(i)).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 201);
    }
    let events = tokio::task::spawn_blocking(move || read_to(&mut slow, N + 1))
        .await
        .unwrap();
    assert_eq!(accounted_for(&events, N + 1), 0, "no reset while retained");
    let (catchups, drops) = slow_metrics(&server.base).await;
    assert!(catchups >= 1.0, "the slow subscriber fell behind the ring");
    assert_eq!(drops, 0.0);
}

/// Sizes of the send-buffer test: 8 MiB of 62 KiB events through a stream
/// that retains 1 MiB, to a reader whose own receive buffer is small.
const STALE_EVENT_BYTES: usize = 62 * 1024;
const STALE_EVENTS: u64 = 132;
const STALE_RETENTION_BYTES: u64 = 1024 * 1024;
const CLIENT_RCVBUF: usize = 4096;
/// rill's default `--send-buffer-bytes` and `--max-header-bytes` (hyper's
/// write buffer of an HTTP/1.1 connection is as large as its read buffer).
const SEND_BUFFER_BYTES: u64 = 64 * 1024;
const HYPER_BUFFER_BYTES: u64 = 16 * 1024;

/// What a stalled reader may get before its reset with the send buffer
/// capped: both kernels' buffers (each doubled by Linux), hyper's write
/// buffer, and a frame on either side of it (the one hyper took past its
/// buffer, the one the event stream holds), plus framing.
fn stale_bound_bytes() -> u64 {
    let frame = STALE_EVENT_BYTES as u64 + 1024;
    2 * SEND_BUFFER_BYTES + 2 * CLIENT_RCVBUF as u64 + HYPER_BUFFER_BYTES + 2 * frame + 64 * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_send_buffer_cap_bounds_what_a_stalled_reader_gets_before_its_reset() {
    let capped = stale_bytes_before_reset(&[]).await;
    let uncapped = stale_bytes_before_reset(&["--send-buffer-bytes", "0"]).await;
    println!(
        "stale bytes before the reset: {capped} capped (bound {}), {uncapped} with autotuning",
        stale_bound_bytes()
    );
    assert!(
        capped < stale_bound_bytes(),
        "{capped} stale bytes, bound {}",
        stale_bound_bytes()
    );
    assert!(
        capped < uncapped,
        "the cap is what bounds them: {capped} capped, {uncapped} uncapped"
    );
}

/// Publishes [`STALE_EVENTS`] to a stream a subscriber with a small
/// receive buffer does not read, then reads it all; returns the data bytes
/// it got before the `event: reset` that told it of the gap.
async fn stale_bytes_before_reset(extra: &[&str]) -> u64 {
    let retention = STALE_RETENTION_BYTES.to_string();
    let buffer = BUFFER_FRAMES.to_string();
    let mut args = vec![
        "--retention-events",
        "100000",
        "--retention-bytes",
        &retention,
        "--max-event-bytes",
        "65536",
        "--subscriber-buffer",
        &buffer,
    ];
    args.extend_from_slice(extra);
    let server = TestServer::start(&args);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let client = reqwest::Client::new();
    let url = server.url("/v1/streams/stale");
    let publish = |i: u64| {
        client
            .post(&url)
            .body(sized_data_of(i, STALE_EVENT_BYTES))
            .send()
    };
    assert_eq!(publish(0).await.unwrap().status().as_u16(), 201);
    let (mut slow, _) = subscribe_on(small_receiver(&addr), &addr, "/v1/streams/stale");
    for i in 1..=STALE_EVENTS {
        assert_eq!(publish(i).await.unwrap().status().as_u16(), 201);
    }
    let events = tokio::task::spawn_blocking(move || read_to(&mut slow, STALE_EVENTS + 1))
        .await
        .unwrap();
    assert!(sized_accounted_for(&events, STALE_EVENTS + 1, STALE_EVENT_BYTES) >= 1);
    let last_reset = events
        .iter()
        .rposition(|e| e.event_type == "reset")
        .expect("a reset");
    events[..last_reset]
        .iter()
        .map(|e| e.data.len() as u64)
        .sum()
}

/// A socket connected to `addr` with a receive buffer of [`CLIENT_RCVBUF`]
/// (set before connecting, so the window is small from the start).
fn small_receiver(addr: &str) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let to: std::net::SocketAddr = addr.parse().expect("address");
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket
        .set_recv_buffer_size(CLIENT_RCVBUF)
        .expect("SO_RCVBUF");
    socket.connect(&to.into()).expect("connect");
    socket.into()
}

/// A server with the test's limits and `retention_bytes`.
fn start(retention_bytes: u64) -> TestServer {
    let retention_bytes = retention_bytes.to_string();
    let buffer = BUFFER_FRAMES.to_string();
    TestServer::start(&[
        "--retention-events",
        "100000",
        "--retention-bytes",
        &retention_bytes,
        "--max-event-bytes",
        "65536",
        "--subscriber-buffer",
        &buffer,
    ])
}

/// The server's slow-consumer catch-ups and drops.
async fn slow_metrics(base: &str) -> (f64, f64) {
    let metrics = common::metrics_text(base).await;
    let catchups = common::sample(&metrics, "rill_slow_consumer_catchups_total").unwrap_or(0.0);
    let drops = common::sample(&metrics, "rill_slow_consumer_drops_total").unwrap_or(0.0);
    (catchups, drops)
}

/// Checks that a subscriber that joined after event 1 saw every id up to
/// `end` once, in order, or a `lagged` reset saying exactly what it missed;
/// returns the number of resets.
fn accounted_for(events: &[ParsedEvent], end: u64) -> usize {
    sized_accounted_for(events, end, EVENT_BYTES)
}

/// [`accounted_for`], for events of `event_bytes` of data.
fn sized_accounted_for(events: &[ParsedEvent], end: u64, event_bytes: usize) -> usize {
    let mut last = 1u64;
    let mut resets = 0;
    for ev in events {
        let id = common::seq(&ev.last_event_id);
        if ev.event_type == "reset" {
            let reset: serde_json::Value = serde_json::from_str(&ev.data).unwrap();
            assert_eq!(reset["reason"], "lagged");
            assert_eq!(reset["missed"].as_u64(), Some(id - last), "{reset}");
            resets += 1;
        } else {
            assert_eq!(id, last + 1, "silent gap after {last}");
            assert_eq!(ev.data, sized_data_of(id - 1, event_bytes));
        }
        last = id;
    }
    assert_eq!(last, end);
    resets
}

/// Reads events from the raw socket until event `last` arrived.
fn read_to(s: &mut TcpStream, last: u64) -> Vec<ParsedEvent> {
    s.set_read_timeout(Some(WAIT)).unwrap();
    let (mut dechunk, mut parser) = (Dechunk::default(), Parser::default());
    let mut events = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut body = Vec::new();
    loop {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "closed before event {last}");
        body.clear();
        dechunk.feed(&buf[..n], &mut body);
        parser.feed(&body).unwrap();
        while let Some(ev) = parser.next_event() {
            let done = common::seq(&ev.last_event_id) == last;
            events.push(ev);
            if done {
                return events;
            }
        }
    }
}
