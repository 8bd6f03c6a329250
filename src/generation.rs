//! Generations: a model's answer written into a stream.
//!
//! Starting a generation creates a stream `gen-<id>` whose event ids carry
//! the prefix `<id>` on the wire, and a task that reads the back-end's tokens
//! and publishes each as a `message` event, then `event: done` (or
//! `event: error`) as the terminal event. Browsers read the stream, so they
//! can leave and come back.
//!
//! The task stops, and drops the upstream request with it, when
//! - someone calls [`Generations::cancel`] (`done_reason: "cancelled"`), or
//! - nobody has listened for the grace period (`cancelled_by:
//!   "no_listeners"`), unless the grace is "never", or
//! - the server shuts down (`cancelled_by: "shutdown"`).
//!
//! Only the waits on the upstream race with those stops; a publish, once
//! begun, completes, so every event in the store also reached the live
//! subscribers. An upstream that fails, sends garbage, ends early or goes
//! silent past the timeout ends the stream with `event: error`.
//!
//! With a shared store the owner also holds a lease; see [`lease`].

pub mod lease;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rand::Rng;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, BackendError, Chunk, Finish, GenerateRequest};
use crate::hub::Hub;
use crate::ids::StreamName;
use crate::metrics as m;
use crate::sse::EventType;
use crate::store::{Draft, StoreError};

/// Names of generation streams start with this.
pub const GENERATION_PREFIX: &str = "gen-";

/// Timings of generations.
#[derive(Debug, Clone, Copy)]
pub struct GenerationConfig {
    /// Cancel a generation nobody has listened to for this long; `None`: never.
    pub grace: Option<Duration>,
    /// Give up on an upstream that sends nothing for this long.
    pub upstream_timeout: Duration,
    /// With a shared store: how long the owner's lease lasts unrenewed.
    pub lease: Duration,
}

/// A started generation.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Started {
    /// The generation's id.
    pub id: String,
    /// The URL path of its stream. Opened without a `Last-Event-ID`, it
    /// follows live from the moment of opening.
    pub stream: String,
    /// The stream's URL that replays the answer from its first token, then
    /// follows live: what a new reader wants, since tokens may already have
    /// been published when the reader connects.
    pub replay: String,
    /// The stream's name.
    #[serde(skip)]
    pub stream_name: StreamName,
}

/// The running generations of this node.
#[derive(Clone)]
pub struct Generations {
    hub: Hub,
    config: GenerationConfig,
    running: Arc<Mutex<HashMap<String, CancellationToken>>>,
    recent_ttft: Arc<Mutex<std::collections::VecDeque<Duration>>>,
}

/// How many recent times to first token [`Generations::recent_ttft`] keeps.
const RECENT_TTFT: usize = 64;

/// How a generation ended.
enum Outcome {
    Finished(Finish),
    Cancelled(&'static str),
    Failed(BackendError),
    StoreFailed(StoreError),
}

impl Generations {
    /// A registry that publishes into `hub`.
    pub fn new(hub: Hub, config: GenerationConfig) -> Self {
        Self {
            hub,
            config,
            running: Arc::new(Mutex::new(HashMap::new())),
            recent_ttft: Arc::new(Mutex::new(std::collections::VecDeque::new())),
        }
    }

    /// The stream name of generation `id`.
    pub fn stream_of(id: &str) -> Result<StreamName, crate::ids::NameError> {
        StreamName::new(format!("{GENERATION_PREFIX}{id}"))
    }

    /// Starts `request` on `backend`.
    pub async fn start(
        &self,
        backend: Arc<dyn Backend>,
        request: GenerateRequest,
    ) -> Result<Started, StoreError> {
        let id = new_id();
        let stream_name =
            Self::stream_of(&id).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        if self.hub.store().shared() {
            // Taken before the stream exists: no sweeper can end it early,
            // and a failed start leaves no unleased, never-ending stream.
            self.hub
                .store()
                .renew_lease(&stream_name, self.config.lease)
                .await?;
        }
        self.hub
            .store()
            .create(&stream_name, Some(id.clone()))
            .await?;
        let cancel = self.hub.shutdown().child_token();
        self.lock().insert(id.clone(), cancel.clone());
        metrics::counter!(m::GENERATIONS_STARTED, "backend" => backend.name()).increment(1);
        metrics::gauge!(m::GENERATIONS_ACTIVE).increment(1.0);
        let this = self.clone();
        let name = stream_name.clone();
        let gen_id = id.clone();
        tokio::spawn(async move {
            this.run(backend, request, &name, cancel).await;
            this.lock().remove(&gen_id);
            metrics::gauge!(m::GENERATIONS_ACTIVE).decrement(1.0);
        });
        Ok(Started {
            stream: format!("/v1/streams/{stream_name}"),
            replay: format!("/v1/streams/{stream_name}?lastEventId={id}.0"),
            id,
            stream_name,
        })
    }

