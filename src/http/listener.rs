//! An accepted connection as the accept loop ([`super::accept`]) holds it:
//! counted in `/metrics` while open, holding its place under
//! `--max-connections` and `--max-connections-per-ip` until it closes, with
//! its socket tuned for event streams ([`tune`]).
//!
//! The per-address count lives in a map that only holds addresses with a
//! connection open: an entry goes when its count reaches zero, so a flood
//! from many addresses costs memory only while its connections are open,
//! and never more than `--max-connections` entries.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use crate::metrics as m;

/// One accepted connection.
pub struct Connection {
    stream: TcpStream,
    /// The place this connection holds under `--max-connections`.
    _slot: OwnedSemaphorePermit,
    /// Its place under `--max-connections-per-ip`, when that cap is on.
    _ip_slot: Option<IpSlot>,
}

impl Connection {
    /// Counts `stream`, which holds `slot` and `ip_slot` until it closes.
    pub fn with_slots(
        stream: TcpStream,
        slot: OwnedSemaphorePermit,
        ip_slot: Option<IpSlot>,
    ) -> Self {
        metrics::gauge!(m::CONNECTIONS).increment(1.0);
        Self {
            stream,
            _slot: slot,
            _ip_slot: ip_slot,
        }
    }
}

impl Connection {
    /// The socket, for writes that must not wait (parked subscribers).
    pub fn tcp(&self) -> &TcpStream {
        &self.stream
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        metrics::gauge!(m::CONNECTIONS).decrement(1.0);
    }
}

/// Sets `TCP_NODELAY` (each event should leave at once, not wait for
/// Nagle) and, unless `send_buffer_bytes` is 0, caps the kernel's send
/// buffer. Linux autotunes a socket's send buffer up to 4 MB: bytes that a
/// slow reader gets, stale, before it learns with `event: reset` that it
/// fell behind. A fixed `SO_SNDBUF` turns that autotuning off for this
/// socket (Linux doubles the value for its own bookkeeping).
pub fn tune(stream: &TcpStream, send_buffer_bytes: usize) {
    let _ = stream.set_nodelay(true);
    if send_buffer_bytes > 0 {
        if let Err(e) = SockRef::from(stream).set_send_buffer_size(send_buffer_bytes) {
            tracing::debug!(error = %e, "cannot set SO_SNDBUF");
        }
    }
}

/// Open connections per client address, for `--max-connections-per-ip`.
/// Owned by the accept loop; the slots it hands out give their place back
/// from whichever task drops them.
pub struct PerIp {
    counts: Option<Arc<IpCounts>>,
    /// When a refusal was last logged, and how many were not logged since.
    warned: Option<Instant>,
    unlogged: u64,
}

/// The shared map behind [`PerIp`].
struct IpCounts {
    max: u32,
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// A connection's place under `--max-connections-per-ip`; given back on drop.
pub struct IpSlot {
    counts: Arc<IpCounts>,
    key: IpAddr,
}

/// The answer of [`PerIp::admit`] for an address at the cap.
#[derive(Debug)]
pub struct AtCap;

/// A flood must not flood the log too: at most one line per this long.
const WARN_EVERY: Duration = Duration::from_secs(1);

impl PerIp {
    /// A cap of `max` connections per address; 0 turns it off.
    pub fn new(max: usize) -> Self {
        let counts = (max > 0).then(|| {
            Arc::new(IpCounts {
                max: u32::try_from(max).unwrap_or(u32::MAX),
                open: Mutex::new(HashMap::new()),
            })
        });
        Self {
            counts,
            warned: None,
            unlogged: 0,
        }
    }

    /// A place for one more connection from `ip`: `Ok(None)` when the cap
    /// is off, [`AtCap`] when `ip` is at the cap (counted and logged).
    pub fn admit(&mut self, ip: IpAddr) -> Result<Option<IpSlot>, AtCap> {
        let Some(counts) = &self.counts else {
            return Ok(None);
        };
        let key = key_of(ip);
        {
            let mut open = counts.open.lock().unwrap_or_else(PoisonError::into_inner);
            let n = open.entry(key).or_insert(0);
            if *n < counts.max {
                *n += 1;
                return Ok(Some(IpSlot {
                    counts: counts.clone(),
                    key,
                }));
            }
        }
        let max = counts.max;
        self.refused(ip, max);
        Err(AtCap)
    }

    fn refused(&mut self, ip: IpAddr, max: u32) {
        metrics::counter!(m::CONNECTIONS_DROPPED, "reason" => "per_ip").increment(1);
        self.unlogged += 1;
        let now = Instant::now();
        if self
            .warned
            .is_some_and(|at| now.duration_since(at) < WARN_EVERY)
        {
            return;
        }
        tracing::warn!(
            %ip,
            refused = self.unlogged,
            "connections over --max-connections-per-ip ({max}) closed; the count is since the last such line"
        );
        self.warned = Some(now);
        self.unlogged = 0;
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self
            .counts
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
                // A map does not shrink by itself: after a flood from many
                // addresses, give back what it grew to.
                let len = open.len();
                if open.capacity() > 1024 && len < open.capacity() / 8 {
                    open.shrink_to(len * 2);
                }
            }
        }
    }
}

/// The address a connection counts against: IPv4 as is (also when it
/// arrives IPv4-mapped on a dual-stack socket), IPv6 by its /64, since one
/// host is usually handed a whole /64 and could otherwise pick a fresh
/// address for every connection.
fn key_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !(u128::MAX >> 64);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn entries(p: &PerIp) -> usize {
        p.counts.as_ref().unwrap().open.lock().unwrap().len()
    }

    #[test]
    fn an_address_at_the_cap_is_refused_until_a_slot_is_given_back() {
        let mut p = PerIp::new(2);
        let a = p.admit(ip("192.0.2.1")).unwrap();
        let b = p.admit(ip("192.0.2.1")).unwrap();
        assert!(p.admit(ip("192.0.2.1")).is_err());
        // Another address is unaffected.
        let other = p.admit(ip("192.0.2.2")).unwrap();
        assert!(other.is_some());
        drop(a);
        assert!(p.admit(ip("192.0.2.1")).is_ok());
        drop(b);
    }

    #[test]
    fn entries_go_when_their_count_reaches_zero() {
        let mut p = PerIp::new(3);
        let slots: Vec<_> = (0..=255u8)
            .map(|i| p.admit(IpAddr::from([198, 51, 100, i])).unwrap())
            .collect();
        assert_eq!(entries(&p), 256);
        drop(slots);
        assert_eq!(entries(&p), 0);
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let mut p = PerIp::new(1);
        let _a = p.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(p.admit(ip("2001:db8:1:2:ffff::9")).is_err());
        assert!(p.admit(ip("2001:db8:1:3::1")).is_ok());
        let _b = p.admit(ip("203.0.113.7")).unwrap();
        assert!(p.admit(ip("::ffff:203.0.113.7")).is_err());
    }

    #[test]
    fn off_admits_everyone_without_counting() {
        let mut p = PerIp::new(0);
        for _ in 0..10 {
            assert!(matches!(p.admit(ip("192.0.2.1")), Ok(None)));
        }
    }
}
