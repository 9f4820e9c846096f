//! The bus with a store: appending before dispatch, delivery records of durable handlers,
//! recovery after a crash, replay, and durable dead letters.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;

use super::dispatch::Outcomes;
use super::run::{run, run_one};
use super::{Bus, PublishError, Slot, Target};
use crate::context::Context;
use crate::dead_letter::DeadLetter;
use crate::envelope::{Meta, Selection};
use crate::event::{AnyEvent, EventInfo};
use crate::outbox::Ack;
use crate::receipt::Outcome;
use crate::store::{
    EventStore, PAGE, Row, StoreError, StoreQuery, StoredDeadLetter, StoredEvent, row_sequence,
};

/// What [`Bus::recover`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// Stored events delivered to at least one durable handler.
    pub events: usize,
    /// Deliveries made (one event to one durable handler).
    pub deliveries: usize,
    /// Deliveries that could not be made: the stored row is unreadable (a damaged store),
    /// or the event cannot be decoded for its durable handler (an unknown event version, a
    /// payload that no longer deserializes). They stay pending and are logged with their
    /// sequence; the other events are delivered.
    pub unreadable: usize,
    /// The sequences of those events (the first [`Recovery::MAX_LISTED`]).
    pub unreadable_sequences: Vec<u64>,
}

impl Recovery {
    /// How many unreadable sequences a report lists at most.
    pub const MAX_LISTED: usize = 1000;

    fn unreadable(&mut self, sequence: u64) {
        self.unreadable += 1;
        if self.unreadable_sequences.len() < Recovery::MAX_LISTED
            && self.unreadable_sequences.last() != Some(&sequence)
        {
            self.unreadable_sequences.push(sequence);
        }
    }
}

/// One durable handler's pending events, a page at a time, for [`Bus::recover`]'s merge.
struct Pending {
    /// Its index in the bus's durable handlers.
    handler: usize,
    page: std::collections::VecDeque<Row>,
    /// The last sequence read.
    after: u64,
    /// Whether the store has no more.
    done: bool,
}

/// How far a [`Replay`] has come, given to its progress callback after each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayProgress {
    /// Events replayed so far (including skipped ones).
    pub done: usize,
    /// Events the query selected.
    pub total: usize,
    /// The sequence number of the last event.
    pub sequence: u64,
}

/// What a [`Replay`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayReport {
    /// Events delivered again.
    pub events: usize,
    /// Deliveries made (one event to one handler).
    pub deliveries: usize,
    /// Events skipped (and logged with their sequence): the stored row is unreadable, their
    /// type (name and version) is not on this bus, or their payload no longer deserializes.
    pub skipped: usize,
    /// Handler calls that failed (they went through retries and dead letters as usual).
    pub failures: usize,
}

/// Why a replay could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The bus has no store to replay from.
    #[error("the bus has no event store to replay from: build it with `BusBuilder::store`")]
    NoStore,
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A handler named in [`Replay::only`] is not on this bus.
    #[error("no handler named `{0}` on this bus")]
    UnknownHandler(String),
    /// A handler named in [`Replay::only`] is `#[handler(replay = false)]`.
    #[error("handler `{0}` is `#[handler(replay = false)]`: replay never delivers to it")]
    NotReplayable(String),
}

impl Selection {
    fn allows(&self, slot: &Slot) -> bool {
        matches!(slot.target, Target::Upcast { .. })
            || (slot.replay
                && self
                    .only
                    .as_ref()
                    .is_none_or(|only| only.contains(slot.name())))
    }

    /// The slots of `slots` a replay delivers to, in their order.
    pub(crate) fn choose(&self, slots: &[Slot]) -> Vec<Slot> {
        slots.iter().filter(|s| self.allows(s)).cloned().collect()
    }
}

/// Serializes the payload and hands the record to the store.
#[inline(never)]
fn begin_append<'a>(
    bus: &Bus,
    store: &'a dyn EventStore,
    event: &AnyEvent,
    meta: &Meta,
) -> crate::store::StoreFuture<'a, u64> {
    match bus.sealed_text(event) {
        Ok(payload) => store.append(StoredEvent::of(meta, payload)),
        Err(e) => Box::pin(std::future::ready(Err(StoreError::Backend(format!(
            "the payload cannot be serialized: {e}"
        ))))),
    }
}

