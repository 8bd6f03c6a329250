//! The floor: what the kernel allows on this machine, with nothing above it.
//!
//! rill's parked path writes each event to every subscriber socket with one
//! non-blocking `write`. This program does exactly that and nothing else, so
//! the benchmark can say how far rill is from the cost of the system calls
//! themselves. No runtime, no HTTP framework, no task or buffer per
//! subscriber: a subscriber is a socket in a `Vec<TcpStream>`.
//!
//! - `GET /sub` answers the same response head as rill's parked path
//!   (`200`, `text/event-stream; charset=utf-8`, `no-cache`, chunked) and
//!   moves the socket to the list; nothing reads from it again.
//! - `POST /pub` (keep-alive, body by `content-length`) answers `201`, then
//!   encodes the event once (`id: n`, `data: <body>`, chunk-framed) and
//!   writes it to every socket with one `write` each.
//! - Anything else answers `404`; a request that cannot be parsed (head over
//!   16 KiB, body over 1 MiB, a bad `content-length`) answers `400` and the
//!   connection is closed.
//!
//! A write that fails, would block or is short drops that subscriber: the
//! floor queues nothing, and the load client's delivered/expected shows
//! any such loss. No keep-alive comments, no ids to resume from.
//!
//! One thread, one epoll instance. The listener and every connection that
//! is not yet a subscriber are non-blocking and registered in it
//! (level-triggered); a subscriber leaves it. A thread per connection would
//! cost a sleep and a wake-up (a context switch) per request; here a
//! request costs one `recv` and one `send`, plus one `epoll_wait` shared by
//! all the connections that were ready at once. Each connection keeps the
//! bytes of an unfinished request (a request split over several reads, or
//! the tail of pipelined ones) until the rest arrives.
//!
//! Usage: `floor 127.0.0.1:PORT` (loopback only).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

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
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 1024 * 1024;
/// Bytes taken by one `recv`: many pipelined requests at once.
const READ_SIZE: usize = 64 * 1024;
/// Readiness events taken by one `epoll_wait`.
const EVENTS: usize = 256;

/// Every subscriber socket, and the id of the last event.
#[derive(Default)]
struct Subscribers {
    sockets: Vec<TcpStream>,
    last_id: u64,
}

impl Subscribers {
    /// Encodes `body` once and writes it to every socket with one `write`;
    /// a socket that does not take the whole frame is dropped.
    fn publish(&mut self, body: &[u8]) {
        self.last_id += 1;
        let frame = frame(self.last_id, body);
        self.sockets
            .retain(|mut s| matches!(s.write(&frame), Ok(n) if n == frame.len()));
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

/// A request, borrowed from the bytes it was parsed from.
#[derive(Debug, PartialEq)]
struct Request<'a> {
    method: &'a str,
    path: &'a str,
    body: &'a [u8],
}

/// What the start of a connection's unread bytes holds.
#[derive(Debug, PartialEq)]
enum Parsed<'a> {
    /// A whole request, and how many bytes it took.
    Request(Request<'a>, usize),
    /// Not a whole request yet.
    Partial,
    /// Not a request the floor accepts.
    Bad,
}

/// Parses one request from the start of `data`. Empty lines before the
/// request line (a stray line between requests) are skipped; they count
/// towards the head's limit.
fn parse(data: &[u8]) -> Parsed<'_> {
    let window = &data[..data.len().min(MAX_HEAD)];
    let mut start = 0; // the request line, after any stray empty lines
    let mut pos = 0;
    let head_end = loop {
        let Some(nl) = window[pos..].iter().position(|&b| b == b'\n') else {
            return if data.len() >= MAX_HEAD {
                Parsed::Bad
            } else {
                Parsed::Partial
            };
        };
        let next = pos + nl + 1;
        if window[pos..next].trim_ascii().is_empty() {
            if pos > start {
                break next;
            }
            start = next;
        }
        pos = next;
    };
    let Ok(head) = std::str::from_utf8(&data[start..head_end]) else {
        return Parsed::Bad;
    };
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or_default().split_whitespace();
    let method = first.next().unwrap_or_default();
    let path = first.next().unwrap_or_default();
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.trim().parse::<usize>())
        .transpose();
    let length = match length {
        Ok(n) if n.unwrap_or(0) <= MAX_BODY => n.unwrap_or(0),
        _ => return Parsed::Bad,
    };
    let end = head_end + length;
    match data.get(head_end..end) {
        Some(body) => Parsed::Request(Request { method, path, body }, end),
        None => Parsed::Partial,
    }
}

/// Sends `bytes` with one `send`; false unless all of them went out. The
/// answers are tiny, so a socket that does not take one whole is closed.
fn send(mut stream: &TcpStream, bytes: &[u8]) -> bool {
    matches!(stream.write(bytes), Ok(n) if n == bytes.len())
}

