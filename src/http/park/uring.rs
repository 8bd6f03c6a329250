//! A fan-out's writes submitted to the kernel in batches through io_uring
//! (`--fanout-writes uring`), instead of one `send` system call each.
//!
//! On loopback and on a LAN alike, almost all of a delivery's cost is the
//! kernel's TCP send path; what a batch saves is each write's own entry
//! into the kernel, a few hundred nanoseconds on a virtual machine with
//! its mitigations. The writes are the same: every member's socket gets the
//! frame with `MSG_DONTWAIT`, so a full socket answers "would block" at
//! once (the write is never parked in the kernel) and the caller hands
//! that member to its drain task exactly as after a plain `send`.
//!
//! Each runtime thread has a ring of its own, made on first use; a writer
//! submits and reaps a whole batch before it returns, so nothing is in
//! flight between calls. Where the kernel refuses io_uring (too old, turned
//! off by `kernel.io_uring_disabled`, or blocked by a container's seccomp
//! profile), the first attempt says so once in the log and rill writes
//! with `send` from then on.

use std::cell::RefCell;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use io_uring::{opcode, types, IoUring};

/// Entries in each thread's submission queue: the largest batch.
const ENTRIES: u32 = 2048;

/// Groups smaller than this are written with `send`: a submission costs
/// more than it saves for a handful of writes.
pub(super) const MIN_BATCH: usize = 16;

/// Set once io_uring turned out not to work here.
static UNAVAILABLE: AtomicBool = AtomicBool::new(false);

thread_local! {
    static RING: RefCell<Option<IoUring>> = const { RefCell::new(None) };
}

/// Why a batch was not (wholly) written through io_uring.
#[derive(Debug)]
pub(super) enum Refused {
    /// io_uring is not available (or cannot take a frame this large):
    /// nothing was written; write with `send`.
    Unavailable,
    /// The ring failed mid-batch: the sockets not reported to `done` may
    /// or may not have been written.
    Broken,
}

/// Whether io_uring may still be tried.
pub(super) fn available() -> bool {
    !UNAVAILABLE.load(Ordering::Relaxed)
}

/// Writes `bytes` to each of `fds` with `MSG_DONTWAIT`, in batches of at
/// most [`ENTRIES`]; calls `done(i, result)` once per socket with the
/// number of bytes the kernel took or its error (`WouldBlock` when the
/// socket is full).
pub(super) fn send_each(
    fds: &[RawFd],
    bytes: &Bytes,
    mut done: impl FnMut(usize, io::Result<usize>),
) -> Result<(), Refused> {
    let Ok(len) = u32::try_from(bytes.len()) else {
        return Err(Refused::Unavailable);
    };
    RING.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            match IoUring::new(ENTRIES) {
                Ok(ring) => *slot = Some(ring),
                Err(e) => {
                    if !UNAVAILABLE.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "io_uring is not available ({e}); fan-out writes use send instead"
                        );
                    }
                    return Err(Refused::Unavailable);
                }
            }
        }
        let Some(ring) = slot.as_mut() else {
            return Err(Refused::Unavailable);
        };
        let mut start = 0;
        while start < fds.len() {
            let end = fds.len().min(start + ENTRIES as usize);
            if batch(ring, fds, start, end, bytes.as_ptr(), len, &mut done).is_err() {
                // The kernel may still hold entries that point into
                // `bytes`: leak the ring and one reference to the bytes,
                // so that neither is ever freed under it; io_uring is not
                // used again.
                if let Some(ring) = slot.take() {
                    std::mem::forget(ring);
                }
                std::mem::forget(bytes.clone());
                UNAVAILABLE.store(true, Ordering::Relaxed);
                tracing::error!("io_uring failed mid-batch; fan-out writes use send from now on");
                return Err(Refused::Broken);
            }
            start = end;
        }
        Ok(())
    })
}

/// Submits the sends of `fds[start..end]` and reaps their completions.
fn batch(
    ring: &mut IoUring,
    fds: &[RawFd],
    start: usize,
    end: usize,
    ptr: *const u8,
    len: u32,
    done: &mut impl FnMut(usize, io::Result<usize>),
) -> Result<(), ()> {
    {
        let mut sq = ring.submission();
        for (i, fd) in fds.iter().enumerate().take(end).skip(start) {
            let send = opcode::Send::new(types::Fd(*fd), ptr, len)
                .flags(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
                .build()
                .user_data(i as u64);
            // SAFETY: the entry points into the caller's bytes, and
            // `send_each` returns only once every entry pushed here has
            // completed; if the ring fails first, it leaks a reference to
            // the bytes so they are never freed.
            if unsafe { sq.push(&send) }.is_err() {
                return Err(());
            }
        }
    }
    let mut left = end - start;
    while left > 0 {
        match ring.submit_and_wait(left) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(()),
        }
        for cqe in ring.completion() {
            let i = usize::try_from(cqe.user_data()).unwrap_or(usize::MAX);
            let result = match cqe.result() {
                n if n >= 0 => Ok(n as usize),
                e => Err(io::Error::from_raw_os_error(-e)),
            };
            if i < end {
                done(i, result);
            }
            left = left.saturating_sub(1);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    #[test]
    fn every_socket_gets_the_bytes_or_a_clear_refusal() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        let mut servers = Vec::new();
        for _ in 0..40 {
            clients.push(TcpStream::connect(addr).unwrap());
            let (s, _) = listener.accept().unwrap();
            s.set_nonblocking(true).unwrap();
            servers.push(s);
        }
        let fds: Vec<RawFd> = servers.iter().map(|s| s.as_raw_fd()).collect();
        let mut results = vec![None; fds.len()];
        let frame = Bytes::from_static(b"data: x\n\n");
        match send_each(&fds, &frame, |i, r| results[i] = Some(r.unwrap())) {
            // Where the kernel refuses io_uring, nothing was written.
            Err(Refused::Unavailable) => {
                assert!(results.iter().all(Option::is_none));
                assert!(!available());
                return;
            }
            Err(Refused::Broken) => panic!("the ring broke"),
            Ok(()) => {}
        }
        assert!(results.iter().all(|r| *r == Some(9)), "{results:?}");
        for c in &mut clients {
            let mut got = [0u8; 9];
            c.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"data: x\n\n");
        }
    }

    #[test]
    fn a_full_socket_would_block() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (s, _) = listener.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        socket2::SockRef::from(&s)
            .set_send_buffer_size(4096)
            .unwrap();
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let mut outcomes = Vec::new();
        // The client never reads: the socket fills within a few rounds.
        for _ in 0..200 {
            let mut last = None;
            if send_each(&[s.as_raw_fd()], &chunk, |_, r| last = Some(r)).is_err() {
                return; // no io_uring here: nothing to check
            }
            match last {
                Some(Err(e)) => {
                    outcomes.push(e.kind());
                    break;
                }
                Some(Ok(n)) => assert!(n > 0 && n <= chunk.len()),
                None => panic!("no completion reported"),
            }
        }
        assert_eq!(outcomes, vec![io::ErrorKind::WouldBlock]);
    }
}
