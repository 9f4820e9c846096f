//! [`ErrorCollector`]: the most recent handler failures, in memory.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::Observer;
use crate::envelope::{EventId, Meta};
use crate::outcome::Outcome;

/// One failure kept by an [`ErrorCollector`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectedError {
    /// The event's name.
    pub event: &'static str,
    /// The event's id.
    pub event_id: EventId,
    /// The handler that failed.
    pub handler: String,
    /// `failed: ...` or `panicked: ...`.
    pub message: String,
    /// When it was recorded.
    pub at: SystemTime,
}

/// Keeps the last `capacity` handler failures (older ones are dropped first). Clone it: the
/// clones share one store, so keep one and give another to the builder.
#[derive(Debug, Clone)]
pub struct ErrorCollector {
    inner: Arc<Mutex<(usize, VecDeque<CollectedError>)>>,
}

impl ErrorCollector {
    /// Keeps at most `capacity` failures (at least 1).
    pub fn new(capacity: usize) -> ErrorCollector {
        ErrorCollector {
            inner: Arc::new(Mutex::new((capacity.max(1), VecDeque::new()))),
        }
    }

    /// The kept failures, oldest first.
    pub fn errors(&self) -> Vec<CollectedError> {
        self.lock().1.iter().cloned().collect()
    }

    /// Forgets every kept failure.
    pub fn clear(&self) {
        self.lock().1.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, VecDeque<CollectedError>)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Observer for ErrorCollector {
    fn failed(&self, meta: &Meta, handler: &str, outcome: &Outcome, _elapsed: Duration) {
        let mut guard = self.lock();
        let (capacity, errors) = &mut *guard;
        if errors.len() == *capacity {
            errors.pop_front();
        }
        errors.push_back(CollectedError {
            event: meta.name(),
            event_id: meta.id(),
            handler: handler.to_owned(),
            message: outcome.to_string(),
            at: SystemTime::now(),
        });
    }
}
