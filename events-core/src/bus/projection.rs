//! Projections: durable handlers rebuilt from the start of the log ([`Bus::rebuild`]) and
//! how far behind each one is ([`Bus::lag`]).

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::run::run_one;
use super::{Bus, Slot};
use crate::context::Context;
use crate::envelope::Meta;
use crate::event::EventInfo;
use crate::store::{PAGE, StoreError, StoreQuery, row_sequence};

/// How far a durable handler is behind the log: [`Bus::lag`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lag {
    /// The handler.
    pub handler: String,
    /// The event type.
    pub event: &'static str,
    /// Stored events of that type it has not finished.
    pub behind: u64,
    /// When the oldest of them was published.
    pub oldest: Option<SystemTime>,
    /// Whether [`Bus::rebuild`] is replaying its history now.
    pub rebuilding: bool,
    /// Whether it is paused ([`Bus::pause`]).
    pub paused: bool,
}

impl Lag {
    /// How long the oldest unfinished event has waited (zero when none waits).
    pub fn age(&self) -> Duration {
        self.oldest
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or_default()
    }
}

/// How far a [`Rebuild`] has come, given to its progress callback after each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RebuildProgress {
    /// Events delivered so far.
    pub done: u64,
    /// Events to deliver: those stored when the rebuild started, plus those that arrived
    /// while it ran.
    pub total: u64,
    /// The sequence of the last event delivered.
    pub sequence: u64,
}

/// What a [`Rebuild`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RebuildReport {
    /// Events delivered to the handler by the rebuild (the live ones after the switch are
    /// not counted).
    pub events: u64,
    /// Events that could not be read or decoded (logged; they stay pending).
    pub unreadable: u64,
    /// The sequence after which live publishing took over.
    pub switched_at: u64,
}

/// Why a rebuild could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RebuildError {
    /// The bus has no store.
    #[error("the bus has no event store to rebuild from: build it with `BusBuilder::store`")]
    NoStore,
    /// No durable handler of that name is on this bus.
    #[error("no durable handler named `{0}` on this bus (`#[handler(durable)]`)")]
    UnknownHandler(String),
    /// It is being rebuilt already.
    #[error("durable handler `{0}` is being rebuilt already")]
    AlreadyRebuilding(String),
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A rebuild being set up: made by [`Bus::rebuild`], run by awaiting it.
#[must_use = "a rebuild does nothing until it is awaited"]
pub struct Rebuild<'a> {
    bus: &'a Bus,
    handler: String,
    reset: Option<Box<dyn FnOnce() + Send + 'a>>,
    progress: Option<Box<dyn FnMut(RebuildProgress) + Send + 'a>>,
}

impl std::fmt::Debug for Rebuild<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rebuild")
            .field("handler", &self.handler)
            .finish_non_exhaustive()
    }
}

impl<'a> Rebuild<'a> {
    /// Runs `reset` once live deliveries to the handler have stopped and before its history
    /// is delivered again: where the projection clears what it built.
    pub fn reset(mut self, reset: impl FnOnce() + Send + 'a) -> Self {
        self.reset = Some(Box::new(reset));
        self
    }

    /// Called after each event with how far the rebuild has come.
    pub fn on_progress(mut self, progress: impl FnMut(RebuildProgress) + Send + 'a) -> Self {
        self.progress = Some(Box::new(progress));
        self
    }
}

impl<'a> IntoFuture for Rebuild<'a> {
    type Output = Result<RebuildReport, RebuildError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(
            self.bus
                .run_rebuild(self.handler, self.reset, self.progress, true),
        )
    }
}

/// Gives the handler back to live publishing however the rebuild ends.
struct Reopen<'a> {
    bus: &'a Bus,
    handler: &'a str,
    slots: Vec<Slot>,
}

impl Drop for Reopen<'_> {
    fn drop(&mut self) {
        let paused = self
            .bus
            .inner
            .paused
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // A handler paused meanwhile stays closed.
        if !paused.contains(self.handler) {
            for slot in &self.slots {
                if let Some(gate) = &slot.paused {
                    gate.store(false, SeqCst);
                }
            }
        }
        drop(paused);
        self.bus
            .inner
            .rebuilds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(self.handler);
    }
}

