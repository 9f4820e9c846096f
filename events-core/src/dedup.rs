//! [`Deduplicator`]: at-least-once delivery made idempotent, for handlers with side effects.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use crate::envelope::EventId;

/// Remembers the last `capacity` event ids a handler has seen, so that a redelivery (a retry
/// after a crash, a replay, a dead letter sent again) of an event already handled can be
/// skipped. Share one per handler as `State<Deduplicator>`.
///
/// ```
/// # use events::{Deduplicator, EventId};
/// let seen = Deduplicator::new(10_000);
/// let id = EventId::new();
/// assert!(seen.first_time(id));
/// assert!(!seen.first_time(id), "a redelivery");
/// ```
///
/// It is in memory: after a restart it starts empty. For exactly-once effects across
/// restarts, record the event id in the same transaction as the effect.
#[derive(Debug)]
pub struct Deduplicator {
    inner: Mutex<Seen>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Seen {
    ids: HashSet<EventId>,
    order: VecDeque<EventId>,
}

impl Deduplicator {
    /// Remembers up to `capacity` ids (at least 1); the oldest are forgotten first.
    pub fn new(capacity: usize) -> Deduplicator {
        Deduplicator {
            inner: Mutex::new(Seen::default()),
            capacity: capacity.max(1),
        }
    }

    /// `true` the first time `id` is seen (and remembers it); `false` for a repeat.
    pub fn first_time(&self, id: EventId) -> bool {
        let mut seen = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if !seen.ids.insert(id) {
            return false;
        }
        seen.order.push_back(id);
        if seen.order.len() > self.capacity {
            if let Some(old) = seen.order.pop_front() {
                seen.ids.remove(&old);
            }
        }
        true
    }

    /// Forgets `id`, e.g. when its handling failed and a redelivery should run again.
    pub fn forget(&self, id: EventId) {
        let mut seen = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if seen.ids.remove(&id) {
            seen.order.retain(|x| *x != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_up_to_capacity_and_can_forget() {
        let d = Deduplicator::new(2);
        let (a, b, c) = (EventId::new(), EventId::new(), EventId::new());
        assert!(d.first_time(a));
        assert!(d.first_time(b));
        assert!(!d.first_time(a));
        assert!(d.first_time(c), "a is now the oldest and is forgotten");
        assert!(d.first_time(a));
        d.forget(a);
        assert!(d.first_time(a));
    }
}
