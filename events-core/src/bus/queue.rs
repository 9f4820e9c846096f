//! Background emission: a bounded queue drained by worker tasks.
//!
//! The queue holds at most `capacity` events; a producer that finds it full waits for room
//! (`emit`) or is refused (`try_emit`), so memory stays bounded however fast producers are.
//! Events are taken highest priority first, first in first out within a priority.
//!
//! There is one lock-free queue per priority level; the levels are the priorities of the
//! event types in the registry, fixed at `build()`. Producers and workers share no lock: a
//! producer reserves a place with one atomic add, and wakes a worker only when one is parked.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crossbeam_queue::SegQueue;
use tokio::sync::Notify;
use tracing::Instrument;

use super::run::run;
use super::{Bus, Inner, Outcomes, PublishError};
use crate::context::Context;
use crate::envelope::{EventId, Lineage, Meta, NoOptions, Options, PublishOptions};
use crate::event::{Event, Payload};

/// How many times an idle worker yields, looking for work, before it parks.
const SPINS: usize = 64;

pub(crate) struct Queue {
    /// Highest priority first.
    levels: Box<[(i32, SegQueue<Job>)]>,
    /// Priorities not in the registry, highest first (`Reverse`).
    other: Mutex<BTreeMap<std::cmp::Reverse<i32>, VecDeque<Job>>>,
    /// Jobs in `other`; while 0, workers do not take its lock.
    other_len: AtomicUsize,
    /// Places taken: events queued plus reservations about to be pushed.
    len: AtomicUsize,
    capacity: usize,
    /// Wakes parked workers.
    work: Notify,
    /// Workers parked (or about to park) on `work`.
    idle: AtomicUsize,
    /// Wakes producers waiting for room.
    room: Notify,
    /// Producers waiting for room.
    waiting: AtomicUsize,
    closed: AtomicBool,
    /// Events taken by workers whose handlers have not finished.
    in_flight: AtomicUsize,
    workers: usize,
    started: OnceLock<()>,
}

struct Job {
    event: Box<dyn Payload>,
    meta: Meta,
    /// The emit's span, kept only when a subscriber wants it: the handler spans on the
    /// worker are its children.
    span: Option<Box<tracing::Span>>,
}

