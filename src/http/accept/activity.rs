//! What one connection is doing, as its task needs to know to close it when
//! idle: whether a request has arrived yet, over which protocol, and how
//! many HTTP/2 streams are open.
//!
//! hyper closes an idle HTTP/1.1 connection itself (its header read timeout
//! runs while it waits for the next request head), but keeps an HTTP/2
//! connection with no open stream forever, so idle h2c connections alone
//! could take every place under `--max-connections`. So the per-connection
//! service counts streams: one opens when a request arrives and closes when
//! hyper drops its response body, which an open event stream keeps alive.
//! An event stream over HTTP/2 therefore keeps its connection busy, and the
//! idle timer only runs while nothing at all is open.
//!
//! The counting is shared by threads (hyper runs each HTTP/2 stream in a
//! task of its own), hence atomics, and a waker so the last stream to close
//! can tell the connection's task to start its idle timer.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{Request, Response, Version};
use futures_util::task::AtomicWaker;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use tower::ServiceExt;

use super::Shared;
use crate::http::body::BodyDeadline;

/// No request yet / HTTP/1.x / HTTP/2, in [`Activity::protocol`].
const NO_REQUEST: u8 = 0;
const HTTP1: u8 = 1;
const HTTP2: u8 = 2;

/// One connection's activity, shared by its task, its service and the
/// response bodies of its open HTTP/2 streams.
#[derive(Default)]
pub(super) struct Activity {
    /// Which protocol the requests came over, once one has.
    protocol: AtomicU8,
    /// HTTP/2 streams open: in a handler, or with a response body hyper
    /// still holds.
    open: AtomicU32,
    /// How many times `open` fell to zero.
    idle: AtomicU32,
    /// The connection's task, woken when `idle` moves.
    task: AtomicWaker,
}

/// What the connection's timer finds when it fires.
pub(super) enum Phase {
    /// No request has arrived.
    NoRequest,
    /// HTTP/1.x, which hyper's own timeout covers after the first request.
    Http1,
    /// HTTP/2 with a stream open.
    Http2Busy,
    /// HTTP/2 with nothing open.
    Http2Idle,
}

impl Activity {
    /// Where the connection stands now.
    pub(super) fn phase(&self) -> Phase {
        match self.protocol.load(Ordering::Acquire) {
            NO_REQUEST => Phase::NoRequest,
            HTTP2 if self.open.load(Ordering::Acquire) == 0 => Phase::Http2Idle,
            HTTP2 => Phase::Http2Busy,
            _ => Phase::Http1,
        }
    }

    /// Resolves, with the new count, once the connection has gone idle more
    /// often than the `seen` times its task already knows of.
    pub(super) fn went_idle(&self, seen: u32) -> impl Future<Output = u32> + '_ {
        std::future::poll_fn(move |cx: &mut Context<'_>| {
            // Register before looking, so a stream closing in between
            // still wakes the task.
            self.task.register(cx.waker());
            match self.idle.load(Ordering::Acquire) {
                n if n != seen => Poll::Ready(n),
                _ => Poll::Pending,
            }
        })
    }

    /// Notes a request; over HTTP/2, it holds a stream open until the
    /// returned guard is dropped.
    fn request(self: &Arc<Self>, version: Version) -> Option<OpenStream> {
        if version != Version::HTTP_2 {
            self.protocol.store(HTTP1, Ordering::Release);
            return None;
        }
        self.open.fetch_add(1, Ordering::AcqRel);
        self.protocol.store(HTTP2, Ordering::Release);
        Some(OpenStream(self.clone()))
    }
}

/// An open HTTP/2 stream's place in its connection's count.
struct OpenStream(Arc<Activity>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.fetch_add(1, Ordering::Release);
            self.0.task.wake();
        }
    }
}

/// The per-connection service: notes each request in `activity`, stamps a
/// request that has a body with its [`BodyDeadline`] and every request with
/// the client's address (`ConnectInfo`, for per-client limits), and runs
/// the router.
pub(super) fn service(
    shared: Arc<Shared>,
    activity: Arc<Activity>,
    peer: std::net::SocketAddr,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<CountedBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<CountedBody>, Infallible>> + Send + 'static,
> + Send
       + 'static {
    hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let stream = activity.request(req.version());
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        if !req.body().is_end_stream() {
            req.extensions_mut()
                .insert(BodyDeadline::after(shared.body_read_timeout));
        }
        let res = shared.app.clone().oneshot(req.map(Body::new));
        async move {
            let res = res.await?;
            Ok(res.map(|body| CountedBody {
                body,
                _stream: stream,
            }))
        }
    })
}

/// A response body that keeps its HTTP/2 stream counted as open until
/// hyper drops it (the body ended, or the client reset the stream).
pub(super) struct CountedBody {
    body: Body,
    _stream: Option<OpenStream>,
}

impl hyper::body::Body for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http2_is_idle_only_when_every_stream_has_closed() {
        let a = Arc::new(Activity::default());
        assert!(matches!(a.phase(), Phase::NoRequest));
        let one = a.request(Version::HTTP_2);
        let two = a.request(Version::HTTP_2);
        assert!(matches!(a.phase(), Phase::Http2Busy));
        drop(one);
        assert!(matches!(a.phase(), Phase::Http2Busy));
        assert_eq!(a.idle.load(Ordering::Acquire), 0);
        drop(two);
        assert!(matches!(a.phase(), Phase::Http2Idle));
        assert_eq!(a.idle.load(Ordering::Acquire), 1);
    }

    #[test]
    fn http1_requests_are_not_counted() {
        let a = Arc::new(Activity::default());
        assert!(a.request(Version::HTTP_11).is_none());
        assert!(matches!(a.phase(), Phase::Http1));
    }

    #[tokio::test]
    async fn the_task_hears_when_the_last_stream_closes() {
        let a = Arc::new(Activity::default());
        let s = a.request(Version::HTTP_2);
        let closer = tokio::spawn(async move { drop(s) });
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), a.went_idle(0)).await;
        assert_eq!(n.ok(), Some(1));
        closer.await.unwrap();
    }
}
