//! Notices parked clients that hang up: one task for every parked
//! connection, not one each.
//!
//! A parked socket is only ever written to, so nothing would notice a
//! client that left until the next write (a keep-alive, up to
//! `--keepalive-secs` later). Instead this task waits, for all of them at
//! once, for a socket to turn readable: a client that closes makes it
//! readable at EOF (or with an error). Its place is then given back at
//! once, so a generation nobody listens to any more is counted as unheard
//! from that moment. A client has nothing to say on an event stream; one
//! that sends more than a little is closed.

use std::io;
use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;

use super::ParkedConn;

/// Bytes a parked client may send (and have discarded) before it is
/// closed.
const MAX_CLIENT_BYTES: usize = 4096;

/// Watches every connection that arrives on `arrivals` until its client
/// leaves or rill closes it.
pub(super) async fn run(mut arrivals: mpsc::UnboundedReceiver<Arc<ParkedConn>>) {
    let mut watching = FuturesUnordered::new();
    loop {
        tokio::select! {
            arrived = arrivals.recv() => match arrived {
                Some(conn) => watching.push(until_gone(conn)),
                None => break,
            },
            Some(()) = watching.next(), if !watching.is_empty() => {}
        }
    }
    while watching.next().await.is_some() {}
}

/// Resolves when `conn`'s client has hung up (or rill closed it).
async fn until_gone(conn: Arc<ParkedConn>) {
    let mut received = 0;
    loop {
        if conn.tcp().readable().await.is_err() {
            break;
        }
        let mut buf = [0u8; 256];
        match conn.tcp().try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                received += n;
                if received > MAX_CLIENT_BYTES {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    conn.gone();
}
