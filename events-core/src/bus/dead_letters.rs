//! The dead-letter queue of a bus: bounded in memory, mirrored to the store when there is
//! one, listed, fetched, discarded and redelivered by operators.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use super::Bus;
use crate::context::Context;
use crate::dead_letter::{DeadLetter, DeadLetterFilter};

use crate::event::EventInfo;

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
        let route = self.route(info.type_id());
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
        crate::bus::run_one(&slot, &*event, &ctx).await;
        #[cfg(feature = "macros")]
        self.bus.audit(record);
        true
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