/// What becomes of a connection after its bytes were served.
#[derive(Debug, PartialEq)]
enum Next {
    Keep,
    Close,
    Subscribe,
}

/// Answers every whole request at the start of `data`; returns what to do
/// with the connection and how many bytes were used.
fn answer(stream: &TcpStream, data: &[u8], subscribers: &mut Subscribers) -> (Next, usize) {
    let mut used = 0;
    loop {
        let (req, len) = match parse(&data[used..]) {
            Parsed::Request(req, len) => (req, len),
            Parsed::Partial => return (Next::Keep, used),
            Parsed::Bad => {
                send(stream, BAD_REQUEST);
                return (Next::Close, used);
            }
        };
        used += len;
        match (req.method, req.path) {
            // Bytes after a subscription are never read, as on rill's
            // parked path.
            ("GET", "/sub") if send(stream, STREAM_HEAD) => return (Next::Subscribe, used),
            ("POST", "/pub") if send(stream, CREATED) => subscribers.publish(req.body),
            ("GET", "/sub") | ("POST", "/pub") => return (Next::Close, used),
            _ if send(stream, NOT_FOUND) => {}
            _ => return (Next::Close, used),
        }
    }
}

/// A connection that is not a subscriber yet, and the bytes of its
/// unfinished request.
struct Conn {
    stream: TcpStream,
    unread: Vec<u8>,
}

impl Conn {
    /// One `recv`, then every whole request it completes.
    fn readable(&mut self, scratch: &mut [u8], subscribers: &mut Subscribers) -> Next {
        let n = match self.stream.read(scratch) {
            Ok(0) => {
                if !self.unread.is_empty() {
                    send(&self.stream, BAD_REQUEST); // ended inside a request
                }
                return Next::Close;
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return Next::Keep;
            }
            Err(_) => return Next::Close,
        };
        if self.unread.is_empty() {
            // The usual case: whole requests, answered from the scratch
            // buffer; only a tail is kept.
            let (next, used) = answer(&self.stream, &scratch[..n], subscribers);
            if next == Next::Keep {
                self.unread.extend_from_slice(&scratch[used..n]);
            }
            next
        } else {
            self.unread.extend_from_slice(&scratch[..n]);
            let (next, used) = answer(&self.stream, &self.unread, subscribers);
            self.unread.drain(..used);
            next
        }
    }
}

/// An epoll instance; each registered fd is its own token.
struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by epoll_create1 and nothing else
        // owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    /// Level-triggered: an fd with unread bytes is reported again by the
    /// next wait, so one `recv` per readiness event is enough and none is
    /// spent learning that the socket is drained (edge-triggered would need
    /// a second `recv` returning EAGAIN per request, or a guess).
    fn add(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd)
    }

    fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: fd as u64,
        };
        // SAFETY: `event` is a valid epoll_event that outlives the call
        // (kernels before 2.6.9 need it non-null even for EPOLL_CTL_DEL).
        let r = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut event) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for readiness; returns how many entries of `events` are set.
    fn wait(&self, events: &mut [libc::epoll_event]) -> io::Result<usize> {
        let max = libc::c_int::try_from(events.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `events` is valid for writes of `max` entries, and the
        // kernel writes at most `max`.
        let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), max, -1) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

/// Serves `listener` on the calling thread, for ever.
fn run(listener: TcpListener) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let epoll = Epoll::new()?;
    let listen_fd = listener.as_raw_fd();
    epoll.add(listen_fd)?;
    let mut conns: HashMap<RawFd, Conn> = HashMap::new();
    let mut subscribers = Subscribers::default();
    let mut scratch = vec![0; READ_SIZE];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    loop {
        let n = match epoll.wait(&mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for event in &events[..n] {
            let fd = event.u64 as RawFd;
            if fd == listen_fd {
                accept_all(&listener, &epoll, &mut conns);
                continue;
            }
            // An fd closed or subscribed earlier in this batch is gone.
            let Some(conn) = conns.get_mut(&fd) else {
                continue;
            };
            match conn.readable(&mut scratch, &mut subscribers) {
                Next::Keep => {}
                // Closing the socket also takes it out of epoll.
                Next::Close => drop(conns.remove(&fd)),
                Next::Subscribe => {
                    if let Some(conn) = conns.remove(&fd) {
                        if epoll.delete(fd).is_ok() {
                            subscribers.sockets.push(conn.stream);
                        }
                    }
                }
            }
        }
    }
}

