//! The dead-letter queue of a bus: bounded in memory, mirrored to the store when there is
//! one, listed, fetched, discarded and redelivered by operators.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use super::Bus;
use crate::context::Context;
use crate::dead_letter::{DeadLetter, DeadLetterFilter};

use crate::event::{AnyEvent, EventInfo};

/// The in-memory queue: bounded; when full the oldest letter makes room (and is logged).
pub(crate) struct Queue {
    letters: Mutex<VecDeque<DeadLetter>>,
    next: std::sync::atomic::AtomicU64,
    capacity: usize,
}

impl Queue {
    pub(crate) fn new(capacity: usize) -> Queue {
        Queue {
            letters: Mutex::new(VecDeque::new()),
            next: std::sync::atomic::AtomicU64::new(1),
            capacity: capacity.max(1),
        }
    }

    /// How many letters the queue keeps.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Puts letters loaded from a store back (the newest `capacity`), and numbers new ones
    /// after them.
    pub(crate) fn restore(&self, restored: Vec<DeadLetter>, last_id: u64) {
        let mut letters = self.lock();
        let next = restored
            .iter()
            .map(|d| d.id)
            .max()
            .unwrap_or(0)
            .max(last_id)
            + 1;
        self.next
            .fetch_max(next, std::sync::atomic::Ordering::Relaxed);
        letters.extend(restored);
        letters.make_contiguous().sort_by_key(|d| d.id);
        let excess = letters.len().saturating_sub(self.capacity);
        letters.drain(..excess);
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<DeadLetter>> {
        self.letters.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Bus {
    /// Puts a failed call in the dead-letter queue and tells the observers.
    #[cold]
    pub(crate) fn dead_letter(
        &self,
        ctx: &Context,
        handler: &str,
        payload: serde_json::Value,
        error: String,
        permanent: bool,
    ) {
        let queue = &self.inner.dead_letters;
        let now = SystemTime::now();
        let letter = DeadLetter {
            id: queue
                .next
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            meta: {
                // A retry from the queue is not part of the replay that failed.
                let mut meta = ctx.meta.clone();
                meta.set_replay(None);
                meta
            },
            sequence: ctx.sequence(),
            payload,
            handler: handler.to_owned(),
            error,
            permanent,
            attempts: ctx.attempt,
            first_failure: now,
            last_failure: now,
        };
        tracing::error!(
            event = letter.meta.name(), event_id = %letter.meta.id(), handler,
            attempts = letter.attempts, error = %letter.error, "event dead-lettered"
        );
        self.inner.observers.dead_lettered(&letter);
        self.store_dead_letter(&letter);
        let mut letters = queue.lock();
        // Bounded with a store too: the store keeps letters by its own retention.
        while letters.len() >= queue.capacity {
            let Some(old) = letters.pop_front() else {
                break;
            };
            if self.inner.store.is_some() {
                tracing::debug!(
                    dead_letter = old.id,
                    capacity = queue.capacity,
                    "dead-letter queue full: the oldest letter left it; it stays in the store"
                );
            } else {
                tracing::warn!(
                    event = old.meta.name(), event_id = %old.meta.id(), handler = %old.handler,
                    capacity = queue.capacity,
                    "dead-letter queue full: the oldest letter was dropped"
                );
            }
        }
        letters.push_back(letter);
    }

    /// The dead-letter queue: list, fetch, discard and retry what failed for good.
    ///
    /// ```
    /// # let bus = events::Bus::builder().no_handlers().build().unwrap();
    /// let all = bus.dead_letters().list(&events::DeadLetterFilter::default());
    /// assert!(all.is_empty());
    /// ```
    pub fn dead_letters(&self) -> DeadLetters<'_> {
        DeadLetters { bus: self }
    }

    /// The slot of handler `name` in the route of event type `info`.
    fn slot_for(&self, info: &'static EventInfo, name: &str) -> Option<crate::bus::Slot> {
        let route = self.route(info.type_id(), info);
        self.slots_of(&route, info.type_id())
            .iter()
            .find(|s| s.name() == name)
            .cloned()
    }
}

/// The dead-letter queue of a bus: [`Bus::dead_letters`]. Letters live in memory (the
/// newest [`BusBuilder::dead_letter_capacity`](crate::BusBuilder::dead_letter_capacity)) and,
/// with a store, in the store too, which `build()` loads them from.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetters<'a> {
    bus: &'a Bus,
}

impl DeadLetters<'_> {
    /// The dead letters that `filter` selects, oldest first.
    pub fn list(&self, filter: &DeadLetterFilter) -> Vec<DeadLetter> {
        self.bus
            .inner
            .dead_letters
            .lock()
            .iter()
            .filter(|d| filter.matches(d))
            .cloned()
            .collect()
    }

    /// One dead letter by its number.
    pub fn get(&self, id: u64) -> Option<DeadLetter> {
        self.bus
            .inner
            .dead_letters
            .lock()
            .iter()
            .find(|d| d.id == id)
            .cloned()
    }

    /// Removes the dead letters `filter` selects; how many there were.
    pub fn discard(&self, filter: &DeadLetterFilter) -> usize {
        let mut discarded = Vec::new();
        let mut letters = self.bus.inner.dead_letters.lock();
        letters.retain(|d| {
            let discard = filter.matches(d);
            if discard {
                self.bus.unstore_dead_letter(d.id);
                discarded.push((
                    d.id,
                    d.meta.id(),
                    d.meta.name().to_owned(),
                    d.handler.clone(),
                ));
            }
            !discard
        });
        drop(letters);
        let count = discarded.len();
        #[cfg(feature = "macros")]
        if count > 0 {
            self.bus
                .audit(crate::audit::DeadLettersDiscarded { letters: discarded });
        }
        count
    }

