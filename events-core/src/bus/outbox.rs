//! The outbox: with a store and a transport, `publish` can resolve on the local commit,
//! and a forwarder sends committed events to the broker in commit order.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use super::{Bus, Inner};
use crate::envelope::Meta;
use crate::outbox::{Backlog, ForwarderState, OutboxOptions, OutboxStatus};
use crate::store::{StoreError, StoredEvent};
use crate::transport::{Outgoing, SendError};

/// A bus's forwarder: shared by the bus and its task.
pub(crate) struct Forwarder {
    pub(crate) options: OutboxOptions,
    /// This process's identity in claims.
    owner: String,
    partition: String,
    wake: Notify,
    state: Mutex<ForwarderState>,
    forwarded: AtomicU64,
    duplicates: AtomicU64,
    failed_sends: AtomicU64,
    stuck: AtomicU64,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// When observers last heard from the forwarder.
    reported: Mutex<Option<std::time::Instant>>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("owner", &self.owner)
            .field("partition", &self.partition)
            .finish_non_exhaustive()
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

impl Forwarder {
    pub(crate) fn new(options: OutboxOptions, source: &str) -> Forwarder {
        let partition = options
            .partition
            .clone()
            .unwrap_or_else(|| source.to_owned());
        Forwarder {
            options,
            owner: crate::EventId::new().to_string(),
            partition,
            wake: Notify::new(),
            state: Mutex::new(ForwarderState::Starting),
            forwarded: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            failed_sends: AtomicU64::new(0),
            stuck: AtomicU64::new(0),
            task: Mutex::new(None),
            reported: Mutex::new(None),
        }
    }

    pub(crate) fn partition(&self) -> &str {
        &self.partition
    }

    /// A publish committed an entry: the next round starts now.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Sets the state; whether it changed (in kind: a new reason or wait is not a change).
    fn set_state(&self, state: ForwarderState) -> bool {
        let mut current = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let changed = std::mem::discriminant(&*current) != std::mem::discriminant(&state);
        *current = state;
        changed
    }

    fn status(&self, backlog: Backlog) -> OutboxStatus {
        OutboxStatus {
            backlog,
            state: self.state(),
            forwarded: self.forwarded.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
            failed_sends: self.failed_sends.load(Relaxed),
            stuck: self.stuck.load(Relaxed),
        }
    }

    /// Tells the observers: on a change of state, else at most once a second.
    fn report(&self, inner: &Inner, changed: bool) {
        if inner.observers.is_empty() {
            return;
        }
        let now = std::time::Instant::now();
        {
            let mut last = self.reported.lock().unwrap_or_else(|p| p.into_inner());
            if !changed && last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
                return;
            }
            *last = Some(now);
        }
        let backlog = inner
            .store
            .as_ref()
            .and_then(|s| s.outbox())
            .map(|o| o.backlog().unwrap_or_default())
            .unwrap_or_default();
        inner.observers.outbox(&self.status(backlog));
    }

    fn state(&self) -> ForwarderState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Starts the forwarding task on the current runtime; it holds the bus weakly and ends
    /// with it.
    pub(crate) fn start(bus: &Bus, runtime: &tokio::runtime::Handle) {
        let Some(forwarder) = bus.inner.forwarder.clone() else {
            return;
        };
        let weak = Arc::downgrade(&bus.inner);
        let task = runtime.spawn(forward(weak, Arc::clone(&forwarder)));
        *forwarder.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
    }
}

/// What went wrong in a round.
enum RoundError {
    Store(StoreError),
    Send(SendError),
}

