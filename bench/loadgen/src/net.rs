//! Loopback HTTP/1.1 by hand: connections bound to one of many 127.0.0.x
//! source addresses before they connect (one address has only ~28k
//! ephemeral ports), requests, response heads, and the lines of a body.
//!
//! SSE bodies arrive chunked; every server under test writes whole events
//! per chunk, so the body is read as lines and chunk-size lines are simply
//! not `data:`/`id:` lines. Delivered-vs-expected counts catch any miss.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Round-robin source addresses 127.0.0.2 ..= 127.0.0.(1+count).
pub struct Sources {
    count: usize,
    next: AtomicUsize,
}

impl Sources {
    pub fn new(count: usize) -> Self {
        Self {
            count: count.clamp(1, 250),
            next: AtomicUsize::new(0),
        }
    }

    fn pick(&self) -> Ipv4Addr {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.count;
        Ipv4Addr::new(127, 0, 0, 2 + i as u8)
    }

    /// Connects to `dst` from the next source address.
    pub async fn connect(&self, dst: SocketAddr) -> io::Result<TcpStream> {
        let sock = TcpSocket::new_v4()?;
        sock.set_reuseaddr(true)?;
        sock.bind(SocketAddr::new(IpAddr::V4(self.pick()), 0))?;
        let stream = sock.connect(dst).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// Only loopback targets are allowed.
pub fn loopback(addr: &str) -> io::Result<SocketAddr> {
    let a: SocketAddr = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    match a.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => Ok(a),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr} is not in 127.0.0.0/8"),
        )),
    }
}

/// A request's bytes.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if method != "GET" {
        r.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    let mut bytes = r.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A response head: status and the bytes read past it.
pub struct Head {
    pub status: u16,
    pub content_length: Option<usize>,
    pub chunked: bool,
    pub rest: Vec<u8>,
}

/// Reads a response head (at most 64 KiB).
pub async fn read_head<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> io::Result<Head> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let content_length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok());
            let chunked = head
                .lines()
                .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
            let rest = buf[end + 4..].to_vec();
            buf.clear();
            return Ok(Head {
                status,
                content_length,
                chunked,
                rest,
            });
        }
        if buf.len() > 64 * 1024 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too long"));
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends one request on a keep-alive connection and reads the whole
/// response; returns its status.
pub async fn round_trip(s: &mut TcpStream, req: &[u8]) -> io::Result<u16> {
    Ok(exchange(s, req).await?.0)
}

/// Sends one request on a keep-alive connection and reads the whole
/// response; returns its status and body (a chunked body keeps its framing).
pub async fn exchange<S>(s: &mut S, req: &[u8]) -> io::Result<(u16, Vec<u8>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    s.write_all(req).await?;
    let mut buf = Vec::with_capacity(512);
    let head = read_head(s, &mut buf).await?;
    let mut body = head.rest;
    let mut chunk = [0u8; 4096];
    loop {
        let done = match head.content_length {
            Some(n) => body.len() >= n,
            None if head.chunked => body.ends_with(b"0\r\n\r\n"),
            None => true,
        };
        if done {
            return Ok((head.status, body));
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Splits a byte stream into lines, keeping a partial line for the next read.
#[derive(Default)]
pub struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    /// Adds `bytes` and calls `f` with each complete line (without `\n`/`\r`).
    pub fn feed(&mut self, bytes: &[u8], mut f: impl FnMut(&[u8])) {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(i) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let mut line = &self.pending[start..start + i];
            if let Some(l) = line.strip_suffix(b"\r") {
                line = l;
            }
            f(line);
            start += i + 1;
        }
        self.pending.drain(..start);
    }
}

/// When to stop reading an event stream: at `deadline`, or after `quiet`
/// with no bytes (a peer that lost events would otherwise keep every
/// reader waiting until the deadline).
#[derive(Clone, Copy)]
pub struct Until {
    pub deadline: tokio::time::Instant,
    pub quiet: std::time::Duration,
}

/// Reads an open event stream (`first`: its body bytes read with the
/// head) until `counts` has accepted `want` lines or `until` says stop;
/// returns how many it accepted.
pub async fn read_lines_until(
    s: &mut TcpStream,
    first: &[u8],
    want: usize,
    until: Until,
    mut counts: impl FnMut(&[u8]) -> bool,
) -> usize {
    let mut got = 0;
    let mut lines = Lines::default();
    lines.feed(first, |l| got += usize::from(counts(l)));
    let mut buf = vec![0u8; 16 * 1024];
    while got < want {
        let stop = until
            .deadline
            .min(tokio::time::Instant::now() + until.quiet);
        match tokio::time::timeout_at(stop, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => lines.feed(&buf[..n], |l| got += usize::from(counts(l))),
            _ => break,
        }
    }
    got
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_across_reads() {
        let mut l = Lines::default();
        let mut got = Vec::new();
        l.feed(b"1a\r\ndata: x", |x| got.push(x.to_vec()));
        l.feed(b"y\n\n\r\n", |x| got.push(x.to_vec()));
        assert_eq!(got, [b"1a".to_vec(), b"data: xy".to_vec(), vec![], vec![]]);
    }

    #[test]
    fn only_loopback() {
        assert!(loopback("127.0.0.1:80").is_ok());
        assert!(loopback("10.0.0.1:80").is_err());
    }
}