/// Records, for each durable slot that is done with the event, that it is: every outcome
/// but a pending retry or an async handler skipped by the blocking API (a dead letter is
/// done: its fate is the dead-letter queue). A replay records nothing: its handlers see
/// `is_replay()` and may skip their side effects, so it is not their delivery.
pub(crate) fn record_deliveries(slots: &[Slot], ctx: &Context, sequence: u64, outcomes: &Outcomes) {
    let Some(store) = &ctx.bus.inner.store else {
        return;
    };
    if ctx.meta.replay().is_some() {
        return;
    }
    for (i, slot) in slots.iter().enumerate() {
        if slot.durable && !outcomes.is_pending(i) {
            store.record_delivery(slot.name(), sequence);
        }
    }
}

impl Outcomes {
    /// Whether slot `index` is not done with the event yet.
    fn is_pending(&self, index: usize) -> bool {
        let bit = u32::try_from(index)
            .ok()
            .and_then(|i| 1u64.checked_shl(i))
            .unwrap_or(0);
        self.skipped_async & bit != 0
            || self.exceptions.iter().any(|(i, o)| {
                *i == index
                    && matches!(
                        o,
                        Outcome::Retrying { .. } | Outcome::SkippedAsync | Outcome::Paused
                    )
            })
    }
}

impl Bus {
    /// The bus's event store, to query its history: `None` without one.
    pub fn store(&self) -> Option<&dyn EventStore> {
        self.inner.store.as_deref()
    }

    /// Appends an event to the store; resolves with its sequence number. Out of line, and
    /// the future holds only the store's boxed one: a bus without a store pays one branch.
    pub(crate) async fn append(
        &self,
        store: &dyn EventStore,
        event: &AnyEvent,
        meta: &Meta,
    ) -> Result<u64, PublishError> {
        let name = meta.name();
        match begin_append(self, store, event, meta).await {
            Ok(sequence) => Ok(sequence),
            Err(source) => Err(self.refused(name, PublishError::Store { name, source })),
        }
    }

