//! The bytes of a parked response: its head, chunk framing, and writes
//! that wait for the socket only when they must.
//!
//! A parked event stream is sent with `transfer-encoding: chunked`, as
//! hyper sends event streams, so a proxy or client sees the same response
//! whichever path served it. A writer frames each batch once and writes
//! the same bytes to every member.

use std::io;

use axum::http::response::Parts;
use axum::http::{HeaderValue, StatusCode};
use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The chunk that ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// `payload` as one chunk (nothing for an empty payload: an empty chunk
/// would end the body).
pub fn chunk(payload: &[u8]) -> Bytes {
    if payload.is_empty() {
        return Bytes::new();
    }
    let mut out = BytesMut::with_capacity(payload.len() + 12);
    out.put_slice(format!("{:X}\r\n", payload.len()).as_bytes());
    out.put_slice(payload);
    out.put_slice(b"\r\n");
    out.freeze()
}

/// The status line and headers of `parts`, with `date`, then either
/// `transfer-encoding: chunked` (a stream) or `content-length`.
pub fn head(parts: &Parts, content_length: Option<usize>) -> Bytes {
    let mut out = BytesMut::with_capacity(256);
    status_line(&mut out, parts.status);
    for (name, value) in &parts.headers {
        if matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "date"
        ) {
            continue;
        }
        put_header(&mut out, name.as_str(), value);
    }
    end_head(&mut out, content_length);
    out.freeze()
}

/// `HTTP/1.1 <code> <reason>`.
pub fn status_line(out: &mut BytesMut, status: StatusCode) {
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
}

/// `date`, the body's framing, and the blank line that ends a head.
pub fn end_head(out: &mut BytesMut, content_length: Option<usize>) {
    out.put_slice(b"date: ");
    DATE.with(|d| out.put_slice(d.borrow_mut().now().as_bytes()));
    out.put_slice(b"\r\n");
    match content_length {
        Some(n) => {
            out.put_slice(b"content-length: ");
            out.put_slice(itoa::Buffer::new().format(n).as_bytes());
            out.put_slice(b"\r\n");
        }
        None => out.put_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.put_slice(b"\r\n");
}

thread_local! {
    static DATE: std::cell::RefCell<Date> = const {
        std::cell::RefCell::new(Date { second: 0, text: String::new() })
    };
}

/// The `date` header's text, formatted at most once a second per thread
/// (as hyper does): formatting it for every answer cost more than the rest
/// of the head (callgrind, publish benchmark).
struct Date {
    second: u64,
    text: String,
}

impl Date {
    fn now(&mut self) -> &str {
        let now = std::time::SystemTime::now();
        let second = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = httpdate::fmt_http_date(now);
        }
        &self.text
    }
}

fn put_header(out: &mut BytesMut, name: &str, value: &HeaderValue) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value.as_bytes());
    out.put_slice(b"\r\n");
}

/// Reads what the socket holds into `buf` (at least one byte, or `0` at
/// the end of the stream), waiting for it only when there is nothing yet.
///
/// A read that comes back shorter than the room it was given has emptied
/// the socket, so the socket's readiness is cleared there and then: the
/// next call waits for the next arrival instead of first asking the kernel
/// again and hearing "would block", one system call fewer per request on a
/// keep-alive connection. This is safe with tokio's edge-triggered
/// readiness: data arriving after the read raises a new readiness event,
/// which the clearing cannot undo (tokio clears only the event it saw).
pub async fn read_some(tcp: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() - buf.len() < 256 {
        buf.reserve(1024);
    }
    let room = buf.capacity() - buf.len();
    loop {
        tcp.readable().await?;
        let mut drained = None;
        let read = tcp.try_io(Interest::READABLE, || {
            let n = tcp.try_read_buf(buf)?;
            if n > 0 && n < room {
                // Report "would block" so that tokio clears the readiness;
                // the count goes out beside it.
                drained = Some(n);
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match (read, drained) {
            (_, Some(n)) => return Ok(n),
            (Ok(n), None) => return Ok(n),
            (Err(e), None) if e.kind() == io::ErrorKind::WouldBlock => {}
            (Err(e), None) => return Err(e),
        }
    }
}

/// Writes as much of `bytes` as the socket takes now, moving `bytes` past
/// it; true when all of it went.
fn write_now(tcp: &TcpStream, bytes: &mut &[u8]) -> io::Result<bool> {
    while !bytes.is_empty() {
        match tcp.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Writes all of `bytes` by `deadline`. The usual answer fits the socket
/// at once, so no timer is made unless the socket is full.
pub async fn write_all_by(tcp: &TcpStream, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
    if write_now(tcp, &mut bytes)? {
        return Ok(());
    }
    tokio::time::timeout_at(deadline, write_all(tcp, bytes))
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

/// Writes all of `bytes`, waiting for the socket to take more only when
/// it would block.
pub async fn write_all(tcp: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !write_now(tcp, &mut bytes)? {
        tcp.writable().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{Response, StatusCode};

    #[test]
    fn chunks_and_heads() {
        assert_eq!(&chunk(b"hello")[..], b"5\r\nhello\r\n");
        assert_eq!(&chunk(&[b'x'; 26])[..4], b"1A\r\n");
        assert!(chunk(b"").is_empty());
        let (parts, ()) = Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/event-stream; charset=utf-8")
            .header("content-length", "99")
            .body(())
            .unwrap()
            .into_parts();
        let text = String::from_utf8(head(&parts, None).to_vec()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("content-type: text/event-stream; charset=utf-8\r\n"));
        assert!(text.contains("\r\ndate: "));
        assert!(text.ends_with("transfer-encoding: chunked\r\n\r\n"));
        assert!(!text.contains("content-length"));
        let text = String::from_utf8(head(&parts, Some(3)).to_vec()).unwrap();
        assert!(text.ends_with("content-length: 3\r\n\r\n"), "{text}");
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn a_drained_socket_still_hears_the_next_request() {
        use tokio::io::AsyncWriteExt;
        let (mut client, server) = pair().await;
        let mut buf = BytesMut::new();
        for round in 0..50 {
            let request = format!("request {round}\n");
            if round % 2 == 1 {
                // Arrives while the reader waits, not before it reads.
                let later = request.clone();
                let (c, wrote) = tokio::join!(
                    async {
                        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                        client.write_all(later.as_bytes()).await
                    },
                    read_some(&server, &mut buf)
                );
                c.unwrap();
                assert!(wrote.unwrap() > 0);
            } else {
                client.write_all(request.as_bytes()).await.unwrap();
            }
            while buf.len() < request.len() {
                let read = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    read_some(&server, &mut buf),
                );
                assert!(read.await.unwrap().unwrap() > 0);
            }
            assert_eq!(&buf[..], request.as_bytes());
            buf.clear();
        }
        drop(client);
        assert_eq!(read_some(&server, &mut buf).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_read_that_fills_the_buffer_leaves_the_rest_to_the_next() {
        use tokio::io::AsyncWriteExt;
        let (mut client, server) = pair().await;
        let sent: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&sent).await.unwrap();
        let mut buf = BytesMut::with_capacity(16);
        while buf.len() < sent.len() {
            let read = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                read_some(&server, &mut buf),
            );
            assert!(read.await.unwrap().unwrap() > 0);
        }
        assert_eq!(&buf[..], &sent[..]);
    }
}
