//! Background emission: a bounded queue drained by worker tasks.
//!
//! The queue holds at most `capacity` events: a permit is taken when an event goes in and
//! given back when a worker takes it out, so memory stays bounded however fast producers
//! are. Events are taken highest priority first, first in first out within a priority.
//! Workers take events in small batches to keep the lock cold.

use std::any::{Any, TypeId};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{Notify, Semaphore, TryAcquireError};

use super::dispatch::run;
use super::{Bus, PublishError, Slot};
use crate::context::Context;
use crate::envelope::{EventId, Meta, PublishOptions};
use crate::event::Event;

/// How many events a worker takes out per lock.
const BATCH: usize = 32;

pub(crate) struct Queue {
    state: Mutex<State>,
    /// Free places in the queue.
    permits: Semaphore,
    /// Wakes idle workers.
    notify: Notify,
    capacity: usize,
    workers: usize,
    started: OnceLock<()>,
}

struct State {
    /// Non-empty levels and empty ones alike, highest priority first.
    levels: Vec<(i32, VecDeque<Job>)>,
    closed: bool,
}

pub(crate) struct Job {
    event: Box<dyn Any + Send + Sync>,
    ctx: Context,
    slots: Option<Arc<[Slot]>>,
    priority: i32,
}

impl Queue {
    pub(crate) fn new(capacity: usize, workers: usize) -> Queue {
        Queue {
            state: Mutex::new(State {
                levels: Vec::new(),
                closed: false,
            }),
            permits: Semaphore::new(capacity.min(Semaphore::MAX_PERMITS)),
            notify: Notify::new(),
            capacity,
            workers: workers.max(1),
            started: OnceLock::new(),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Events waiting, not yet taken by a worker.
    pub(crate) fn len(&self) -> usize {
        self.capacity - self.permits.available_permits()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Critical sections only move jobs between containers; a panic cannot leave them
        // half-done, so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts a job in; the caller holds a permit for it.
    fn push(&self, job: Job) {
        {
            let mut state = self.lock();
            let at = state.levels.partition_point(|(p, _)| *p > job.priority);
            match state.levels.get_mut(at) {
                Some((p, level)) if *p == job.priority => level.push_back(job),
                _ => state
                    .levels
                    .insert(at, (job.priority, VecDeque::from([job]))),
            }
        }
        self.notify.notify_one();
    }

    /// Moves up to `BATCH` jobs, highest priority first, into `batch`. `false` once the queue
    /// is closed and empty.
    fn take(&self, batch: &mut Vec<Job>) -> bool {
        let mut state = self.lock();
        for (_, level) in state.levels.iter_mut() {
            while batch.len() < BATCH {
                match level.pop_front() {
                    Some(job) => batch.push(job),
                    None => break,
                }
            }
            if batch.len() == BATCH {
                break;
            }
        }
        !(state.closed && batch.is_empty())
    }

    /// Stops the workers once the queue is empty.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_waiters();
    }

    /// Starts the workers on the current tokio runtime, once.
    fn start(self: &Arc<Self>) -> Result<(), PublishError> {
        if self.started.get().is_some() {
            return Ok(());
        }
        let handle = tokio::runtime::Handle::try_current().map_err(|_| PublishError::NoRuntime)?;
        self.started.get_or_init(|| {
            for _ in 0..self.workers {
                handle.spawn(worker(Arc::clone(self)));
            }
        });
        Ok(())
    }
}

async fn worker(queue: Arc<Queue>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let notified = queue.notify.notified();
        tokio::pin!(notified);
        // Register interest before looking, so a push between the look and the wait is not
        // missed.
        notified.as_mut().enable();
        if !queue.take(&mut batch) {
            return;
        }
        if batch.is_empty() {
            notified.await;
            continue;
        }
        queue.permits.add_permits(batch.len());
        for job in batch.drain(..) {
            let _receipt = run(job.slots, &*job.event, &job.ctx).await;
        }
    }
}

impl Bus {
    /// Hands the event to the bus's worker tasks and returns its id without waiting for the
    /// handlers. Waits only while the queue is full (backpressure); see
    /// [`try_emit`](Self::try_emit) to be refused instead.
    ///
    /// Workers start on the current tokio runtime at the first emit. Handler failures are
    /// logged through `tracing`, as with [`publish`](Self::publish).
    ///
    /// # Errors
    /// [`PublishError::NoRuntime`] outside a tokio runtime, [`PublishError::TooDeep`].
    pub async fn emit<E: Event>(&self, event: E) -> Result<EventId, PublishError> {
        self.emit_from(event, None, None).await
    }

    /// [`emit`](Self::emit) with a correlation id, source or metadata.
    pub async fn emit_with<E: Event>(
        &self,
        event: E,
        options: PublishOptions,
    ) -> Result<EventId, PublishError> {
        self.emit_from(event, None, Some(options)).await
    }

    /// Like [`emit`](Self::emit), but refuses at once when the queue is full. Never waits,
    /// so it can be called from synchronous code inside a tokio runtime.
    ///
    /// # Errors
    /// [`PublishError::QueueFull`] when the queue is full: the event was not queued.
    pub fn try_emit<E: Event>(&self, event: E) -> Result<EventId, PublishError> {
        self.try_emit_from(event, None, None)
    }

    pub(crate) async fn emit_from<E: Event>(
        &self,
        event: E,
        parent: Option<&Meta>,
        options: Option<PublishOptions>,
    ) -> Result<EventId, PublishError> {
        let queue = &self.inner.queue;
        queue.start()?;
        match queue.permits.try_acquire() {
            Ok(p) => p.forget(),
            Err(TryAcquireError::NoPermits) => match queue.permits.acquire().await {
                Ok(p) => p.forget(),
                Err(_) => return Err(PublishError::Closed),
            },
            Err(TryAcquireError::Closed) => return Err(PublishError::Closed),
        }
        self.enqueue(event, parent, options)
    }

    pub(crate) fn try_emit_from<E: Event>(
        &self,
        event: E,
        parent: Option<&Meta>,
        options: Option<PublishOptions>,
    ) -> Result<EventId, PublishError> {
        let queue = &self.inner.queue;
        queue.start()?;
        match queue.permits.try_acquire() {
            Ok(p) => p.forget(),
            Err(TryAcquireError::NoPermits) => {
                return Err(PublishError::QueueFull {
                    name: E::NAME,
                    capacity: queue.capacity,
                });
            }
            Err(TryAcquireError::Closed) => return Err(PublishError::Closed),
        }
        self.enqueue(event, parent, options)
    }

    /// Queues the event; the caller took a permit.
    fn enqueue<E: Event>(
        &self,
        event: E,
        parent: Option<&Meta>,
        options: Option<PublishOptions>,
    ) -> Result<EventId, PublishError> {
        let ctx = match self.context::<E>(parent, options) {
            Ok(ctx) => ctx,
            Err(e) => {
                self.inner.queue.permits.add_permits(1);
                return Err(e);
            }
        };
        let id = ctx.meta.id;
        let slots = self.slots(TypeId::of::<E>());
        self.inner.queue.push(Job {
            event: Box::new(event),
            ctx,
            slots,
            priority: E::PRIORITY,
        });
        Ok(id)
    }

    /// How many emitted events wait in the queue, not yet taken by a worker.
    pub fn queue_len(&self) -> usize {
        self.inner.queue.len()
    }
}