impl Bus {
    /// Rebuilds durable handler `handler` (a projection) from the start of the log: stops
    /// live deliveries to it, runs the [`reset`](Rebuild::reset) hook, forgets its delivery
    /// records and checkpoints, delivers every stored event it takes, oldest first, with
    /// [progress](Rebuild::on_progress), and then hands it back to live publishing without
    /// a gap or a second delivery at the switch: events published meanwhile are delivered
    /// by the rebuild up to a boundary sequence, and live from there on.
    ///
    /// Its deliveries are recorded as usual (a crash midway leaves the rest to
    /// [`recover`](Self::recover)); its events' receipts say [`Outcome::Paused`](crate::Outcome::Paused)
    /// while it runs. A delivery already running when the rebuild starts finishes on its
    /// own; clear the projection in the reset hook, which runs after the store's pending
    /// writes are flushed.
    ///
    /// ```no_run
    /// # async fn run(bus: events::Bus) -> Result<(), events::RebuildError> {
    /// let report = bus
    ///     .rebuild("shop::totals::on_order")
    ///     .reset(|| { /* DELETE FROM totals */ })
    ///     .on_progress(|p| eprint!("\r{}/{}", p.done, p.total))
    ///     .await?;
    /// println!("rebuilt from {} events", report.events);
    /// # Ok(()) }
    /// ```
    pub fn rebuild(&self, handler: &str) -> Rebuild<'_> {
        Rebuild {
            bus: self,
            handler: handler.to_owned(),
            reset: None,
            progress: None,
        }
    }

    /// Pauses durable handler `handler`: live events are no longer delivered to it (their
    /// receipts say [`Outcome::Paused`](crate::Outcome::Paused)); they stay pending in the
    /// store, counted by [`lag`](Self::lag), until [`resume`](Self::resume). A delivery
    /// running now finishes; [`recover`](Self::recover) leaves its backlog to the resume.
    /// The pause holds for this bus only (a restarted service delivers the backlog with
    /// `recover`).
    ///
    /// # Errors
    /// [`RebuildError::NoStore`] without a store; [`RebuildError::UnknownHandler`] when no
    /// durable handler has that name.
    pub fn pause(&self, handler: &str) -> Result<(), RebuildError> {
        let slots = self.durable_slots(handler)?;
        let mut paused = self.inner.paused.lock().unwrap_or_else(|p| p.into_inner());
        paused.insert(handler.to_owned());
        for (_, slot) in &slots {
            if let Some(gate) = &slot.paused {
                gate.store(true, SeqCst);
            }
        }
        Ok(())
    }

    /// Resumes durable handler `handler` after [`pause`](Self::pause): delivers what it
    /// missed, oldest first, then hands it back to live publishing with no gap and no second
    /// delivery at the switch (as [`rebuild`](Self::rebuild) does, without clearing
    /// anything). Resuming a handler that is not paused delivers whatever it has pending.
    ///
    /// # Errors
    /// As [`pause`](Self::pause); [`RebuildError::AlreadyRebuilding`] while a rebuild runs
    /// (the handler stays paused); [`RebuildError::Store`] when the store fails midway (the
    /// rest stays pending, and the handler is live again).
    pub async fn resume(&self, handler: &str) -> Result<RebuildReport, RebuildError> {
        self.run_rebuild(handler.to_owned(), None, None, false)
            .await
    }

    /// Whether durable handler `name` is paused ([`pause`](Self::pause)).
    pub fn is_paused(&self, name: &str) -> bool {
        self.inner
            .paused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
    }

    /// The event types and slots of durable handler `handler`.
    fn durable_slots(
        &self,
        handler: &str,
    ) -> Result<Vec<(&'static EventInfo, Slot)>, RebuildError> {
        if self.inner.store.is_none() {
            return Err(RebuildError::NoStore);
        }
        let of: Vec<(&'static EventInfo, Slot)> = self
            .inner
            .durable
            .iter()
            .filter(|(_, s)| s.name() == handler)
            .cloned()
            .collect();
        if of.is_empty() {
            return Err(RebuildError::UnknownHandler(handler.to_owned()));
        }
        Ok(of)
    }

    /// Whether durable handler `name` is being rebuilt ([`rebuild`](Self::rebuild)) now.
    pub fn is_rebuilding(&self, name: &str) -> bool {
        self.inner
            .rebuilds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(name)
    }

    /// Whether a live delivery of `meta` goes to durable `slot` while its gate is closed:
    /// only past the rebuild's boundary (and always when no rebuild holds the gate).
    #[cold]
    #[inline(never)]
    pub(crate) fn passes_rebuild(&self, slot: &Slot, meta: &Meta) -> bool {
        if self.is_paused(slot.name()) {
            return false;
        }
        let rebuilds = self
            .inner
            .rebuilds
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match rebuilds.get(slot.name()) {
            None => true,
            Some(None) => false,
            Some(Some(boundary)) => meta.sequence().is_some_and(|s| s > *boundary),
        }
    }

    async fn run_rebuild(
        &self,
        handler: String,
        reset: Option<Box<dyn FnOnce() + Send + '_>>,
        mut progress: Option<Box<dyn FnMut(RebuildProgress) + Send + '_>>,
        fresh: bool,
    ) -> Result<RebuildReport, RebuildError> {
        let of = self.durable_slots(&handler)?;
        let Some(store) = self.inner.store.as_deref() else {
            return Err(RebuildError::NoStore);
        };
        {
            let mut rebuilds = self
                .inner
                .rebuilds
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if rebuilds.contains_key(&handler) {
                return Err(RebuildError::AlreadyRebuilding(handler));
            }
            rebuilds.insert(handler.clone(), None);
            if !fresh {
                // A resume: the gate stays closed (for the catch-up) while the pause ends.
                self.inner
                    .paused
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&handler);
            }
        }
        let _reopen = Reopen {
            bus: self,
            handler: &handler,
            slots: of.iter().map(|(_, s)| s.clone()).collect(),
        };
        // Live deliveries stop here: each is skipped (not recorded), so it stays pending.
        for (_, slot) in &of {
            if let Some(gate) = &slot.paused {
                gate.store(true, SeqCst);
            }
        }
        store.flush().await?;
        if let Some(reset) = reset {
            reset();
        }
        let mut total = 0;
        for (info, slot) in &of {
            if fresh {
                store.reset(slot.name(), info.name).await?;
                total += store.count(&StoreQuery::all().name(info.name).map_err(|e| {
                    StoreError::Backend(format!("an event name is not a pattern: {e}"))
                })?)? as u64;
            } else {
                total += store.lag(slot.name(), info.name)?.0;
            }
        }
        // The rebuild delivers with the gate open for itself: its own copies of the slots.
        let open: Vec<(&'static EventInfo, Slot)> = of
            .iter()
            .map(|(info, slot)| {
                let mut slot = slot.clone();
                slot.paused = None;
                (*info, slot)
            })
            .collect();
        let mut report = RebuildReport::default();
        // One pass over what is stored (and whatever arrives meanwhile); then the boundary;
        // then a pass up to the boundary for what arrived during the first.
        self.deliver_pending(&open, None, &mut report, &mut total, &mut progress)
            .await?;
        let boundary = {
            // Under the lock the live path checks: an event appended before this read is at
            // or below the boundary and stays the rebuild's; one appended after it goes live.
            let mut rebuilds = self
                .inner
                .rebuilds
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let newest = store
                .read(&StoreQuery::all().newest_first().limit(1))?
                .first()
                .and_then(row_sequence)
                .unwrap_or(0);
            rebuilds.insert(handler.clone(), Some(newest));
            newest
        };
        self.deliver_pending(
            &open,
            Some(boundary),
            &mut report,
            &mut total,
            &mut progress,
        )
        .await?;
        report.switched_at = boundary;
        store.flush().await?;
        for (info, slot) in &open {
            store.checkpoint(slot.name(), info.name).await?;
        }
        Ok(report)
    }

    /// Delivers to the slots every pending event (at or below `boundary`, when set), a
    /// page at a time per event type.
    async fn deliver_pending(
        &self,
        open: &[(&'static EventInfo, Slot)],
        boundary: Option<u64>,
        report: &mut RebuildReport,
        total: &mut u64,
        progress: &mut Option<Box<dyn FnMut(RebuildProgress) + Send + '_>>,
    ) -> Result<(), StoreError> {
        let Some(store) = self.inner.store.as_deref() else {
            return Ok(());
        };
        for (info, slot) in open {
            let mut after = 0;
            loop {
                store.flush().await?;
                let rows = store.undelivered(slot.name(), info.name, after, PAGE)?;
                let full = rows.len() == PAGE;
                let mut past = false;
                for row in rows {
                    let Some(sequence) = row_sequence(&row) else {
                        return Err(row.err().unwrap_or(StoreError::Closed));
                    };
                    after = after.max(sequence);
                    if boundary.is_some_and(|b| sequence > b) {
                        past = true;
                        break;
                    }
                    let decoded = row
                        .map_err(|e| e.to_string())
                        .and_then(|stored| self.decode_stored(&stored, Some(info)));
                    match decoded {
                        Ok((event, meta)) => {
                            let ctx = Context {
                                bus: self.clone(),
                                meta,
                                attempt: 1,
                            };
                            run_one(slot, &*event, &ctx).await;
                            report.events += 1;
                            *total = (*total).max(report.events);
                            if let Some(progress) = progress {
                                progress(RebuildProgress {
                                    done: report.events,
                                    total: *total,
                                    sequence,
                                });
                            }
                        }
                        Err(reason) => {
                            tracing::error!(
                                sequence, event = info.name, handler = slot.name(), %reason,
                                "a stored event cannot be delivered by the rebuild; it stays pending"
                            );
                            report.unreadable += 1;
                        }
                    }
                }
                if past || !full {
                    break;
                }
            }
        }
        Ok(())
    }

    /// How far each durable handler is behind the log: per handler and event type, the
    /// stored events it has not finished and the age of the oldest. A delivery whose
    /// record is still on its way to the store counts as not finished.
    ///
    /// # Errors
    /// When the bus has no store ([`StoreError::Closed`]) or it cannot be read.
    pub fn lag(&self) -> Result<Vec<Lag>, StoreError> {
        let Some(store) = self.inner.store.as_deref() else {
            return Err(StoreError::Closed);
        };
        self.inner
            .durable
            .iter()
            .map(|(info, slot)| {
                let (behind, oldest) = store.lag(slot.name(), info.name)?;
                Ok(Lag {
                    handler: slot.name().to_owned(),
                    event: info.name,
                    behind,
                    oldest: oldest.map(|t| UNIX_EPOCH + Duration::from_nanos(t)),
                    rebuilding: self.is_rebuilding(slot.name()),
                    paused: self.is_paused(slot.name()),
                })
            })
            .collect()
    }
}