impl Queue {
    /// `priorities`: every priority an event may be queued with.
    pub(crate) fn new(capacity: usize, workers: usize, priorities: &[i32]) -> Queue {
        let mut levels: Vec<i32> = priorities.to_vec();
        levels.push(0);
        levels.sort_unstable_by(|a, b| b.cmp(a));
        levels.dedup();
        Queue {
            levels: levels.into_iter().map(|p| (p, SegQueue::new())).collect(),
            other: Mutex::new(BTreeMap::new()),
            other_len: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            capacity,
            work: Notify::new(),
            idle: AtomicUsize::new(0),
            room: Notify::new(),
            waiting: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            workers: workers.max(1),
            started: OnceLock::new(),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Events waiting, not yet taken by a worker.
    pub(crate) fn queued(&self) -> usize {
        self.len.load(Ordering::Acquire).min(self.capacity)
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Puts `job` in if there is room; gives it back if not.
    fn try_push(&self, job: Job, priority: i32) -> Result<(), Job> {
        if self.is_closed() {
            return Err(job);
        }
        if self.len.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.len.fetch_sub(1, Ordering::AcqRel);
            return Err(job);
        }
        // The registry's priorities have lock-free levels; another priority (set per event
        // with `PublishOptions::priority`) goes to the locked overflow levels.
        match self.levels.binary_search_by(|(p, _)| priority.cmp(p)) {
            Ok(at) => self.levels[at].1.push(job),
            Err(_) => {
                let mut other = self.other.lock().unwrap_or_else(|p| p.into_inner());
                other
                    .entry(std::cmp::Reverse(priority))
                    .or_default()
                    .push_back(job);
                self.other_len.fetch_add(1, Ordering::AcqRel);
            }
        }
        // Pairs with the worker's `idle` increment before it looks at the queue: either it
        // sees this job, or this sees it idle and wakes it.
        if self.idle.load(Ordering::SeqCst) > 0 {
            self.work.notify_one();
        }
        Ok(())
    }

    /// Takes the next job, highest priority first, and counts it as running: a taken job
    /// is always a running one, so a shutdown can say exactly what was not handled.
    /// `Err(())` once the queue is closed and empty.
    fn take(&self) -> Result<Option<Job>, ()> {
        let job = if self.other_len.load(Ordering::Acquire) == 0 {
            self.levels.iter().find_map(|(_, level)| level.pop())
        } else {
            self.take_merged()
        };
        match job {
            Some(job) => {
                // Running before no longer queued: never both zero while an event is pending.
                self.in_flight.fetch_add(1, Ordering::AcqRel);
                self.len.fetch_sub(1, Ordering::AcqRel);
                if self.waiting.load(Ordering::SeqCst) > 0 {
                    self.room.notify_waiters();
                }
                Ok(Some(job))
            }
            None if self.is_closed() => Err(()),
            None => Ok(None),
        }
    }

    /// Takes the highest-priority job from the lock-free levels and the overflow levels.
    #[cold]
    fn take_merged(&self) -> Option<Job> {
        let mut other = self.other.lock().unwrap_or_else(|p| p.into_inner());
        let best_other = other.iter().find(|(_, q)| !q.is_empty()).map(|(p, _)| p.0);
        for (p, level) in self.levels.iter() {
            if best_other.is_some_and(|o| o > *p) {
                break;
            }
            if let Some(job) = level.pop() {
                return Some(job);
            }
        }
        let (_, queue) = other.iter_mut().find(|(_, q)| !q.is_empty())?;
        let job = queue.pop_front();
        if job.is_some() {
            self.other_len.fetch_sub(1, Ordering::AcqRel);
        }
        job
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Takes every queued event out, unhandled.
    pub(crate) fn take_remaining(&self) -> Vec<super::Unprocessed> {
        let mut out = Vec::new();
        while let Some(job) = self.take_merged() {
            self.len.fetch_sub(1, Ordering::AcqRel);
            out.push(super::Unprocessed {
                id: job.meta.id,
                name: job.meta.name(),
            });
        }
        for (_, level) in self.levels.iter() {
            while let Some(job) = level.pop() {
                self.len.fetch_sub(1, Ordering::AcqRel);
                out.push(super::Unprocessed {
                    id: job.meta.id,
                    name: job.meta.name(),
                });
            }
        }
        out
    }

    fn is_empty(&self) -> bool {
        self.other_len.load(Ordering::Acquire) == 0 && self.levels.iter().all(|(_, l)| l.is_empty())
    }

    /// Stops the workers once the queue is empty, and refuses new events.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.work.notify_waiters();
        self.room.notify_waiters();
    }

    /// Starts the workers on the current tokio runtime, once.
    fn start(&self, bus: &Arc<Inner>) -> Result<(), PublishError> {
        if self.started.get().is_some() {
            return Ok(());
        }
        let handle = tokio::runtime::Handle::try_current().map_err(|_| PublishError::NoRuntime)?;
        self.started.get_or_init(|| {
            for _ in 0..self.workers {
                handle.spawn(worker(Arc::downgrade(bus)));
            }
        });
        Ok(())
    }
}

async fn worker(bus: Weak<Inner>) {
    let Some(queue) = bus.upgrade().map(|b| Arc::clone(&b.queue)) else {
        return;
    };
    // A strong handle while there is work, dropped before parking so the bus can go away.
    let mut held: Option<Bus> = None;
    let mut spins = 0;
    loop {
        let job = match queue.take() {
            Err(()) => return,
            Ok(Some(job)) => job,
            Ok(None) => {
                if spins < SPINS {
                    spins += 1;
                    for _ in 0..64 {
                        if !queue.is_empty() {
                            break;
                        }
                        std::hint::spin_loop();
                    }
                    if queue.is_empty() {
                        tokio::task::yield_now().await;
                    }
                    continue;
                }
                spins = 0;
                held = None;
                let notified = queue.work.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                queue.idle.fetch_add(1, Ordering::SeqCst);
                let next = queue.take();
                if matches!(next, Ok(None)) {
                    notified.await;
                }
                queue.idle.fetch_sub(1, Ordering::SeqCst);
                match next {
                    Err(()) => return,
                    Ok(None) => continue,
                    Ok(Some(job)) => job,
                }
            }
        };
        spins = 0;
        if held.is_none() {
            held = bus.upgrade().map(|inner| Bus { inner });
        }
        let Some(bus) = &held else {
            queue.in_flight.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(
                events = queue.queued() + 1,
                "the bus was dropped with events still queued; they were not handled"
            );
            return;
        };
        let Job { event, meta, span } = job;
        if meta.is_expired() {
            bus.inner.observers.expired(&meta);
            tracing::warn!(
                event = meta.name(), event_id = %meta.id(),
                "event expired in the queue; not delivered"
            );
            queue.in_flight.fetch_sub(1, Ordering::AcqRel);
            continue;
        }
        // Routed when taken, not when queued: a subscription made meanwhile sees it.
        let type_id = meta.info.type_id();
        let ctx = Context {
            bus: bus.clone(),
            meta,
            attempt: 1,
        };
        if !bus.inner.observers.is_empty() {
            bus.inner.observers.dispatching(&ctx.meta, &*event);
        }
        let route = bus.route(type_id, ctx.meta.info);
        let mut outcomes = Outcomes::default();
        let slots = bus.dispatch_slots(&route, type_id, &ctx.meta);
        let dispatch = run(slots, &*event, &ctx, &mut outcomes);
        match span {
            Some(span) => dispatch.instrument(*span).await,
            None => dispatch.await,
        }
        drop(ctx);
        queue.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An event ready to queue: see [`Bus::prepare`].
struct Prepared {
    job: Job,
    priority: i32,
    id: EventId,
    observed: Option<Box<Meta>>,
}

impl Bus {
    /// Hands the event to the bus's worker tasks and returns its id without waiting for the
    /// handlers. Waits only while the queue is full (backpressure); see
    /// [`try_emit`](Self::try_emit) to be refused instead.
    ///
    /// Workers start on the current tokio runtime at the first emit. Handler failures are
    /// logged through `tracing`, as with [`publish`](Self::publish). Events still queued
    /// when the last handle to the bus is dropped are not handled (a warning says how many).
    ///
    /// # Errors
    /// [`PublishError::NoRuntime`] outside a tokio runtime, [`PublishError::TooDeep`],
    /// [`PublishError::Closed`].
    pub async fn emit<E: Event>(&self, event: E) -> Result<EventId, PublishError> {
        self.emit_from(event, None, NoOptions).await
    }

    /// [`emit`](Self::emit) with a correlation id, source or metadata.
    pub async fn emit_with<E: Event>(
        &self,
        event: E,
        options: PublishOptions,
    ) -> Result<EventId, PublishError> {
        self.emit_from(event, None, options).await
    }

    /// Like [`emit`](Self::emit), but waits at most `timeout` for room, then refuses with
    /// [`PublishError::QueueFull`].
    pub async fn emit_timeout<E: Event>(
        &self,
        event: E,
        timeout: std::time::Duration,
    ) -> Result<EventId, PublishError> {
        match tokio::time::timeout(timeout, self.emit_from(event, None, NoOptions)).await {
            Ok(result) => result,
            Err(_) => Err(self.refused(
                E::NAME,
                PublishError::QueueFull {
                    name: E::NAME,
                    capacity: self.inner.queue.capacity,
                },
            )),
        }
    }

    /// Like [`emit`](Self::emit), but refuses at once when the queue is full. Never waits,
    /// so it can be called from synchronous code inside a tokio runtime.
    ///
    /// # Errors
    /// [`PublishError::QueueFull`] when the queue is full: the event was not queued.
    pub fn try_emit<E: Event>(&self, event: E) -> Result<EventId, PublishError> {
        self.try_emit_from(event, None, NoOptions)
    }

    /// Makes the envelope now (not when the returned future is first polled, so that the
    /// entry points' literal `None`s fold away), then queues.
    #[inline(always)]
    pub(crate) fn emit_from<E: Event>(
        &self,
        event: E,
        parent: Option<Lineage>,
        options: impl Options,
    ) -> impl Future<Output = Result<EventId, PublishError>> + Send + '_ {
        let prepared = self.prepare(event, parent, options);
        async move {
            let Prepared {
                mut job,
                priority,
                id,
                observed,
            } = prepared?;
            if self.inner.outbound {
                let Job { event, meta, .. } = &mut job;
                if self.outbound(&**event, meta).await?.is_some() {
                    // Sent over the transport: its consumers handle it, not this queue.
                    return Ok(self.accepted(id, observed));
                }
            }
            self.enqueue::<E>(job, priority, id, observed).await
        }
    }

    /// Waits for room, then queues the job.
    async fn enqueue<E: Event>(
        &self,
        job: Job,
        priority: i32,
        id: EventId,
        observed: Option<Box<Meta>>,
    ) -> Result<EventId, PublishError> {
        let queue = &self.inner.queue;
        // Fast path: room now, no waiting machinery.
        let mut job = match queue.try_push(job, priority) {
            Ok(()) => return Ok(self.accepted(id, observed)),
            Err(back) => back,
        };
        loop {
            let room = queue.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            queue.waiting.fetch_add(1, Ordering::SeqCst);
            let pushed = queue.try_push(job, priority);
            match pushed {
                Ok(()) => {
                    queue.waiting.fetch_sub(1, Ordering::SeqCst);
                    return Ok(self.accepted(id, observed));
                }
                Err(_) if queue.is_closed() => {
                    queue.waiting.fetch_sub(1, Ordering::SeqCst);
                    return Err(self.refused(E::NAME, PublishError::Closed));
                }
                Err(back) => {
                    job = back;
                    room.await;
                    queue.waiting.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
    }

    pub(crate) fn try_emit_from<E: Event>(
        &self,
        event: E,
        parent: Option<Lineage>,
        options: impl Options,
    ) -> Result<EventId, PublishError> {
        let Prepared {
            mut job,
            priority,
            id,
            observed,
        } = self.prepare(event, parent, options)?;
        if self.inner.outbound {
            // No runtime needed for a store: its writer runs on its own thread.
            let Job { event, meta, .. } = &mut job;
            if self.outbound_blocking(&**event, meta)?.is_some() {
                // Committed to the outbox: the transport's consumers handle it.
                return Ok(self.accepted(id, observed));
            }
        }
        let queue = &self.inner.queue;
        match queue.try_push(job, priority) {
            Ok(()) => Ok(self.accepted(id, observed)),
            Err(_) if queue.is_closed() => Err(self.refused(E::NAME, PublishError::Closed)),
            Err(_) => Err(self.refused(
                E::NAME,
                PublishError::QueueFull {
                    name: E::NAME,
                    capacity: queue.capacity,
                },
            )),
        }
    }

    /// The job, its priority and id, and a copy of the envelope for the observers (taken
    /// only when there are observers, boxed so that it costs one word otherwise: the job
    /// itself moves into the queue).
    #[inline(always)]
    fn prepare<E: Event>(
        &self,
        event: E,
        parent: Option<Lineage>,
        options: impl Options,
    ) -> Result<Prepared, PublishError> {
        let job = self.job(event, parent, options)?;
        let (priority, id) = (job.meta.priority(), job.meta.id);
        let observed = (!self.inner.observers.is_empty()).then(|| Box::new(job.meta.clone()));
        Ok(Prepared {
            job,
            priority,
            id,
            observed,
        })
    }

    #[inline]
    fn accepted(&self, id: EventId, observed: Option<Box<Meta>>) -> EventId {
        if let Some(meta) = observed {
            self.inner.observers.published(&meta);
        }
        id
    }

    #[inline(always)]
    fn job<E: Event>(
        &self,
        event: E,
        parent: Option<Lineage>,
        options: impl Options,
    ) -> Result<Job, PublishError> {
        self.inner.queue.start(&self.inner)?;
        let meta = self.meta::<E>(parent, options)?;
        let span =
            super::dispatch::spans_on().then(|| Box::new(super::dispatch::publish_span(&meta)));
        Ok(Job {
            event: Box::new(event),
            meta,
            span,
        })
    }

    /// [`emit`](Self::emit)s each event in order, waiting for room as needed; one result per
    /// event.
    pub async fn emit_batch<E: Event>(
        &self,
        events: impl IntoIterator<Item = E>,
    ) -> Vec<Result<EventId, PublishError>> {
        let mut out = Vec::new();
        for event in events {
            out.push(self.emit_from(event, None, NoOptions).await);
        }
        out
    }

    /// How many emitted events wait in the queue, not yet taken by a worker.
    pub fn queue_len(&self) -> usize {
        self.inner.queue.queued()
    }
}