    /// Dead letter `id`'s event as its type `E`, its personal data opened with the bus's
    /// keys (a forgotten subject's values read as
    /// [`Personal::Forgotten`](crate::personal::Personal::Forgotten)). `None` when there is
    /// no such letter, it holds another type, or its payload no longer reads as `E`.
    pub fn event<E: crate::Event>(&self, id: u64) -> Option<E> {
        let letter = self.get(id)?;
        let info = letter.meta.info();
        if info.type_id() != std::any::TypeId::of::<E>() {
            return None;
        }
        let event = self
            .bus
            .unsealed(|| (info.decode)(letter.payload.clone(), true))
            .ok()?;
        event.into_any().downcast::<E>().ok().map(|e| *e)
    }

    /// Delivers dead letter `id` again, to its handler only, as the next attempt, and
    /// removes it from the queue. If the handler fails again, it comes back as a new letter.
    /// `false` when there is no such letter, its event type or handler is not on this bus,
    /// or its payload no longer reads as its event type (it stays in the queue then).
    pub async fn retry(&self, id: u64) -> bool {
        let Some(letter) = self.get(id) else {
            return false;
        };
        let Some(slot) = self.bus.slot_for(letter.meta.info(), &letter.handler) else {
            return false;
        };
        let decoded = self
            .bus
            .unsealed(|| (letter.meta.info().decode)(letter.payload.clone(), true));
        let Ok(event) = decoded else {
            return false;
        };
        self.redeliver(letter, &slot, &*event).await;
        true
    }

    /// [`retry`](Self::retry) with the payload edited first: `patch` is a JSON Merge Patch
    /// (RFC 7396) on the letter's payload (a member set to `null` is removed, an object is
    /// merged, anything else replaces), so that fields left out of it, redacted and
    /// personal ones included, keep their stored values. The edited payload is checked
    /// against the event's schema and read as its type, with the bus's
    /// [`IngestLimits`](crate::ingest::IngestLimits), before the letter leaves the queue.
    ///
    /// `Ok(false)` when there is no such letter or its event type or handler is not on this
    /// bus.
    ///
    /// # Errors
    /// The [`IngestError`](crate::IngestError) the edited payload is refused with (too large,
    /// too deep, against the schema, not readable as the type); the letter stays in the
    /// queue unchanged.
    pub async fn retry_with(
        &self,
        id: u64,
        patch: &serde_json::Value,
    ) -> Result<bool, crate::IngestError> {
        let Some(mut letter) = self.get(id) else {
            return Ok(false);
        };
        let info = letter.meta.info();
        let Some(slot) = self.bus.slot_for(info, &letter.handler) else {
            return Ok(false);
        };
        let limits = self.bus.ingest_limits();
        merge_patch(&mut letter.payload, patch);
        let size = serde_json::to_vec(&letter.payload).map_or(usize::MAX, |b| b.len());
        if size > limits.max_bytes {
            return Err(crate::IngestError::TooLarge {
                size,
                limit: limits.max_bytes,
            });
        }
        if crate::ingest::deeper_than(&letter.payload, limits.max_depth) {
            return Err(crate::IngestError::TooDeep {
                limit: limits.max_depth,
            });
        }
        // Secret members the patch leaves alone keep their stored (sealed) values.
        let kept: Vec<&str> = match patch {
            serde_json::Value::Object(members) => info
                .secret_keys()
                .iter()
                .map(|k| &**k)
                .filter(|k| !members.contains_key(*k))
                .collect(),
            _ => Vec::new(),
        };
        crate::ingest::validate_edited(info, &letter.payload, limits, &kept)?;
        let event = self
            .bus
            .unsealed(|| (info.decode)(letter.payload.clone(), true))?;
        self.redeliver(letter, &slot, &*event).await;
        Ok(true)
    }

    /// Takes `letter` out of the queue and delivers `event` (its payload, read) to its
    /// handler as the next attempt.
    async fn redeliver(&self, letter: DeadLetter, slot: &crate::bus::Slot, event: &AnyEvent) {
        let id = letter.id;
        self.bus.inner.dead_letters.lock().retain(|d| d.id != id);
        self.bus.unstore_dead_letter(id);
        let ctx = Context {
            bus: self.bus.clone(),
            meta: letter.meta,
            attempt: letter.attempts + 1,
        };
        #[cfg(feature = "macros")]
        let record = crate::audit::DeadLetterRetried {
            letter: id,
            event_id: ctx.meta.id(),
            event: ctx.meta.name().to_owned(),
            handler: letter.handler.clone(),
        };
        crate::bus::run_one(slot, event, &ctx).await;
        #[cfg(feature = "macros")]
        self.bus.audit(record);
    }

    /// [`retry`](Self::retry) for every letter `filter` selects, oldest
    /// first; how many were delivered again.
    pub async fn retry_all(&self, filter: &DeadLetterFilter) -> usize {
        let ids: Vec<u64> = self.list(filter).iter().map(|d| d.id).collect();
        let mut retried = 0;
        for id in ids {
            if self.retry(id).await {
                retried += 1;
            }
        }
        retried
    }
}

/// Applies JSON Merge Patch `patch` (RFC 7396) to `target`.
fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(members) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(serde_json::Map::new());
    }
    if let serde_json::Value::Object(map) = target {
        for (key, value) in members {
            if value.is_null() {
                map.remove(key);
            } else {
                merge_patch(
                    map.entry(key.clone()).or_insert(serde_json::Value::Null),
                    value,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    /// The examples of RFC 7396, appendix A.
    #[test]
    fn merge_patch_follows_rfc_7396() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (mut target, patch, expected) in cases {
            super::merge_patch(&mut target, &patch);
            assert_eq!(target, expected, "patch {patch}");
        }
    }
}