/// The forwarder's loop: rounds while there is something to send, a wait for a publish
/// (or the poll interval) when there is not, a growing back-off while rounds fail.
async fn forward(bus: Weak<Inner>, forwarder: Arc<Forwarder>) {
    let options = forwarder.options.clone();
    let mut backoff = options.min_backoff;
    loop {
        let Some(inner) = bus.upgrade() else {
            return;
        };
        match drain(&inner, &forwarder).await {
            Ok(()) => {
                backoff = options.min_backoff;
                drop(inner);
                let _ = tokio::time::timeout(options.poll, forwarder.wake.notified()).await;
            }
            Err(e) => {
                let wait = jitter(backoff);
                let changed = forwarder.set_state(match e {
                    RoundError::Send(e) => {
                        let reason = crate::text::clip(&e.to_string(), 300);
                        tracing::warn!(%reason, retry_in = ?wait, "the outbox cannot reach the broker; backing off");
                        ForwarderState::BackingOff {
                            reason,
                            retry_in: wait,
                        }
                    }
                    RoundError::Store(e) => {
                        let reason = crate::text::clip(&e.to_string(), 300);
                        tracing::error!(%reason, retry_in = ?wait, "the outbox cannot read the store; backing off");
                        ForwarderState::Error {
                            reason,
                            retry_in: wait,
                        }
                    }
                });
                forwarder.report(&inner, changed);
                drop(inner);
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(options.max_backoff);
            }
        }
    }
}

/// Between three quarters and the whole of `wait`, so that processes do not retry in step.
fn jitter(wait: Duration) -> Duration {
    let spread = wait / 4;
    let nanos = u64::try_from(spread.as_nanos()).unwrap_or(u64::MAX);
    let random = crate::EventId::new().as_uuid().as_u64_pair().1;
    wait - spread + Duration::from_nanos(random.checked_rem(nanos.max(1)).unwrap_or(0))
}

/// Rounds until nothing is left: each claims the oldest entries above what is in flight,
/// sends them pipelined, and hands the acknowledged ones to the store for removal, which
/// runs while the next round is claimed and sent.
async fn drain(inner: &Inner, forwarder: &Forwarder) -> Result<(), RoundError> {
    let (Some(store), Some(transport)) = (&inner.store, &inner.transport) else {
        return Ok(());
    };
    let Some(outbox) = store.outbox() else {
        return Ok(());
    };
    let options = &forwarder.options;
    let mut after = 0;
    let mut removing: Option<crate::store::StoreFuture<'_, ()>> = None;
    loop {
        let claimed = outbox
            .claim(
                &forwarder.owner,
                &forwarder.partition,
                after,
                options.batch,
                options.lease,
            )
            .await;
        let rows = match claimed {
            Ok(rows) => rows,
            Err(e) => {
                if let Some(r) = removing.take() {
                    let _ = r.await;
                }
                return Err(RoundError::Store(e));
            }
        };
        let Some(last) = rows.iter().filter_map(crate::store::row_sequence).max() else {
            return match removing.take() {
                Some(r) => r.await.map_err(RoundError::Store),
                None => Ok(()),
            };
        };
        let (sent, failed) = round(inner, forwarder, transport.as_ref(), rows).await;
        // The previous round's removal ran meanwhile.
        if let Some(r) = removing.take() {
            r.await.map_err(RoundError::Store)?;
        }
        let count = sent.len();
        removing = (!sent.is_empty()).then(|| outbox.forwarded(sent));
        if let Some(e) = failed {
            if let Some(r) = removing.take() {
                r.await.map_err(RoundError::Store)?;
            }
            return Err(RoundError::Send(e));
        }
        after = last;
        if count > 0 {
            let changed = forwarder.set_state(ForwarderState::Connected);
            forwarder.report(inner, changed);
        }
    }
}