    /// Cancels generation `id`; false if it is not running here.
    pub fn cancel(&self, id: &str) -> bool {
        match self.lock().get(id) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// Whether generation `id` is running on this node.
    pub fn is_running(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    /// Cancels generation `id` wherever it runs: here, or (with a shared
    /// store) on the node holding its lease. False if it is not running.
    pub async fn cancel_anywhere(&self, id: &str) -> Result<bool, StoreError> {
        if self.cancel(id) {
            return Ok(true);
        }
        if !self.hub.store().shared() {
            return Ok(false);
        }
        match Self::stream_of(id) {
            Ok(name) => self.hub.store().request_cancel(&name).await,
            Err(_) => Ok(false),
        }
    }

    /// Generations running on this node.
    pub fn active(&self) -> usize {
        self.lock().len()
    }

    /// Times to first token of the most recent generations, oldest first.
    pub fn recent_ttft(&self) -> Vec<Duration> {
        let recent = self.recent_ttft.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().copied().collect()
    }

    fn note_ttft(&self, ttft: Duration) {
        let mut recent = self.recent_ttft.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == RECENT_TTFT {
            recent.pop_front();
        }
        recent.push_back(ttft);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn run(
        &self,
        backend: Arc<dyn Backend>,
        request: GenerateRequest,
        name: &StreamName,
        cancel: CancellationToken,
    ) {
        let started = Instant::now();
        // Holding the channel keeps its subscriber count alive for us.
        let channel = self.hub.channel(name);
        let mut listeners = channel.subscribers();
        let store = self.hub.store().clone();
        let local = listeners.clone();
        let leased = async {
            if store.shared() {
                let ttl = self.config.lease;
                lease::hold(store.as_ref(), name, ttl, self.config.grace, local).await
            } else {
                std::future::pending().await
            }
        };
        // With a shared store the lease keeper also watches for listeners,
        // on every node; the local count alone would miss the others.
        let grace = self.config.grace.filter(|_| !store.shared());
        let shutdown = self.hub.shutdown();
        let stop = async {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    if shutdown.is_cancelled() { "shutdown" } else { "request" }
                }
                by = leased => by,
                _ = nobody_listens(&mut listeners, grace) => "no_listeners",
            }
        };
        tokio::pin!(stop);
        let mut stats = Stats::default();
        let outcome = self
            .relay(backend.as_ref(), &request, name, &mut stats, &mut stop)
            .await;
        let (draft, label) = match outcome {
            Outcome::Finished(f) => (done_event(&f, &stats, started, None), "finished"),
            Outcome::Cancelled(by) => {
                let f = Finish {
                    model: backend.model_for(&request),
                    done_reason: "cancelled".into(),
                    ..Finish::default()
                };
                (done_event(&f, &stats, started, Some(by)), "cancelled")
            }
            Outcome::Failed(e) => {
                metrics::counter!(m::UPSTREAM_ERRORS, "kind" => e.kind()).increment(1);
                tracing::warn!(stream = %name, error = %e, "generation failed");
                let event = error_event(e.kind(), &e.to_string(), e.upstream_status());
                (event, "failed")
            }
            Outcome::StoreFailed(e) => {
                tracing::warn!(stream = %name, error = %e, "generation could not publish");
                (error_event("store", &e.to_string(), None), "failed")
            }
        };
        metrics::counter!(m::GENERATIONS_ENDED, "outcome" => label, "backend" => backend.name())
            .increment(1);
        if let Err(e) = self.hub.publish(name, &draft).await {
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
        stop: &mut (impl Future<Output = &'static str> + Unpin),
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
            let text = match next {
                None => return Outcome::Failed(BackendError::Truncated),
                Some(Err(e)) => return Outcome::Failed(e),
                Some(Ok(Chunk::Done(f))) => return Outcome::Finished(f),
                Some(Ok(Chunk::Token(t))) if t.is_empty() => continue,
                Some(Ok(Chunk::Token(t))) => t,
            };
            let now = Instant::now();
            if stats.tokens == 0 {
                stats.first_token = Some(now - started);
                self.note_ttft(now - started);
                metrics::histogram!(m::TIME_TO_FIRST_TOKEN).record((now - started).as_secs_f64());
            } else {
                metrics::histogram!(m::INTER_TOKEN).record((now - last).as_secs_f64());
            }
            last = now;
            stats.tokens += 1;
            if let Err(e) = self.hub.publish(name, &Draft::message(text)).await {
                return Outcome::StoreFailed(e);
            }
        }
    }
}

#[derive(Default)]
struct Stats {
    tokens: u64,
    first_token: Option<Duration>,
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

fn done_event(f: &Finish, stats: &Stats, started: Instant, cancelled_by: Option<&str>) -> Draft {
    let mut body = serde_json::json!({
        "model": f.model,
        "done_reason": f.done_reason,
        "tokens": stats.tokens,
        "prompt_tokens": f.prompt_tokens,
        "completion_tokens": f.completion_tokens,
        "time_to_first_token_ms": stats.first_token.map(|d| d.as_millis() as u64),
        "duration_ms": started.elapsed().as_millis() as u64,
    });
    if let Some(by) = cancelled_by {
        body["cancelled_by"] = by.into();
    }
    Draft {
        event_type: EventType::new("done").ok(),
        data: body.to_string(),
        terminal: true,
    }
}

fn error_event(kind: &str, message: &str, upstream_status: Option<u16>) -> Draft {
    let body = serde_json::json!({
        "error": kind,
        "message": message,
        "upstream_status": upstream_status,
    });
    Draft {
        event_type: EventType::new("error").ok(),
        data: body.to_string(),
        terminal: true,
    }
}

fn new_id() -> String {
    let n: u64 = rand::rng().random();
    format!("{n:016x}")
}
