//! Idempotency keys of the memory store: per stream, the keys of recent
//! publishes and the ids they got; per node, claims (a key held for a
//! value, such as the generation a `POST /v1/generations` started).
//!
//! Both are bounded: a stream remembers a key as long as its retention
//! keeps events of that age, and at most as many keys as events; claims
//! live for their time to live, and at most one per allowed stream.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use crate::ids::EventId;
use crate::store::{Claim, IdempotencyKey, Retention, StoreError};

/// Bytes a remembered key costs beyond its text (map entry, queue entry).
const KEY_OVERHEAD: usize = 64;

/// A stream's recent idempotency keys.
#[derive(Debug, Default)]
pub(super) struct Keys {
    ids: HashMap<String, (EventId, u64)>,
    order: VecDeque<(Instant, String)>,
    bytes: usize,
}

impl Keys {
    /// What remembering `key` costs against the store's budget.
    pub(super) fn cost(key: &IdempotencyKey) -> usize {
        key.key.len() * 2 + KEY_OVERHEAD
    }

    /// The id `key` got, if it was seen; an error if it came with another
    /// request.
    pub(super) fn seen(&self, key: &IdempotencyKey) -> Result<Option<EventId>, StoreError> {
        match self.ids.get(&key.key) {
            Some((id, fp)) if *fp == key.fingerprint => Ok(Some(*id)),
            Some(_) => Err(StoreError::KeyReused(key.key.clone())),
            None => Ok(None),
        }
    }

    pub(super) fn remember(&mut self, key: &IdempotencyKey, id: EventId, now: Instant) {
        self.ids.insert(key.key.clone(), (id, key.fingerprint));
        self.order.push_back((now, key.key.clone()));
        self.bytes += Self::cost(key);
    }

    /// Forgets keys past the retention's age or count; returns bytes freed.
    pub(super) fn expire(&mut self, r: &Retention, now: Instant) -> usize {
        let mut freed = 0;
        while let Some((at, key)) = self.order.front() {
            let over =
                self.order.len() > r.max_events.max(1) || now.duration_since(*at) > r.max_age;
            if !over {
                break;
            }
            let cost = key.len() * 2 + KEY_OVERHEAD;
            self.ids.remove(key);
            self.order.pop_front();
            self.bytes -= cost;
            freed += cost;
        }
        freed
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Claims on keys across the node.
#[derive(Debug, Default)]
pub(super) struct Claims {
    held: HashMap<(String, String), (String, u64, Instant)>,
}

impl Claims {
    pub(super) fn claim(
        &mut self,
        scope: &str,
        key: &IdempotencyKey,
        value: &str,
        until: Instant,
        max: usize,
    ) -> Result<Claim, StoreError> {
        let now = Instant::now();
        let id = (scope.to_owned(), key.key.clone());
        match self.held.get(&id) {
            Some((v, fp, until)) if *until > now => {
                return if *fp == key.fingerprint {
                    Ok(Claim::Held(v.clone()))
                } else {
                    Err(StoreError::KeyReused(key.key.clone()))
                };
            }
            _ => {}
        }
        if self.held.len() >= max {
            self.expire(now);
            if self.held.len() >= max {
                return Err(StoreError::TooManyStreams(max));
            }
        }
        self.held
            .insert(id, (value.to_owned(), key.fingerprint, until));
        Ok(Claim::Fresh)
    }

    pub(super) fn expire(&mut self, now: Instant) {
        self.held.retain(|_, (_, _, until)| *until > now);
    }
}
