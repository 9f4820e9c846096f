//! The bus's lifecycle: enabled, disabled (refuses events for a while), shut down (refuses
//! events for good, after draining the queue within a deadline).

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use super::{Bus, PublishError};
use crate::envelope::EventId;

const ENABLED: u8 = 0;
const DISABLED: u8 = 1;
const SHUT_DOWN: u8 = 2;

/// Whether the bus takes events. Read with one relaxed load per publish.
#[derive(Debug, Default)]
pub(crate) struct Lifecycle(AtomicU8);

impl Lifecycle {
    /// `Ok` when events are taken, else the error that refuses an event named `name`.
    #[inline]
    pub(crate) fn check(&self, name: &'static str) -> Result<(), PublishError> {
        match self.0.load(Ordering::Relaxed) {
            ENABLED => Ok(()),
            DISABLED => Err(PublishError::Disabled { name }),
            _ => Err(PublishError::Closed),
        }
    }
}

/// What [`Bus::shutdown`] did with the events that were queued when it was called.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Events handled while draining.
    pub drained: usize,
    /// Events still queued at the deadline: taken out of the queue and not handled.
    pub unprocessed: Vec<Unprocessed>,
    /// Events whose handlers were still running at the deadline; they run to completion.
    pub still_running: usize,
}

impl ShutdownReport {
    /// Whether every queued event was handled before the deadline.
    pub fn is_complete(&self) -> bool {
        self.unprocessed.is_empty() && self.still_running == 0
    }
}

/// An event [`Bus::shutdown`] took out of the queue unhandled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unprocessed {
    /// The event's id.
    pub id: EventId,
    /// The event's name.
    pub name: &'static str,
}

impl Bus {
    /// Refuses every event until [`enable`](Self::enable): publishing and emitting return
    /// [`PublishError::Disabled`]; nothing is lost silently. Events already queued are still
    /// handled.
    pub fn disable(&self) {
        let _ = self.inner.lifecycle.0.compare_exchange(
            ENABLED,
            DISABLED,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Takes events again after [`disable`](Self::disable). Does nothing after
    /// [`shutdown`](Self::shutdown).
    pub fn enable(&self) {
        let _ = self.inner.lifecycle.0.compare_exchange(
            DISABLED,
            ENABLED,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Whether the bus takes events now.
    pub fn is_enabled(&self) -> bool {
        self.inner.lifecycle.0.load(Ordering::Acquire) == ENABLED
    }

    /// Stops taking events for good, lets the workers handle what is queued for at most
    /// `deadline`, and reports what was not handled.
    ///
    /// From the call on, every publish and emit (handlers' child events included) fails with
    /// [`PublishError::Closed`], and producers waiting for room are released with that
    /// error. Events still queued at the deadline are taken out and listed in the report;
    /// handlers already running are not interrupted.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        self.inner.lifecycle.0.store(SHUT_DOWN, Ordering::Release);
        let queue = &self.inner.queue;
        queue.close();
        let before = queue.queued() + queue.in_flight();
        let finished = tokio::time::timeout(deadline, async {
            while queue.queued() > 0 || queue.in_flight() > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .is_ok();
        let unprocessed = if finished {
            Vec::new()
        } else {
            queue.take_remaining()
        };
        let still_running = queue.in_flight();
        if let Some(store) = &self.inner.store {
            if let Err(e) = store.flush().await {
                tracing::error!(error = %e, "the event store could not be flushed at shutdown");
            }
        }
        if !unprocessed.is_empty() || still_running > 0 {
            tracing::warn!(
                unprocessed = unprocessed.len(),
                still_running,
                "bus shut down before its queue was drained"
            );
        }
        ShutdownReport {
            drained: before.saturating_sub(unprocessed.len() + still_running),
            unprocessed,
            still_running,
        }
    }
}
