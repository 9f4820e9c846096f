//! The bus's lifecycle: enabled, disabled (refuses events for a while), shut down (refuses
//! events for good, after draining the queue within a deadline).

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use super::{Bus, PublishError};
use crate::envelope::EventId;

const ENABLED: u8 = 0;
const DISABLED: u8 = 1;
const SHUT_DOWN: u8 = 2;
/// Shut down and past the drain: retries still waiting are abandoned.
const STOPPED: u8 = 3;

/// Whether the bus takes events. Read with one relaxed load per publish.
#[derive(Debug, Default)]
pub(crate) struct Lifecycle(AtomicU8, AtomicUsize);

impl Lifecycle {
    /// Whether shutdown has given up on waiting: a retry due now must not run.
    pub(crate) fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Acquire) == STOPPED
    }

    pub(crate) fn pending_retries(&self) -> usize {
        self.1.load(Ordering::Acquire)
    }

    /// `Ok` when events are taken, else the error that refuses an event named `name`.
    /// While shutdown drains, a child event (`is_child`: published by a handler still
    /// running, or by a retry shutdown waits for) is taken: its flow may complete.
    #[inline]
    pub(crate) fn check(
        &self,
        name: &'static str,
        is_child: impl FnOnce() -> bool,
    ) -> Result<(), PublishError> {
        match self.0.load(Ordering::Relaxed) {
            ENABLED => Ok(()),
            state => refusal(state, name, is_child),
        }
    }
}

#[cold]
#[inline(never)]
fn refusal(
    state: u8,
    name: &'static str,
    is_child: impl FnOnce() -> bool,
) -> Result<(), PublishError> {
    match state {
        DISABLED => Err(PublishError::Disabled { name }),
        SHUT_DOWN if is_child() => Ok(()),
        _ => Err(PublishError::Closed),
    }
}

/// One scheduled retry, counted until dropped (however its task ends).
pub(crate) struct PendingRetry(Bus);

impl PendingRetry {
    /// The bus the retry runs on.
    pub(crate) fn bus(&self) -> &Bus {
        &self.0
    }
}

impl Drop for PendingRetry {
    fn drop(&mut self) {
        self.0.inner.lifecycle.1.fetch_sub(1, Ordering::AcqRel);
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
    /// Retries still waiting for their delay at the deadline: they do not run. (With a
    /// store, a durable handler's abandoned retry is completed by
    /// [`Bus::recover`](crate::Bus::recover) on the next start.)
    pub abandoned_retries: usize,
}

impl ShutdownReport {
    /// Whether every queued event was handled before the deadline.
    pub fn is_complete(&self) -> bool {
        self.unprocessed.is_empty() && self.still_running == 0 && self.abandoned_retries == 0
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
    /// What is still going on: events queued, events a worker is handling, retries waiting
    /// (or running). All zero: the bus was idle at some moment during the call.
    pub(crate) fn activity(&self) -> (usize, usize, usize) {
        let queue = &self.inner.queue;
        // The queue first: a worker counts an event as running before it leaves the queue,
        // so an event between the two reads is seen in one of them.
        let queued = queue.queued();
        let running = queue.in_flight();
        (queued, running, self.inner.lifecycle.pending_retries())
    }

    /// Counts one more waiting retry (shutdown waits for it, within its deadline), unless
    /// `max_pending_retries` already wait.
    pub(crate) fn retry_scheduled(&self) -> Option<PendingRetry> {
        let max = self.inner.max_pending_retries;
        self.inner
            .lifecycle
            .1
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(PendingRetry(self.clone()))
    }

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
    /// From the call on, every new publish and emit fails with [`PublishError::Closed`], and
    /// producers waiting for room are released with that error. Until the drain ends, the
    /// child events that handlers still running and the retries it waits for publish
    /// (`ctx.publish`, or `publish` inside a handler) are taken, so that their flows complete;
    /// emitting to the closed queue is refused. After the deadline, everything is refused. Events still queued at the deadline are taken out and listed in the report;
    /// handlers already running are not interrupted.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        self.inner.lifecycle.0.store(SHUT_DOWN, Ordering::Release);
        let queue = &self.inner.queue;
        queue.close();
        let before = queue.queued() + queue.in_flight();
        let lifecycle = &self.inner.lifecycle;
        let finished = tokio::time::timeout(deadline, async {
            while queue.queued() > 0 || queue.in_flight() > 0 || lifecycle.pending_retries() > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .is_ok();
        // Retries still waiting will find the bus stopped and not run.
        lifecycle.0.store(STOPPED, Ordering::Release);
        let abandoned_retries = lifecycle.pending_retries();
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
        if !unprocessed.is_empty() || still_running > 0 || abandoned_retries > 0 {
            tracing::warn!(
                unprocessed = unprocessed.len(),
                still_running,
                abandoned_retries,
                "bus shut down before its queue and retries were drained"
            );
        }
        ShutdownReport {
            drained: before.saturating_sub(unprocessed.len() + still_running),
            unprocessed,
            still_running,
            abandoned_retries,
        }
    }
}
