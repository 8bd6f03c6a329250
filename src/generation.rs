//! Generations: a model's answer written into a stream.
//!
//! Starting a generation creates a stream `gen-<id>` whose event ids carry
//! the prefix `<id>` on the wire, owned by the `sub` that started it, and a
//! task that reads the back-end's chunks and publishes each as a typed
//! event — text as plain `message` events, reasoning, tool calls, usage —
//! then `event: done` (or `event: failed`) as the terminal event (see
//! [`run`], and [`events`] for the vocabulary). Browsers read the stream, so
//! they can leave and come back; the OpenAI-shaped routes read the same
//! stream and translate it.
//!
//! Starting is bounded: at most `--max-generations` run on a node and at
//! most `--max-generations-per-sub` for one subject (or, without auth, one
//! client address); past either, nothing starts upstream. A start may carry
//! an idempotency key: a retry with the same key gets the generation the
//! first attempt started, and starts nothing.
//!
//! Every generation task is tracked, so a shutdown waits for each to write
//! its final `done` (`cancelled_by: "shutdown"`) before the process exits.
//!
//! With a shared store the owner also holds a lease; see [`lease`].

pub mod events;
pub mod lease;
pub mod policy;
mod run;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::{Backend, GenerateRequest};
use crate::hub::Hub;
use crate::ids::StreamName;
use crate::metrics as m;
use crate::store::{Claim, IdempotencyKey, StoreError, StreamSpec};

/// Names of generation streams start with this.
pub const GENERATION_PREFIX: &str = "gen-";

/// Timings and caps of generations.
#[derive(Debug, Clone, Copy)]
pub struct GenerationConfig {
    /// Cancel a generation nobody has listened to for this long; `None`: never.
    pub grace: Option<Duration>,
    /// Give up on an upstream that sends nothing for this long.
    pub upstream_timeout: Duration,
    /// With a shared store: how long the owner's lease lasts unrenewed.
    pub lease: Duration,
    /// Most generations running on this node.
    pub max_running: usize,
    /// Most generations running for one subject (or client address).
    pub max_per_starter: usize,
    /// How long an idempotency key of a start is remembered.
    pub key_ttl: Duration,
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
    /// False when an idempotency key matched an earlier start: this is that
    /// generation, and nothing new started.
    #[serde(skip)]
    pub fresh: bool,
}

impl Started {
    fn of(id: String, fresh: bool) -> Result<Self, StartError> {
        let stream_name = Generations::stream_of(&id)
            .map_err(|e| StartError::Store(StoreError::Unavailable(e.to_string())))?;
        Ok(Started {
            stream: format!("/v1/streams/{stream_name}"),
            replay: format!("/v1/streams/{stream_name}?lastEventId={id}.0"),
            id,
            stream_name,
            fresh,
        })
    }
}

/// Whether a generation stops when nobody listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Cancelled once nobody has listened for `--generation-grace`.
    Listened,
    /// Runs to its end whoever listens (a background response): readers
    /// come back later for it.
    Detached,
}

/// Who starts a generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Starter {
    /// The token's subject, with auth on: the generation's owner.
    pub sub: Option<String>,
    /// What the per-starter cap counts under: the subject, or without auth
    /// the client's address.
    pub key: String,
}

/// Why a generation did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A cap on running generations is reached.
    #[error(
        "{running} generations are running {scope}, the limit ({flag}); try again when one ends"
    )]
    TooMany {
        /// Where: "on this node" or "for you".
        scope: &'static str,
        /// The flag that sets the limit.
        flag: &'static str,
        /// How many run.
        running: usize,
    },
}

struct Running {
    cancel: CancellationToken,
    starter: String,
}

/// The running generations of this node.
#[derive(Clone)]
pub struct Generations {
    hub: Hub,
    config: GenerationConfig,
    running: Arc<Mutex<HashMap<String, Running>>>,
    recent_ttft: Arc<Mutex<VecDeque<Duration>>>,
    tracker: TaskTracker,
}

/// How many recent times to first token [`Generations::recent_ttft`] keeps.
const RECENT_TTFT: usize = 64;

impl Generations {
    /// A registry that publishes into `hub`.
    pub fn new(hub: Hub, config: GenerationConfig) -> Self {
        Self {
            hub,
            config,
            running: Arc::new(Mutex::new(HashMap::new())),
            recent_ttft: Arc::new(Mutex::new(VecDeque::new())),
            tracker: TaskTracker::new(),
        }
    }

