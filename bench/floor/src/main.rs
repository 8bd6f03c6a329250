//! The floor: what the kernel allows on this machine, with nothing above it.
//!
//! rill's parked path writes each event to every subscriber socket with one
//! non-blocking `write`. This program does exactly that and nothing else, so
//! the benchmark can say how far rill is from the cost of the system calls
//! themselves. No runtime, no HTTP framework, no task or buffer per
//! subscriber: a subscriber is a socket in a `Mutex<Vec<TcpStream>>`.
//!
//! - `GET /sub` answers the same response head as rill's parked path
//!   (`200`, `text/event-stream; charset=utf-8`, `no-cache`, chunked) and
//!   hands the socket to the list; its thread ends there.
//! - `POST /pub` (keep-alive, body by `content-length`) answers `201`, then
//!   encodes the event once (`id: n`, `data: <body>`, chunk-framed) and
//!   writes it to every socket with one `write` each.
//! - Anything else answers `404`.
//!
//! A write that fails, would block or is short drops that subscriber: the
//! floor queues nothing, and the load client's delivered/expected shows
//! any such loss. No keep-alive comments, no ids to resume from.
//!
//! Threads: one accept loop, and one short-lived thread per connection
//! until it is a subscriber (or for as long as it publishes).
//!
//! Usage: `floor 127.0.0.1:PORT` (loopback only).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

/// The response head of an event stream, byte for byte what the parked
/// path sends apart from its `date`.
const STREAM_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\n\
content-type: text/event-stream; charset=utf-8\r\n\
cache-control: no-cache, no-transform\r\n\
transfer-encoding: chunked\r\n\r\n";
const CREATED: &[u8] = b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n";
const NOT_FOUND: &[u8] = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// Longest request head and body accepted.
const MAX_HEAD: u64 = 16 * 1024;
const MAX_BODY: usize = 1024 * 1024;
/// A connection's thread only parses one request head at a time.
const THREAD_STACK: usize = 64 * 1024;

/// Every subscriber socket, and the id of the last event.
#[derive(Default)]
struct Subscribers {
    inner: Mutex<List>,
}

#[derive(Default)]
struct List {
    sockets: Vec<TcpStream>,
    last_id: u64,
}

impl Subscribers {
    fn add(&self, s: TcpStream) {
        self.lock().sockets.push(s);
    }

    /// Encodes `body` once and writes it to every socket with one `write`;
    /// a socket that does not take the whole frame is dropped.
    fn publish(&self, body: &[u8]) {
        let mut list = self.lock();
        list.last_id += 1;
        let frame = frame(list.last_id, body);
        list.sockets
            .retain(|mut s| matches!(s.write(&frame), Ok(n) if n == frame.len()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, List> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One event, chunk-framed: `id: n`, a `data:` line per body line.
fn frame(id: u64, body: &[u8]) -> Vec<u8> {
    let mut event = format!("id: {id}\n").into_bytes();
    for line in body.split(|&b| b == b'\n') {
        event.extend_from_slice(b"data: ");
        event.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        event.push(b'\n');
    }
    event.push(b'\n');
    let mut out = format!("{:x}\r\n", event.len()).into_bytes();
    out.extend_from_slice(&event);
    out.extend_from_slice(b"\r\n");
    out
}

/// A request: its method, path and body.
struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

/// Reads one request; `None` at a clean end of the connection.
fn read_request(r: &mut BufReader<TcpStream>) -> io::Result<Option<Request>> {
    let mut head = String::new();
    let mut limited = r.by_ref().take(MAX_HEAD);
    loop {
        let before = head.len();
        if limited.read_line(&mut head)? == 0 {
            if head.is_empty() {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if head[before..].trim_end().is_empty() {
            if before > 0 {
                break;
            }
            head.clear(); // a stray empty line between requests
        }
    }
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or_default().split_whitespace();
    let method = first.next().unwrap_or_default().to_owned();
    let path = first.next().unwrap_or_default().to_owned();
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.trim().parse::<usize>())
        .transpose()
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?
        .unwrap_or(0);
    if length > MAX_BODY {
        return Err(io::ErrorKind::InvalidData.into());
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body)?;
    Ok(Some(Request { method, path, body }))
}

/// Serves one connection until it becomes a subscriber or closes.
fn serve(stream: TcpStream, subscribers: &Subscribers) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(4096, stream);
    loop {
        let req = match read_request(&mut reader) {
            Ok(Some(req)) => req,
            Ok(None) => return Ok(()),
            Err(e) => {
                let _ = writer.write_all(BAD_REQUEST);
                return Err(e);
            }
        };
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/sub") => {
                writer.write_all(STREAM_HEAD)?;
                writer.set_nonblocking(true)?;
                subscribers.add(writer);
                return Ok(());
            }
            ("POST", "/pub") => {
                writer.write_all(CREATED)?;
                subscribers.publish(&req.body);
            }
            _ => writer.write_all(NOT_FOUND)?,
        }
    }
}

fn main() -> io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18901".into())
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    if !addr.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr} is not a loopback address"),
        ));
    }
    let listener = TcpListener::bind(addr)?;
    let subscribers = Arc::new(Subscribers::default());
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        let subscribers = subscribers.clone();
        // A connection whose thread cannot start is closed by the drop.
        let _ = thread::Builder::new()
            .stack_size(THREAD_STACK)
            .spawn(move || serve(stream, &subscribers));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_one_chunk() {
        let f = frame(7, b"b 1 2");
        assert_eq!(f, b"13\r\nid: 7\ndata: b 1 2\n\n\r\n");
    }

    #[test]
    fn each_body_line_is_a_data_line() {
        let f = frame(1, b"a\r\nb");
        assert_eq!(f, b"17\r\nid: 1\ndata: a\ndata: b\n\n\r\n");
    }
}
