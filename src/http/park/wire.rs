//! The bytes of a parked response: its head, chunk framing, and writes
//! that wait for the socket only when they must.
//!
//! A parked event stream is sent with `transfer-encoding: chunked`, as
//! hyper sends event streams, so a proxy or client sees the same response
//! whichever path served it. A writer frames each batch once and writes
//! the same bytes to every member.

use std::io;

use axum::http::response::Parts;
use axum::http::HeaderValue;
use bytes::{BufMut, Bytes, BytesMut};
use tokio::net::TcpStream;

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
    let reason = parts.status.canonical_reason().unwrap_or("");
    out.put_slice(format!("HTTP/1.1 {} {reason}\r\n", parts.status.as_u16()).as_bytes());
    for (name, value) in &parts.headers {
        if matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "date" | "connection"
        ) {
            continue;
        }
        put_header(&mut out, name.as_str(), value);
    }
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    out.put_slice(format!("date: {date}\r\n").as_bytes());
    match content_length {
        Some(n) => out.put_slice(format!("content-length: {n}\r\n").as_bytes()),
        None => out.put_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.put_slice(b"\r\n");
    out.freeze()
}

fn put_header(out: &mut BytesMut, name: &str, value: &HeaderValue) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value.as_bytes());
    out.put_slice(b"\r\n");
}

/// Writes all of `bytes`, waiting for the socket to take more only when
/// it would block.
pub async fn write_all(tcp: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match tcp.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => tcp.writable().await?,
            Err(e) => return Err(e),
        }
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
}
