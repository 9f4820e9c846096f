//! Events published inside the user's database transaction: [`Staged`].

use std::any::TypeId;

use super::dispatch::Outcomes;
use super::run::run;
use super::{Bus, PublishError};
use crate::context::Context;
use crate::envelope::Meta;
use crate::event::{AnyEvent, Event};
use crate::ids::EventId;
use crate::options::PublishOptions;
use crate::receipt::Receipt;
use crate::store::StoredEvent;

/// Events published as part of a database transaction of the application's own: made by
/// [`Bus::stage`], written by the store in that transaction (`SqliteStore::transaction`,
/// `PostgresStore::commit`), and only then [`committed`](Staged::committed): a rollback
/// publishes nothing, a commit publishes everything.
///
/// An event that leaves the process goes to the outbox (it needs
/// [`BusBuilder::outbox`](crate::BusBuilder::outbox)) and is forwarded after the commit;
/// one that stays is stored and, once committed, dispatched to this process's handlers.
///
/// ```
/// # #[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// # #[event(name = "doc.order.placed")]
/// # struct OrderPlaced { order_id: u64 }
/// # fn run(bus: &events::Bus) -> Result<(), events::PublishError> {
/// let mut staged = bus.stage();
/// staged.publish(OrderPlaced { order_id: 7 })?;
/// assert_eq!(staged.len(), 1);
/// // ... the store writes `staged` in the application's transaction, then:
/// // staged.committed(&sequences).await
/// # Ok(()) }
/// ```
#[must_use = "staged events are published only when a store commits them"]
pub struct Staged {
    bus: Bus,
    items: Vec<Item>,
}

struct Item {
    event: Box<AnyEvent>,
    meta: Meta,
    stored: StoredEvent,
    /// The outbox partition, when the event leaves the process.
    partition: Option<String>,
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged")
            .field("events", &self.items.len())
            .finish_non_exhaustive()
    }
}

/// One staged event as a store writes it: [`Staged::rows`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct StagedRow<'a> {
    /// The event.
    pub event: &'a StoredEvent,
    /// The outbox partition of its entry, when it leaves the process (`None`: no entry).
    pub outbox: Option<&'a str>,
}

impl Bus {
    /// Starts collecting events to publish in a database transaction of the application's
    /// own: see [`Staged`].
    pub fn stage(&self) -> Staged {
        Staged {
            bus: self.clone(),
            items: Vec::new(),
        }
    }
}

impl Staged {
    /// Stages `event`: its envelope is made now (id, time, lineage from the handler this
    /// runs in, if any); its id.
    ///
    /// # Errors
    /// As [`Bus::publish`] refuses an event (disabled bus, too deep, ...);
    /// [`PublishError::Transport`] for an event that leaves the process on a bus without
    /// the outbox; [`PublishError::Store`] when its payload cannot be serialized.
    pub fn publish<E: Event>(&mut self, event: E) -> Result<EventId, PublishError> {
        self.publish_with(event, PublishOptions::new())
    }

    /// [`publish`](Self::publish) with options.
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub fn publish_with<E: Event>(
        &mut self,
        event: E,
        options: PublishOptions,
    ) -> Result<EventId, PublishError> {
        self.publish_boxed(Box::new(event), options)
    }

    /// [`publish_with`](Self::publish_with) of an event of any type.
    pub(crate) fn publish_boxed(
        &mut self,
        event: Box<AnyEvent>,
        options: PublishOptions,
    ) -> Result<EventId, PublishError> {
        let bus = &self.bus;
        let info = event.info();
        let name = info.name;
        let meta = bus
            .try_meta_of(info, None, (!options.is_empty()).then_some(options))
            .map_err(|e| bus.refused(name, e))?;
        let partition = if bus.is_remote(name) {
            match &bus.inner.forwarder {
                Some(f) => Some(f.partition().to_owned()),
                None => {
                    return Err(bus.refused(
                        name,
                        PublishError::Transport {
                            name,
                            reason: "an event that leaves the process can be published in a \
                                     transaction only through the outbox: build the bus with \
                                     `BusBuilder::outbox`"
                                .into(),
                        },
                    ));
                }
            }
        } else {
            None
        };
        let payload = bus.sealed_text(&*event).map_err(|e| {
            bus.refused(
                name,
                PublishError::Store {
                    name,
                    source: crate::store::StoreError::Backend(format!(
                        "the payload cannot be serialized: {e}"
                    )),
                },
            )
        })?;
        let id = meta.id();
        self.items.push(Item {
            stored: StoredEvent::of(&meta, payload),
            event,
            meta,
            partition,
        });
        Ok(id)
    }

    /// The staged events as a stream append's rows.
    pub(crate) fn stream_rows(&self) -> Vec<(StoredEvent, Option<String>)> {
        self.items
            .iter()
            .map(|i| (i.stored.clone(), i.partition.clone()))
            .collect()
    }

    /// How many events are staged.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// What a store writes in the transaction, in order: each event, and its outbox entry's
    /// partition when it leaves the process.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = StagedRow<'_>> + '_ {
        self.items.iter().map(|i| StagedRow {
            event: &i.stored,
            outbox: i.partition.as_deref(),
        })
    }

    /// Publishes the staged events once the store has committed them at `sequences` (one
    /// per row, in order): wakes the outbox's forwarder for those that leave the process,
    /// and dispatches the others to this process's handlers. One receipt per event.
    ///
    /// # Panics
    /// When `sequences` does not hold one sequence per staged event (a store's bug).
    pub async fn committed(self, sequences: &[u64]) -> Vec<Receipt> {
        assert_eq!(
            sequences.len(),
            self.items.len(),
            "a store committed staged events with one sequence per event"
        );
        let Staged { bus, items } = self;
        if let Some(f) = &bus.inner.forwarder {
            if items.iter().any(|i| i.partition.is_some()) {
                f.wake();
            }
        }
        let mut receipts = Vec::with_capacity(items.len());
        for (item, &sequence) in items.into_iter().zip(sequences) {
            let Item {
                event,
                mut meta,
                partition,
                ..
            } = item;
            meta.set_sequence(sequence);
            let ctx = Context {
                bus: bus.clone(),
                meta,
                attempt: 1,
            };
            if partition.is_some() {
                receipts.push(Receipt::remote(ctx, sequence));
                continue;
            }
            receipts.push(bus.dispatch_committed(&*event, ctx).await);
        }
        receipts
    }
}

impl Bus {
    /// Runs the handlers of a stored (committed) event.
    async fn dispatch_committed(&self, event: &AnyEvent, ctx: Context) -> Receipt {
        let type_id: TypeId = event.info().type_id();
        if !self.inner.observers.is_empty() {
            self.observe_dispatch(&ctx.meta, event);
        }
        let route = self.route(type_id, event.info());
        let mut outcomes = Outcomes::default();
        let slots = self.dispatch_slots(&route, type_id, &ctx.meta);
        run(slots, event, &ctx, &mut outcomes).await;
        Receipt::new(ctx, route, outcomes)
    }
}