    /// The stream name of generation `id`.
    pub fn stream_of(id: &str) -> Result<StreamName, crate::ids::NameError> {
        StreamName::new(format!("{GENERATION_PREFIX}{id}"))
    }

    /// The generation id of stream `name`, if it is a generation's.
    pub fn id_of(name: &StreamName) -> Option<&str> {
        name.as_str().strip_prefix(GENERATION_PREFIX)
    }

    /// Starts `request` on `backend` for `starter`. With `key`, a retry of
    /// a start already made answers that generation and starts nothing.
    pub async fn start(
        &self,
        backend: Arc<dyn Backend>,
        request: GenerateRequest,
        starter: &Starter,
        key: Option<&IdempotencyKey>,
        lifetime: Lifetime,
    ) -> Result<Started, StartError> {
        let mut id = new_id();
        if let Some(key) = key {
            let scope = format!("gen:{}", starter.sub.as_deref().unwrap_or("-"));
            let log = &self.hub.store().log;
            if let Claim::Held(first) = log.claim(&scope, key, &id, self.config.key_ttl).await? {
                let exists = match Self::stream_of(&first) {
                    Ok(name) => log.read_after(&name, Default::default(), 0).await?.exists(),
                    Err(_) => false,
                };
                if exists {
                    return Started::of(first, false);
                }
                // The first attempt never made its stream: make it now.
                id = first;
            }
        }
        let started = Started::of(id.clone(), true)?;
        let cancel = self.reserve(&id, &starter.key)?;
        match self.open(&started.stream_name, &id, starter).await {
            Ok(()) => {}
            Err(StoreError::Exists(_)) => {
                // A concurrent retry with the same key made it first.
                self.lock().remove(&id);
                return Ok(Started {
                    fresh: false,
                    ..started
                });
            }
            Err(e) => {
                self.lock().remove(&id);
                return Err(e.into());
            }
        }
        metrics::counter!(m::GENERATIONS_STARTED, "backend" => backend.name()).increment(1);
        metrics::gauge!(m::GENERATIONS_ACTIVE).increment(1.0);
        let this = self.clone();
        let name = started.stream_name.clone();
        self.tracker.spawn(async move {
            this.run(backend, request, &name, cancel, lifetime).await;
            this.lock().remove(&id);
            metrics::gauge!(m::GENERATIONS_ACTIVE).decrement(1.0);
        });
        Ok(started)
    }

    /// Takes a place under the caps for generation `id` of `starter`.
    fn reserve(&self, id: &str, starter: &str) -> Result<CancellationToken, StartError> {
        let mut running = self.lock();
        if running.len() >= self.config.max_running {
            return Err(StartError::TooMany {
                scope: "on this node",
                flag: "--max-generations",
                running: running.len(),
            });
        }
        let mine = running.values().filter(|r| r.starter == starter).count();
        if mine >= self.config.max_per_starter {
            return Err(StartError::TooMany {
                scope: "for you",
                flag: "--max-generations-per-sub",
                running: mine,
            });
        }
        let cancel = self.hub.shutdown().child_token();
        running.insert(
            id.to_owned(),
            Running {
                cancel: cancel.clone(),
                starter: starter.to_owned(),
            },
        );
        Ok(cancel)
    }

    /// Makes the generation's stream (and, with a shared store, its lease).
    async fn open(&self, name: &StreamName, id: &str, starter: &Starter) -> Result<(), StoreError> {
        if let Some(leases) = &self.hub.store().leases {
            // Taken before the stream exists: no sweeper can end it early,
            // and a failed start leaves no unleased, never-ending stream.
            leases.renew_lease(name, self.config.lease).await?;
        }
        let spec = StreamSpec {
            prefix: id.to_owned(),
            owner: starter.sub.clone(),
        };
        self.hub.store().log.create(name, spec).await
    }

    /// Cancels generation `id`; false if it is not running here.
    pub fn cancel(&self, id: &str) -> bool {
        match self.lock().get(id) {
            Some(r) => {
                r.cancel.cancel();
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
        let Some(leases) = &self.hub.store().leases else {
            return Ok(false);
        };
        match Self::stream_of(id) {
            Ok(name) => leases.request_cancel(&name).await,
            Err(_) => Ok(false),
        }
    }

    /// Generations running on this node.
    pub fn active(&self) -> usize {
        self.lock().len()
    }

    /// Every generation task, so shutdown can wait for them to end.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn new_id() -> String {
    let n: u64 = rand::rng().random();
    format!("{n:016x}")
}
