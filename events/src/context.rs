//! [`Context`]: what a handler knows about the event it handles, and how it publishes more.

use crate::bus::{Bus, PublishError};
use std::cell::Cell;
use std::future::Future;

use crate::envelope::{EventId, Lineage, Meta};
use crate::event::Event;
use crate::receipt::Receipt;

/// The envelope of the event being handled, and the bus it came from.
///
/// A handler takes it as a parameter (`ctx: &Context`). Events published through it are
/// children of the current event: they keep its correlation id and get its id as their
/// causation id.
#[derive(Debug)]
pub struct Context {
    pub(crate) bus: Bus,
    pub(crate) meta: Meta,
}

impl Context {
    /// The current event's metadata.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The bus the event was published on.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Publishes a child event and runs its handlers, like [`Bus::publish`].
    pub async fn publish<E: Event>(&self, event: E) -> Result<Receipt, PublishError> {
        self.bus
            .publish_from(event, Some(self.meta.lineage()), None)
            .await
    }

    /// Emits a child event to the background queue, like [`Bus::emit`].
    pub async fn emit<E: Event>(&self, event: E) -> Result<EventId, PublishError> {
        self.bus
            .emit_from(event, Some(self.meta.lineage()), None)
            .await
    }

    /// Emits a child event without waiting for room, like [`Bus::try_emit`].
    pub fn try_emit<E: Event>(&self, event: E) -> Result<EventId, PublishError> {
        self.bus
            .try_emit_from(event, Some(self.meta.lineage()), None)
    }

    /// Publishes a child event from a synchronous handler, like [`Bus::publish_blocking`].
    pub fn publish_blocking<E: Event>(&self, event: E) -> Result<Receipt, PublishError> {
        self.bus
            .publish_blocking_from(event, Some(self.meta.lineage()), None)
    }
}

tokio::task_local! {
    /// The event whose handlers are running on this task, if any.
    static CURRENT: Lineage;
}

thread_local! {
    /// The event whose synchronous handler is running on this thread. Set only around
    /// synchronous calls, which cannot be suspended, so it never leaks into another task.
    static SYNC_CURRENT: Cell<Option<Lineage>> = const { Cell::new(None) };
}

/// The event whose handlers are running here: events published now are its children.
#[inline]
pub(crate) fn current() -> Option<Lineage> {
    SYNC_CURRENT
        .with(Cell::get)
        .or_else(|| CURRENT.try_with(|l| *l).ok())
}

/// Runs the synchronous `f` as the handling of the event `lineage` describes. Two
/// thread-local writes; `f` must not unwind (handler calls are wrapped in `catch_unwind`).
#[inline]
pub(crate) fn sync_scoped<R>(lineage: Lineage, f: impl FnOnce() -> R) -> R {
    let previous = SYNC_CURRENT.replace(Some(lineage));
    let result = f();
    SYNC_CURRENT.set(previous);
    result
}

/// Runs `future` as the handling of the event `lineage` describes.
pub(crate) async fn scoped<F: Future>(lineage: Lineage, future: F) -> F::Output {
    CURRENT.scope(lineage, future).await
}

/// `tokio::spawn` that carries the current event along: events the task publishes are
/// children of the event being handled where it was spawned (same correlation id,
/// causation = that event's id). Outside a handler it is plain `tokio::spawn`.
///
/// ```standalone_crate
/// # #[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// # struct Ping;
/// #[events::handler]
/// async fn on_ping(_: &Ping, ctx: &events::Context) {
///     let bus = ctx.bus().clone();
///     events::spawn(async move {
///         // published later, from another task, and still a child of this `Ping`
///         let _ = bus.publish(Ping).await;
///     });
/// }
/// ```
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match current() {
        Some(lineage) => tokio::spawn(CURRENT.scope(lineage, future)),
        None => tokio::spawn(future),
    }
}
