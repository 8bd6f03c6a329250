//! One parked subscriber that is not at the live edge: sends what it has
//! still to send (the opening, a replay, bytes its full socket did not
//! take, events it fell behind on), waiting for the socket when it must,
//! and joins its stream's group when it has caught up.
//!
//! This task lives only while the subscriber is behind; a subscriber at
//! the live edge has no task of its own.

use std::sync::Arc;

use bytes::Bytes;

use super::group::{expired_tail, Join};
use super::{wire, ParkedConn, Parking};
use crate::http::sse::encode_out;
use crate::hub::{Cursor, Out, Step};

/// Serves `conn` from `cursor`, first writing `pending`, until it joins its
/// group or its stream ends.
pub(super) async fn run(
    parking: Parking,
    conn: Arc<ParkedConn>,
    mut cursor: Cursor,
    pending: Option<Bytes>,
) {
    if let Some(bytes) = pending {
        if wire::write_all(conn.tcp(), &bytes).await.is_err() {
            conn.gone();
            return;
        }
    }
    loop {
        if conn.is_gone() {
            return;
        }
        let step = tokio::select! {
            step = cursor.ready() => step,
            _ = expiry(&conn) => {
                conn.finish(&expired_tail(parking.retry_ms()));
                return;
            }
        };
        let out = match step {
            Step::Out(out) => out,
            Step::End => {
                conn.finish(b"");
                return;
            }
            Step::Live => match parking.join(&conn, &cursor) {
                Join::Joined => return,
                Join::Ahead(group) => {
                    tokio::select! {
                        _ = group.progressed() => {}
                        _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
                    }
                    continue;
                }
                // The writer has sent more than this subscriber has: wait
                // for it in the ring (or the store).
                Join::Behind => match cursor.next().await {
                    Some(out) => out,
                    None => {
                        conn.finish(b"");
                        return;
                    }
                },
            },
        };
        if let Out::Events { count, .. } = &out {
            cursor.count(*count);
        }
        let closing = matches!(out, Out::Close(_));
        let frame = wire::chunk(&encode_out(out));
        if wire::write_all(conn.tcp(), &frame).await.is_err() {
            conn.gone();
            return;
        }
        if closing {
            conn.finish(b"");
            return;
        }
    }
}

async fn expiry(conn: &ParkedConn) {
    match conn.expires {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
