//! An accepted connection as the accept loop ([`super::accept`]) holds it:
//! counted in `/metrics` while open, and holding its place under
//! `--max-connections` until it closes. The loop sets `TCP_NODELAY` on it
//! (each event should leave at once, not wait for Nagle).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use crate::metrics as m;

/// One accepted connection.
pub struct Connection {
    stream: TcpStream,
    /// The place this connection holds under `--max-connections`.
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    /// Counts `stream`, which holds `slot` until it closes.
    pub fn with_slot(stream: TcpStream, slot: OwnedSemaphorePermit) -> Self {
        metrics::gauge!(m::CONNECTIONS).increment(1.0);
        Self {
            stream,
            _slot: slot,
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        metrics::gauge!(m::CONNECTIONS).decrement(1.0);
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
