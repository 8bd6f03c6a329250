//! One generation's task: copy the back-end's chunks into the stream as
//! typed events (see [`super::events`]), then end it with `usage` (when the
//! model reported counts) and `done`, or with `failed`.
//!
//! The task stops, and drops the upstream request with it, when
//! - someone cancels it (`done_reason: "cancelled"`, `cancelled_by:
//!   "request"`), or
//! - nobody has listened for the grace period (`cancelled_by:
//!   "no_listeners"`), unless the grace is "never" or the generation was
//!   started detached (a background response), or
//! - the server shuts down (`cancelled_by: "shutdown"`).
//!
//! Only the waits on the upstream race with those stops; a publish, once
//! begun, completes, so every event in the store also reached the live
//! subscribers. An upstream that fails, sends garbage, ends early or goes
//! silent past the timeout ends the stream with `event: failed`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::events::{Done, Event, Failure, FinishReason, Usage};
use super::{lease, Generations, Lifetime};
use crate::backend::{Backend, BackendError, Chunk, Finish, GenerateRequest};
use crate::ids::StreamName;
use crate::metrics as m;
use crate::store::{Draft, StoreError};

/// Why a generation was stopped before the model finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Someone asked (on this node or another).
    Request,
    /// Nobody listened for the grace period.
    NoListeners,
    /// The server is shutting down.
    Shutdown,
}

impl StopReason {
    /// The `cancelled_by` value in the `done` event.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Request => "request",
            StopReason::NoListeners => "no_listeners",
            StopReason::Shutdown => "shutdown",
        }
    }
}

/// How a generation ended.
enum Outcome {
    Finished(Finish),
    Cancelled(StopReason),
    Failed(BackendError),
    StoreFailed(StoreError),
}

#[derive(Default)]
struct Stats {
    tokens: u64,
    tool_calls: u64,
    first_token: Option<Duration>,
}