/// Accepts every pending connection: non-blocking, `TCP_NODELAY`, in epoll.
fn accept_all(listener: &TcpListener, epoll: &Epoll, conns: &mut HashMap<RawFd, Conn>) {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            // Out of fds or memory: the listener stays ready, the next wait
            // tries again.
            Err(_) => return,
        };
        let fd = stream.as_raw_fd();
        // A connection that cannot be set up is closed by the drop.
        if stream.set_nodelay(true).is_ok()
            && stream.set_nonblocking(true).is_ok()
            && epoll.add(fd).is_ok()
        {
            let unread = Vec::new();
            conns.insert(fd, Conn { stream, unread });
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
    run(TcpListener::bind(addr)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;
    use std::time::Duration;

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

    #[test]
    fn a_request_is_parsed_with_its_body() {
        let data = b"\r\nPOST /pub HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET";
        let req = Request {
            method: "POST",
            path: "/pub",
            body: b"abc",
        };
        assert_eq!(parse(data), Parsed::Request(req, data.len() - 3));
    }

    #[test]
    fn an_unfinished_request_waits() {
        assert_eq!(parse(b""), Parsed::Partial);
        assert_eq!(parse(b"\r\n"), Parsed::Partial);
        assert_eq!(parse(b"GET /sub HTTP/1.1\r\n"), Parsed::Partial);
        let no_body_yet = b"POST /pub HTTP/1.1\r\ncontent-length: 4\r\n\r\nab";
        assert_eq!(parse(no_body_yet), Parsed::Partial);
    }

    #[test]
    fn requests_over_the_limits_are_bad() {
        let mut long = b"GET /sub HTTP/1.1\r\nx: ".to_vec();
        long.resize(MAX_HEAD, b'a');
        assert_eq!(parse(&long), Parsed::Bad);
        let big = format!(
            "POST /pub HTTP/1.1\r\ncontent-length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(parse(big.as_bytes()), Parsed::Bad);
        let nan = b"POST /pub HTTP/1.1\r\ncontent-length: x\r\n\r\n";
        assert_eq!(parse(nan), Parsed::Bad);
    }

    /// The floor's loop on a loopback port of its own.
    fn start() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || run(listener));
        addr
    }

    fn connect(addr: SocketAddr) -> TcpStream {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    /// Reads exactly `n` bytes.
    fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        s.read_exact(&mut buf).unwrap();
        buf
    }

    /// A subscriber whose stream head has arrived.
    fn subscribe(addr: SocketAddr) -> TcpStream {
        let mut sub = connect(addr);
        sub.write_all(b"GET /sub HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap();
        assert_eq!(read_n(&mut sub, STREAM_HEAD.len()), STREAM_HEAD);
        sub
    }

    fn post(body: &str) -> String {
        format!(
            "POST /pub HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn a_subscriber_gets_the_head_then_each_event() {
        let addr = start();
        let mut sub = subscribe(addr);

        let mut publisher = connect(addr);
        for (id, body) in [(1, "b 1"), (2, "b 2")] {
            publisher.write_all(post(body).as_bytes()).unwrap();
            assert_eq!(read_n(&mut publisher, CREATED.len()), CREATED);
            let want = frame(id, body.as_bytes());
            assert_eq!(read_n(&mut sub, want.len()), want);
        }
    }

    #[test]
    fn pipelined_requests_all_get_answers() {
        let addr = start();
        let mut sub = subscribe(addr);

        // Two publishes and a 404 in one write, a stray empty line between.
        let mut c = connect(addr);
        let batch = format!(
            "{}\r\n{}GET /nope HTTP/1.1\r\n\r\n",
            post("one"),
            post("two")
        );
        c.write_all(batch.as_bytes()).unwrap();
        let want = [CREATED, CREATED, NOT_FOUND].concat();
        assert_eq!(read_n(&mut c, want.len()), want);
        let events = [frame(1, b"one"), frame(2, b"two")].concat();
        assert_eq!(read_n(&mut sub, events.len()), events);

        // A request split over several writes is answered once whole.
        let split = post("three");
        let (a, b) = split.split_at(split.len() - 2);
        c.write_all(a.as_bytes()).unwrap();
        thread::sleep(Duration::from_millis(50));
        c.write_all(b.as_bytes()).unwrap();
        assert_eq!(read_n(&mut c, CREATED.len()), CREATED);
        let want = frame(3, b"three");
        assert_eq!(read_n(&mut sub, want.len()), want);
    }

    #[test]
    fn a_bad_request_gets_400_and_the_connection_closes() {
        let addr = start();
        let mut c = connect(addr);
        c.write_all(b"POST /pub HTTP/1.1\r\ncontent-length: nope\r\n\r\n")
            .unwrap();
        let mut all = Vec::new();
        c.read_to_end(&mut all).unwrap();
        assert_eq!(all, BAD_REQUEST);

        // The loop still serves others.
        let mut c = connect(addr);
        c.write_all(post("x").as_bytes()).unwrap();
        assert_eq!(read_n(&mut c, CREATED.len()), CREATED);
    }
}