    /// What a bus with a store or a transport does before (or instead of) dispatching: the
    /// store appends (and its sequence goes into the envelope); the transport sends the event
    /// away, and then it is handled by consumers, not here: `Some(stream sequence)`. Boxed
    /// and out of line, so a plain bus carries none of it.
    #[cold]
    #[inline(never)]
    pub(crate) fn outbound<'a>(
        &'a self,
        event: &'a AnyEvent,
        meta: &'a mut Meta,
    ) -> Pin<Box<dyn Future<Output = Result<Option<u64>, PublishError>> + Send + 'a>> {
        Box::pin(async move {
            let remote = self.is_remote(meta.name());
            if remote && self.acks_locally(meta)? {
                let sequence = self.append_to_outbox(event, meta).await?;
                meta.set_sequence(sequence);
                return Ok(Some(sequence));
            }
            if let Some(store) = &self.inner.store {
                let sequence = match begin_append(self, &**store, event, meta).await {
                    Ok(sequence) => sequence,
                    // A remote event published again with its id after `Unconfirmed`: the
                    // store has it, and the broker stores the send once.
                    Err(StoreError::Duplicate { sequence, .. }) if remote => sequence,
                    Err(source) => {
                        let name = meta.name();
                        return Err(self.refused(name, PublishError::Store { name, source }));
                    }
                };
                meta.set_sequence(sequence);
            }
            if remote {
                return self.send_remote(event, meta).await.map(Some);
            }
            Ok(None)
        })
    }

    /// [`publish_batch`](Self::publish_batch) of events that leave the process: every
    /// store write started before the first is awaited (one group commit), and without the
    /// outbox one pipelined send.
    #[cold]
    #[inline(never)]
    pub(crate) async fn publish_remote_batch<E: crate::event::Event>(
        &self,
        events: Vec<E>,
    ) -> Vec<Result<crate::receipt::Receipt, PublishError>> {
        let mut items: Vec<(E, Context)> = Vec::with_capacity(events.len());
        let mut out: Vec<Option<Result<crate::receipt::Receipt, PublishError>>> =
            Vec::with_capacity(events.len());
        let mut slots = Vec::with_capacity(events.len());
        for event in events {
            match self.context::<E>(None, crate::options::NoOptions) {
                Ok(ctx) => {
                    slots.push(out.len());
                    out.push(None);
                    items.push((event, ctx));
                }
                Err(e) => out.push(Some(Err(e))),
            }
        }
        let local = match items.first() {
            Some((_, ctx)) => match self.acks_locally(&ctx.meta) {
                Ok(local) => local,
                Err(e) => {
                    let text = e.to_string();
                    let name = E::NAME;
                    return out
                        .into_iter()
                        .map(|r| {
                            r.unwrap_or_else(|| {
                                Err(PublishError::Transport {
                                    name,
                                    reason: text.clone(),
                                })
                            })
                        })
                        .collect();
                }
            },
            None => false,
        };
        // The store's writes, all started before the first is awaited.
        let name = E::NAME;
        let mut stored: Vec<Result<Option<u64>, PublishError>> = Vec::with_capacity(items.len());
        {
            let mut pending = Vec::with_capacity(items.len());
            for (event, ctx) in &items {
                pending.push(self.start_store_write(event, &ctx.meta, local));
            }
            for write in pending {
                stored.push(match write {
                    Some(Ok(future)) => match future.await {
                        Ok(sequence) => Ok(Some(sequence)),
                        Err(StoreError::Duplicate { sequence, .. }) => Ok(Some(sequence)),
                        Err(source) => {
                            Err(self.refused(name, PublishError::Store { name, source }))
                        }
                    },
                    Some(Err(e)) => Err(e),
                    None => Ok(None),
                });
            }
        }
        if local {
            if let Some(f) = &self.inner.forwarder {
                f.wake();
            }
        }
        for ((_, ctx), sequence) in items.iter_mut().zip(&stored) {
            if let Ok(Some(sequence)) = sequence {
                ctx.meta.set_sequence(*sequence);
            }
        }
        // Without the outbox, one pipelined send of what was stored.
        let mut sent: Vec<Option<Result<u64, PublishError>>> =
            std::iter::repeat_with(|| None).take(items.len()).collect();
        if !local {
            if let Some(transport) = &self.inner.transport {
                let (indices, messages): (Vec<usize>, Vec<_>) = items
                    .iter()
                    .zip(&stored)
                    .enumerate()
                    .filter(|(_, (_, s))| s.is_ok())
                    .map(|(i, ((event, ctx), _))| {
                        (
                            i,
                            crate::transport::Outgoing::new(event, &ctx.meta)
                                .sealed_with(self.sealing_key(event).ok().flatten()),
                        )
                    })
                    .unzip();
                let results = transport.send_batch(messages).await;
                for (i, result) in indices.into_iter().zip(results) {
                    sent[i] = Some(match result {
                        Ok(s) => Ok(s.sequence),
                        Err(crate::transport::SendError::NotSent(reason)) => {
                            Err(self.refused(name, PublishError::Transport { name, reason }))
                        }
                        Err(crate::transport::SendError::Unconfirmed(reason)) => Err(self.refused(
                            name,
                            PublishError::Unconfirmed {
                                name,
                                id: items[i].1.meta.id(),
                                reason,
                            },
                        )),
                    });
                }
            }
        }
        for (((_, ctx), stored), (slot, sent)) in items
            .into_iter()
            .zip(stored)
            .zip(slots.into_iter().zip(sent))
        {
            out[slot] = Some(match (stored, sent) {
                (Err(e), _) => Err(e),
                (Ok(_), Some(Err(e))) => Err(e),
                (Ok(_), Some(Ok(sequence))) => Ok(crate::receipt::Receipt::remote(ctx, sequence)),
                (Ok(sequence), None) => {
                    Ok(crate::receipt::Receipt::remote(ctx, sequence.unwrap_or(0)))
                }
            });
        }
        out.into_iter().flatten().collect()
    }

    /// The store write of one remote event of a batch, started now: with the outbox, the
    /// event and its entry; else the plain append, if there is a store. `None`: nothing to
    /// write.
    fn start_store_write<'a>(
        &'a self,
        event: &AnyEvent,
        meta: &Meta,
        outbox: bool,
    ) -> Option<Result<crate::store::StoreFuture<'a, u64>, PublishError>> {
        let store = self.inner.store.as_deref()?;
        let name = meta.name();
        let payload = match self.sealed_text(event) {
            Ok(payload) => payload,
            Err(e) => {
                let source = StoreError::Backend(format!("the payload cannot be serialized: {e}"));
                return Some(Err(self.refused(name, PublishError::Store { name, source })));
            }
        };
        let stored = StoredEvent::of(meta, payload);
        Some(Ok(match (outbox, store.outbox(), &self.inner.forwarder) {
            (true, Some(o), Some(f)) => o.append(stored, f.partition()),
            _ => store.append(stored),
        }))
    }

    /// Whether a remote event's publish resolves on the local commit (the outbox) rather
    /// than on the broker's ack: what it asked for, else the bus's default.
    fn acks_locally(&self, meta: &Meta) -> Result<bool, PublishError> {
        let forwarder = self.inner.forwarder.as_deref();
        let default = forwarder.map_or(Ack::Broker, |f| f.options.ack);
        match meta.ack().unwrap_or(default) {
            Ack::Broker => Ok(false),
            Ack::Local if forwarder.is_some() => Ok(true),
            Ack::Local => {
                let name = meta.name();
                Err(self.refused(
                    name,
                    PublishError::Transport {
                        name,
                        reason: "`Ack::Local` needs the outbox: build the bus with \
                                 `BusBuilder::outbox`"
                            .into(),
                    },
                ))
            }
        }
    }

    /// Commits a remote event with its outbox entry and wakes the forwarder; the store's
    /// sequence. An id already stored (a publish repeated after a crash) is that event.
    async fn append_to_outbox(&self, event: &AnyEvent, meta: &Meta) -> Result<u64, PublishError> {
        let name = meta.name();
        let refused = |source| self.refused(name, PublishError::Store { name, source });
        let (Some(store), Some(forwarder)) = (&self.inner.store, &self.inner.forwarder) else {
            return Err(refused(StoreError::Closed));
        };
        let Some(outbox) = store.outbox() else {
            return Err(refused(StoreError::Closed));
        };
        let payload = self.sealed_text(event).map_err(|e| {
            refused(StoreError::Backend(format!(
                "the payload cannot be serialized: {e}"
            )))
        })?;
        let appended = outbox
            .append(StoredEvent::of(meta, payload), forwarder.partition())
            .await;
        match appended {
            Ok(sequence) => {
                forwarder.wake();
                Ok(sequence)
            }
            Err(StoreError::Duplicate { sequence, .. }) => Ok(sequence),
            Err(source) => Err(refused(source)),
        }
    }

    /// With a transport, whether events named `name` leave the process.
    pub(crate) fn is_remote(&self, name: &str) -> bool {
        // The bus's own audit records stay in the process (and its store).
        self.inner
            .transport
            .as_ref()
            .is_some_and(|t| !t.is_local(name))
            && !crate::security::is_audit_record(name)
    }

    /// Sends an event through the transport; resolves with the broker's sequence.
    #[cold]
    #[inline(never)]
    fn send_remote<'a>(
        &'a self,
        event: &'a AnyEvent,
        meta: &'a Meta,
    ) -> Pin<Box<dyn Future<Output = Result<u64, PublishError>> + Send + 'a>> {
        Box::pin(async move {
            let name = meta.name();
            let Some(transport) = &self.inner.transport else {
                return Err(PublishError::Transport {
                    name,
                    reason: "the bus has no transport".into(),
                });
            };
            let message = crate::transport::Outgoing::new(event, meta)
                .sealed_with(self.sealing_key(event).ok().flatten());
            transport
                .send(message)
                .await
                .map(|sent| sent.sequence)
                .map_err(|e| {
                    let error = match e {
                        crate::transport::SendError::NotSent(reason) => {
                            PublishError::Transport { name, reason }
                        }
                        crate::transport::SendError::Unconfirmed(reason) => {
                            PublishError::Unconfirmed {
                                name,
                                id: meta.id(),
                                reason,
                            }
                        }
                    };
                    self.refused(name, error)
                })
        })
    }

    /// [`outbound`](Self::outbound) from the blocking API: a store is waited for on this
    /// thread; an event for the transport is refused (its ack needs the runtime).
    #[cold]
    #[inline(never)]
    pub(crate) fn outbound_blocking(
        &self,
        event: &AnyEvent,
        meta: &mut Meta,
    ) -> Result<Option<u64>, PublishError> {
        if self.is_remote(meta.name()) && self.acks_locally(meta)? {
            let sequence = crate::store::block_on(self.append_to_outbox(event, meta))?;
            meta.set_sequence(sequence);
            return Ok(Some(sequence));
        }
        if self.is_remote(meta.name()) {
            let name = meta.name();
            return Err(self.refused(
                name,
                PublishError::Transport {
                    name,
                    reason: "the blocking API cannot wait for the broker's acknowledgement; \
                             publish with `.await`, acknowledge on the local commit \
                             (`BusBuilder::outbox`), or make the event local on the transport \
                             (NATS: `NatsOptions::local`)"
                        .into(),
                },
            ));
        }
        if let Some(store) = &self.inner.store {
            let sequence = self.append_blocking(&**store, event, meta)?;
            meta.set_sequence(sequence);
        }
        Ok(None)
    }

    /// [`append`](Self::append) from the blocking API: waits on this thread.
    #[cold]
    #[inline(never)]
    pub(crate) fn append_blocking(
        &self,
        store: &dyn EventStore,
        event: &AnyEvent,
        meta: &Meta,
    ) -> Result<u64, PublishError> {
        crate::store::block_on(self.append(store, event, meta))
    }

    /// Keeps a dead letter in the store, if the bus has one.
    pub(crate) fn store_dead_letter(&self, letter: &DeadLetter) {
        let Some(store) = &self.inner.store else {
            return;
        };
        let payload = letter.payload.to_string();
        let mut event = StoredEvent::of(&letter.meta, payload);
        event.sequence = letter.sequence.unwrap_or(0);
        store.put_dead_letter(StoredDeadLetter {
            id: letter.id,
            event,
            handler: letter.handler.clone(),
            error: letter.error.clone(),
            permanent: letter.permanent,
            attempts: letter.attempts,
            first_failure: crate::store::nanos_of(letter.first_failure),
            last_failure: crate::store::nanos_of(letter.last_failure),
        });
    }

    /// Forgets a dead letter in the store, if the bus has one.
    pub(crate) fn unstore_dead_letter(&self, id: u64) {
        if let Some(store) = &self.inner.store {
            store.remove_dead_letter(id);
        }
    }

    /// Loads the store's dead letters into the bus's queue (at `build()`).
    pub(crate) fn load_dead_letters(&self) {
        let Some(store) = &self.inner.store else {
            return;
        };
        let letters = match store.dead_letters(self.inner.dead_letters.capacity()) {
            Ok(letters) => letters,
            Err(e) => {
                tracing::error!(error = %e, "the store's dead letters could not be read");
                return;
            }
        };
        let mut restored = Vec::new();
        for l in letters {
            let info = match self.inner.catalog.find(&l.event.name, l.event.version) {
                Ok(info) => info,
                Err(e) => {
                    tracing::warn!(
                        dead_letter = l.id, error = %e,
                        "a stored dead letter's event type is not on this bus; it stays in the store"
                    );
                    continue;
                }
            };
            let Ok(payload) = l.event.payload_json() else {
                tracing::warn!(
                    dead_letter = l.id,
                    "a stored dead letter's payload is not JSON"
                );
                continue;
            };
            restored.push(DeadLetter {
                id: l.id,
                meta: Meta::restore(info, self.inner.source, &l.event),
                sequence: (l.event.sequence != 0).then_some(l.event.sequence),
                payload,
                handler: l.handler,
                error: l.error,
                permanent: l.permanent,
                attempts: l.attempts,
                first_failure: crate::store::time_of(l.first_failure),
                last_failure: crate::store::time_of(l.last_failure),
            });
        }
        let last = store.last_dead_letter_id().unwrap_or(0);
        self.inner.dead_letters.restore(restored, last);
    }

    /// The event `stored` as a value of `target`'s type (upcast along the chain if it was
    /// stored as an older version), with its envelope.
    pub(crate) fn decode_stored(
        &self,
        stored: &StoredEvent,
        target: Option<&'static EventInfo>,
    ) -> Result<(Box<AnyEvent>, Meta), String> {
        let info = self
            .inner
            .catalog
            .find(&stored.name, stored.version)
            .map_err(|e| e.to_string())?;
        let json = stored.payload_json().map_err(|e| e.to_string())?;
        let event = self.unsealed(|| (info.decode)(json, true)).map_err(|e| {
            format!(
                "stored `{}` v{} does not deserialize: {e}",
                stored.name, stored.version
            )
        })?;
        let (event, info) = match target {
            Some(target) => self.upcast_to(event, target)?,
            None => (event, info),
        };
        Ok((event, Meta::restore(info, self.inner.source, stored)))
    }

    /// `event` converted along its upcast chain into a value of `target`'s type (itself if
    /// it already is one).
    pub(crate) fn upcast_to(
        &self,
        mut event: Box<AnyEvent>,
        target: &'static EventInfo,
    ) -> Result<(Box<AnyEvent>, &'static EventInfo), String> {
        let mut info = event.info();
        while info.type_id() != target.type_id() {
            let route = self.route(info.type_id(), info);
            let step = self
                .slots_of(&route, info.type_id())
                .iter()
                .find_map(|s| match &s.target {
                    Target::Upcast { to, convert } => Some((*to, *convert)),
                    _ => None,
                });
            let Some((to, convert)) = step else {
                return Err(format!(
                    "no upcast from `{}` v{} to v{}",
                    info.name, info.version, target.version
                ));
            };
            event = convert(&*event)?;
            info = to;
        }
        Ok((event, info))
    }

    /// Delivers every stored event that a durable handler (`#[handler(durable)]`) has not
    /// finished: those in flight when the process stopped, those whose retry was pending,
    /// and the whole history for a durable handler added since. Oldest first, each to the
    /// durable handlers that miss it (with their retries and dead letters as usual); then
    /// moves each handler's checkpoint. At-least-once: a delivery that ran but whose record
    /// was not yet written runs again, so durable handlers must tolerate duplicates (the
    /// event id is stable; see [`Deduplicator`](crate::Deduplicator)).
    ///
    /// Without a store there is nothing to recover.
    ///
    /// # Errors
    /// When the store cannot be read or written.
    pub async fn recover(&self) -> Result<Recovery, StoreError> {
        let Some(store) = &self.inner.store else {
            return Ok(Recovery::default());
        };
        // Delivery records still on their way to the store would look like missed ones.
        store.flush().await?;
        // Each durable handler's pending events are read a page at a time and merged by
        // sequence: memory holds a page per handler, whatever the backlog.
        let mut pending: Vec<Pending> = (0..self.inner.durable.len())
            .map(|handler| Pending {
                handler,
                page: Default::default(),
                after: 0,
                done: false,
            })
            .collect();
        let mut report = Recovery::default();
        loop {
            for p in &mut pending {
                if p.page.is_empty() && !p.done {
                    let (info, slot) = &self.inner.durable[p.handler];
                    if self.is_rebuilding(slot.name()) || self.is_paused(slot.name()) {
                        // `Bus::rebuild` delivers its history; `Bus::resume`, a paused one's.
                        p.done = true;
                        continue;
                    }
                    let rows = store.undelivered(slot.name(), info.name, p.after, PAGE)?;
                    p.done = rows.len() < PAGE;
                    for row in rows {
                        match row_sequence(&row) {
                            Some(sequence) => {
                                p.after = p.after.max(sequence);
                                p.page.push_back(row);
                            }
                            None => return Err(row.err().unwrap_or(StoreError::Closed)),
                        }
                    }
                }
            }
            let Some(sequence) = pending
                .iter()
                .filter_map(|p| p.page.front().and_then(row_sequence))
                .min()
            else {
                break;
            };
            let mut delivered = false;
            for p in &mut pending {
                if p.page.front().and_then(row_sequence) != Some(sequence) {
                    continue;
                }
                let Some(row) = p.page.pop_front() else {
                    continue;
                };
                let (info, slot) = &self.inner.durable[p.handler];
                let decoded = row
                    .map_err(|e| e.to_string())
                    .and_then(|stored| self.decode_stored(&stored, Some(info)));
                match decoded {
                    Ok((_, meta)) if self.in_inbox(slot, &meta) => {
                        // Handled before the crash, in the handler's own transaction.
                        store.record_delivery(slot.name(), sequence);
                    }
                    Ok((event, meta)) => {
                        let ctx = Context {
                            bus: self.clone(),
                            meta,
                            attempt: 1,
                        };
                        run_one(slot, &*event, &ctx).await;
                        report.deliveries += 1;
                        delivered = true;
                    }
                    Err(reason) => {
                        tracing::error!(
                            sequence, event = info.name, handler = slot.name(), %reason,
                            "a stored event cannot be recovered for a durable handler; it stays pending"
                        );
                        report.unreadable(sequence);
                    }
                }
            }
            report.events += usize::from(delivered);
            // Delivery records queue for the store's writer: let it catch up every page, so
            // that the queue does not grow with the backlog when the disk is slower.
            if delivered && report.events % PAGE == 0 {
                store.flush().await?;
            }
        }
        store.flush().await?;
        for (info, slot) in &self.inner.durable {
            store.checkpoint(slot.name(), info.name).await?;
        }
        Ok(report)
    }

    /// Delivers the stored events `query` selects again, oldest first (or as the query
    /// orders them), to every handler of each event that allows replay, or only to those
    /// chosen with [`Replay::only`]. Handlers marked `#[handler(replay = false)]` are never
    /// called, and naming one is an error. Handlers see [`Context::is_replay`]. Events the
    /// handlers publish are new events.
    ///
    /// ```no_run
    /// # async fn run(bus: events::Bus) -> Result<(), events::ReplayError> {
    /// use events::store::StoreQuery;
    /// let report = bus
    ///     .replay(StoreQuery::all().from_sequence(1))
    ///     .only(["shop::analytics::on_order"])
    ///     .on_progress(|p| eprint!("\r{}/{}", p.done, p.total))
    ///     .await?;
    /// println!("replayed {} events", report.events);
    /// # Ok(()) }
    /// ```
    pub fn replay(&self, query: StoreQuery) -> Replay<'_> {
        Replay {
            bus: self,
            query,
            only: None,
            progress: None,
        }
    }

    async fn run_replay(
        &self,
        query: StoreQuery,
        only: Option<Vec<String>>,
        mut progress: Option<Box<dyn FnMut(ReplayProgress) + Send + '_>>,
    ) -> Result<ReplayReport, ReplayError> {
        let Some(store) = &self.inner.store else {
            return Err(ReplayError::NoStore);
        };
        if let Some(only) = &only {
            for name in only {
                let slot = self
                    .inner
                    .routes
                    .load()
                    .values()
                    .flat_map(|s| s.iter())
                    .find(|s| s.name() == name)
                    .cloned();
                match slot {
                    None => return Err(ReplayError::UnknownHandler(name.clone())),
                    Some(s) if !s.replay => return Err(ReplayError::NotReplayable(name.clone())),
                    Some(_) => {}
                }
            }
        }
        // What the audit record says, when there is one.
        let asked = self
            .audits()
            .then(|| (format!("{query:?}"), only.clone().unwrap_or_default()));
        let selection = Arc::new(Selection {
            only: only.map(|o| o.into_iter().collect()),
        });
        // What the query selects now, in either order: events appended meanwhile (by the
        // replayed handlers, or by other publishers) are neither replayed nor counted.
        let mut page = query;
        let newest = store
            .read(&StoreQuery::all().newest_first().limit(1))?
            .first()
            .and_then(row_sequence)
            .unwrap_or(0);
        page.to_sequence = Some(page.to_sequence.map_or(newest, |s| s.min(newest)));
        let total = store.count(&page)?;
        let mut left = total;
        let mut done = 0;
        let mut report = ReplayReport::default();
        // A page at a time: memory does not grow with the history.
        while left > 0 {
            page.limit = Some(left.min(PAGE));
            let rows = store.read(&page)?;
            let Some(last) = rows.last().and_then(row_sequence) else {
                break;
            };
            let full = rows.len() == PAGE;
            left = left.saturating_sub(rows.len());
            for row in rows {
                let sequence = row_sequence(&row).unwrap_or(0);
                self.replay_one(row, &selection, &mut report).await;
                done += 1;
                if let Some(progress) = &mut progress {
                    progress(ReplayProgress {
                        done,
                        total,
                        sequence,
                    });
                }
            }
            if !full || !page.after(last) {
                break;
            }
        }
        #[cfg(feature = "macros")]
        if let Some((query, only)) = asked {
            self.audit(crate::audit::Replayed {
                query,
                only,
                events: report.events as u64,
                deliveries: report.deliveries as u64,
                failures: report.failures as u64,
            });
        }
        #[cfg(not(feature = "macros"))]
        let _ = asked;
        Ok(report)
    }

    /// Replays one stored row (or skips it, logged, when it cannot be read or decoded).
    async fn replay_one(&self, row: Row, selection: &Arc<Selection>, report: &mut ReplayReport) {
        let sequence = row_sequence(&row).unwrap_or(0);
        let decoded = row
            .map_err(|e| e.to_string())
            .and_then(|stored| self.decode_stored(&stored, None));
        match decoded {
            Ok((event, mut meta)) => {
                let type_id = meta.info().type_id();
                meta.set_replay(Some(Arc::clone(selection)));
                let ctx = Context {
                    bus: self.clone(),
                    meta,
                    attempt: 1,
                };
                let route = self.route(type_id, ctx.meta.info());
                let chosen = selection.choose(self.slots_of(&route, type_id));
                let mut outcomes = Outcomes::default();
                run(&chosen, &*event, &ctx, &mut outcomes).await;
                report.events += 1;
                report.deliveries += chosen
                    .iter()
                    .filter(|s| !matches!(s.target, Target::Upcast { .. }))
                    .count();
                report.failures += outcomes
                    .exceptions
                    .iter()
                    .filter(|(_, o)| o.is_failure())
                    .count();
            }
            Err(reason) => {
                tracing::warn!(sequence, %reason, "a stored event was skipped by replay");
                report.skipped += 1;
            }
        }
    }
}