impl Generations {
    pub(super) async fn run(
        &self,
        backend: Arc<dyn Backend>,
        request: GenerateRequest,
        name: &StreamName,
        cancel: CancellationToken,
        lifetime: Lifetime,
    ) {
        let started = Instant::now();
        let grace = match lifetime {
            Lifetime::Listened => self.config.grace,
            Lifetime::Detached => None,
        };
        // Holding the channel keeps its subscriber count alive for us.
        let channel = self.hub.channel(name);
        let mut listeners = channel.subscribers();
        let leases = self.hub.store().leases.clone();
        let local = listeners.clone();
        let shared = leases.is_some();
        let leased = async {
            match &leases {
                Some(l) => {
                    let ttl = self.config.lease;
                    lease::hold(l.as_ref(), name, ttl, grace, local).await
                }
                None => std::future::pending().await,
            }
        };
        // With a shared store the lease keeper also watches for listeners,
        // on every node; the local count alone would miss the others.
        let grace = grace.filter(|_| !shared);
        let shutdown = self.hub.shutdown();
        let stop = async {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    if shutdown.is_cancelled() { StopReason::Shutdown } else { StopReason::Request }
                }
                by = leased => by,
                _ = nobody_listens(&mut listeners, grace) => StopReason::NoListeners,
            }
        };
        tokio::pin!(stop);
        let mut stats = Stats::default();
        let outcome = self
            .relay(backend.as_ref(), &request, name, &mut stats, &mut stop)
            .await;
        let (draft, label) = match outcome {
            Outcome::Finished(f) => {
                if let Some(usage) = Usage::of(f.prompt_tokens, f.completion_tokens) {
                    let draft = Event::Usage(usage).draft();
                    if let Err(e) = self.hub.publish(name, &draft, None).await {
                        tracing::warn!(stream = %name, error = %e, "could not publish usage");
                    }
                }
                (done_event(&f, &stats, started, None), "finished")
            }
            Outcome::Cancelled(by) => {
                let f = Finish {
                    model: backend.model_for(&request),
                    done_reason: "cancelled".into(),
                    ..Finish::default()
                };
                tracing::info!(stream = %name, cancelled_by = by.as_str(), "generation cancelled");
                (done_event(&f, &stats, started, Some(by)), "cancelled")
            }
            Outcome::Failed(e) => {
                metrics::counter!(m::UPSTREAM_ERRORS, "kind" => e.kind()).increment(1);
                tracing::warn!(stream = %name, error = %e, "generation failed");
                let event = failed_event(e.kind(), &e.to_string(), e.upstream_status());
                (event, "failed")
            }
            Outcome::StoreFailed(e) => {
                tracing::warn!(stream = %name, error = %e, "generation could not publish");
                (failed_event("store", &e.to_string(), None), "failed")
            }
        };
        metrics::counter!(m::GENERATIONS_ENDED, "outcome" => label, "backend" => backend.name())
            .increment(1);
        if let Err(e) = self.hub.publish(name, &draft, None).await {
            tracing::warn!(stream = %name, error = %e, "could not end generation stream");
        }
    }

    /// Copies the back-end's tokens into the stream until the model is done,
    /// fails, or `stop` resolves. Only waits on the upstream race with
    /// `stop`; a publish, once begun, completes, so an event is never in the
    /// store without having reached live subscribers. Returning drops the
    /// token stream, and with it the upstream request.
    async fn relay(
        &self,
        backend: &dyn Backend,
        request: &GenerateRequest,
        name: &StreamName,
        stats: &mut Stats,
        stop: &mut (impl Future<Output = StopReason> + Unpin),
    ) -> Outcome {
        let timeout = self.config.upstream_timeout;
        let secs = timeout.as_secs();
        let started = Instant::now();
        let mut tokens = tokio::select! {
            biased;
            by = &mut *stop => return Outcome::Cancelled(by),
            r = tokio::time::timeout(timeout, backend.generate(request)) => match r {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => return Outcome::Failed(e),
                Err(_) => return Outcome::Failed(BackendError::Timeout(secs)),
            },
        };
        let mut last = started;
        loop {
            let next = tokio::select! {
                biased;
                by = &mut *stop => return Outcome::Cancelled(by),
                r = tokio::time::timeout(timeout, tokens.next()) => match r {
                    Ok(n) => n,
                    Err(_) => return Outcome::Failed(BackendError::Timeout(secs)),
                },
            };
            let event = match next {
                None => return Outcome::Failed(BackendError::Truncated),
                Some(Err(e)) => return Outcome::Failed(e),
                Some(Ok(Chunk::Done(f))) => return Outcome::Finished(f),
                Some(Ok(Chunk::Token(t) | Chunk::Reasoning(t))) if t.is_empty() => continue,
                Some(Ok(Chunk::Token(t))) => {
                    stats.tokens += 1;
                    Event::Text(t)
                }
                Some(Ok(Chunk::Reasoning(t))) => Event::Reasoning(t),
                Some(Ok(Chunk::ToolCall(c))) => {
                    stats.tool_calls += 1;
                    Event::ToolCall(c)
                }
            };
            let now = Instant::now();
            if stats.first_token.is_none() {
                stats.first_token = Some(now - started);
                self.note_ttft(now - started);
                metrics::histogram!(m::TIME_TO_FIRST_TOKEN).record((now - started).as_secs_f64());
            } else {
                metrics::histogram!(m::INTER_TOKEN).record((now - last).as_secs_f64());
            }
            last = now;
            if let Err(e) = self.hub.publish(name, &event.draft(), None).await {
                return Outcome::StoreFailed(e);
            }
        }
    }
}

/// Resolves once nobody has listened for `grace`; never when `grace` is `None`.
async fn nobody_listens(listeners: &mut watch::Receiver<usize>, grace: Option<Duration>) {
    let Some(grace) = grace else {
        return std::future::pending().await;
    };
    loop {
        if listeners.wait_for(|n| *n == 0).await.is_err() {
            return std::future::pending().await;
        }
        tokio::select! {
            _ = tokio::time::sleep(grace) => {
                if *listeners.borrow() == 0 {
                    return;
                }
            }
            r = listeners.changed() => {
                if r.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }
}

fn done_event(
    f: &Finish,
    stats: &Stats,
    started: Instant,
    cancelled_by: Option<StopReason>,
) -> Draft {
    Event::Done(Done {
        model: f.model.clone(),
        done_reason: f.done_reason.clone(),
        finish_reason: Some(FinishReason::of(&f.done_reason, stats.tool_calls > 0)),
        tokens: stats.tokens,
        prompt_tokens: f.prompt_tokens,
        completion_tokens: f.completion_tokens,
        time_to_first_token_ms: stats.first_token.map(|d| d.as_millis() as u64),
        duration_ms: started.elapsed().as_millis() as u64,
        cancelled_by: cancelled_by.map(|by| by.as_str().to_owned()),
    })
    .draft()
}

/// The terminal event of a generation that failed. It is named `failed`,
/// never `error`: `EventSource` fires `error` for its own connection
/// failures, and generic code would take one for the other.
pub fn failed_event(kind: &str, message: &str, upstream_status: Option<u16>) -> Draft {
    Event::Failed(Failure {
        error: kind.to_owned(),
        message: message.to_owned(),
        upstream_status,
    })
    .draft()
}