/// One round: sends the claimed rows pipelined; the sequences the broker acknowledged, and
/// the first failure.
async fn round(
    inner: &Inner,
    forwarder: &Forwarder,
    transport: &dyn crate::transport::Transport,
    rows: Vec<crate::store::Row>,
) -> (Vec<u64>, Option<SendError>) {
    let mut events: Vec<(Meta, StoredEvent)> = Vec::with_capacity(rows.len());
    let mut stuck = 0;
    for row in rows {
        match row {
            Ok(stored) => match inner.catalog.find(&stored.name, stored.version) {
                Ok(info) => {
                    let mut stored = stored;
                    if let Some(payload) =
                        super::personal::wire_payload(inner.keys.as_ref(), info, &stored.payload)
                    {
                        stored.payload = payload;
                    }
                    events.push((Meta::restore(info, inner.source, &stored), stored));
                }
                Err(e) => {
                    stuck += 1;
                    tracing::error!(
                        sequence = stored.sequence, error = %e,
                        "an outbox entry's event type is not on this bus; it is left for a process that has it"
                    );
                }
            },
            Err(e) => {
                stuck += 1;
                tracing::error!(error = %e, "an outbox entry cannot be read; it is left in the store");
            }
        }
    }
    forwarder.stuck.fetch_add(stuck, Relaxed);
    if events.is_empty() {
        return (Vec::new(), None);
    }
    let messages = events
        .iter()
        .map(|(meta, stored)| Outgoing::stored(meta, &stored.payload))
        .collect();
    let results = transport.send_batch(messages).await;
    let mut acked = Vec::with_capacity(results.len());
    let mut failed = None;
    let mut duplicates = 0;
    for ((_, stored), result) in events.iter().zip(results) {
        match result {
            Ok(sent) => {
                duplicates += u64::from(sent.duplicate);
                acked.push(stored.sequence);
            }
            Err(e) => {
                forwarder.failed_sends.fetch_add(1, Relaxed);
                failed.get_or_insert(e);
            }
        }
    }
    forwarder.forwarded.fetch_add(acked.len() as u64, Relaxed);
    forwarder.duplicates.fetch_add(duplicates, Relaxed);
    (acked, failed)
}

impl Bus {
    /// Whether an `#[handler(inbox)]` slot already handled the event `meta` describes (its
    /// inbox has the key): then the delivery is skipped, and counted. A store that cannot
    /// be read lets the delivery through: the handler's own record, in its transaction,
    /// still refuses a second effect.
    pub(crate) fn in_inbox(&self, slot: &super::Slot, meta: &Meta) -> bool {
        if !slot.inbox {
            return false;
        }
        let Some(inbox) = self.inner.store.as_ref().and_then(|s| s.inbox()) else {
            return false;
        };
        let key = crate::outbox::InboxKey::new(
            slot.name(),
            meta.source(),
            crate::wire::cloudevents_id(meta),
        );
        match inbox.seen(&key) {
            Ok(seen) => {
                if seen {
                    self.inner.inbox_hits.fetch_add(1, Relaxed);
                    self.inner.observers.inbox_hit(meta, slot.name());
                }
                seen
            }
            Err(e) => {
                tracing::warn!(handler = slot.name(), error = %e, "the inbox cannot be read; the delivery goes to the handler");
                false
            }
        }
    }

    /// How many deliveries `#[handler(inbox)]` handlers were spared: their inbox had
    /// recorded the event already (a redelivery after a crash, a duplicate).
    pub fn inbox_hits(&self) -> u64 {
        self.inner.inbox_hits.load(Relaxed)
    }

    /// The outbox's state, backlog and counts ([`BusBuilder::outbox`](crate::BusBuilder::outbox));
    /// `None` without one.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn outbox(&self) -> Option<Result<OutboxStatus, StoreError>> {
        let forwarder = self.inner.forwarder.as_ref()?;
        let outbox = self.inner.store.as_ref()?.outbox()?;
        Some(outbox.backlog().map(|backlog| forwarder.status(backlog)))
    }

    /// Waits until the outbox's backlog is empty (every entry forwarded), checking every
    /// `every`; at once without an outbox. For a clean shutdown, and for tests.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub async fn drain_outbox(&self, every: Duration) -> Result<(), StoreError> {
        loop {
            let Some(status) = self.outbox() else {
                return Ok(());
            };
            match status?.backlog.events {
                0 => return Ok(()),
                _ => {
                    if let Some(f) = &self.inner.forwarder {
                        f.wake();
                    }
                    tokio::time::sleep(every).await;
                }
            }
        }
    }
}