/// A replay being set up: made by [`Bus::replay`], run by awaiting it.
#[must_use = "a replay does nothing until it is awaited"]
pub struct Replay<'a> {
    bus: &'a Bus,
    query: StoreQuery,
    only: Option<Vec<String>>,
    progress: Option<Box<dyn FnMut(ReplayProgress) + Send + 'a>>,
}

impl<'a> Replay<'a> {
    /// Delivers only to these handlers (by name, as [`HandlerInfo::name`](crate::HandlerInfo::name)
    /// gives it); each must exist and allow replay.
    pub fn only(mut self, handlers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.only = Some(handlers.into_iter().map(Into::into).collect());
        self
    }

    /// Called after each event with how far the replay has come.
    pub fn on_progress(mut self, progress: impl FnMut(ReplayProgress) + Send + 'a) -> Self {
        self.progress = Some(Box::new(progress));
        self
    }
}

impl std::fmt::Debug for Replay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("query", &self.query)
            .field("only", &self.only)
            .finish_non_exhaustive()
    }
}

impl<'a> IntoFuture for Replay<'a> {
    type Output = Result<ReplayReport, ReplayError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.bus.run_replay(self.query, self.only, self.progress))
    }
}

impl Meta {
    /// The envelope of a stored event, as it was published; `info` is the type it is
    /// decoded as (the stored version's, or a later one's after upcasting).
    pub(crate) fn restore(
        info: &'static EventInfo,
        source: &'static str,
        stored: &StoredEvent,
    ) -> Meta {
        Meta {
            id: stored.id,
            time: stored.time,
            info,
            source,
            extra: Some(Box::new(crate::envelope::Extra {
                correlation_id: stored.correlation_id,
                causation_id: stored.causation_id,
                depth: stored.depth,
                source: Some(stored.source.as_str().into()),
                target: stored.target.as_deref().map(Into::into),
                metadata: stored.metadata.clone(),
                priority: Some(stored.priority),
                expires_at: None,
                sequence: stored.sequence,
                replay: None,
                ack: None,
            })),
        }
    }
}
