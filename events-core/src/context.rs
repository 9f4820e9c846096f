//! [`Context`]: what a handler knows about the event it handles, and how it publishes more.

use crate::bus::{Bus, PublishError};
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use crate::envelope::{EventId, Lineage, Meta, NoOptions};
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
    /// 1 for the first call of a handler, 2 for its first retry, ...
    pub(crate) attempt: u32,
}

impl Context {
    /// A context for calling a handler directly, outside a dispatch: the envelope of a new
    /// root `E` on `bus` (its id, time and the bus's source), attempt 1. Events the handler
    /// publishes through it go to `bus` as children of that envelope; a
    /// [`TestBus`](crate::testing::TestBus) captures them.
    ///
    /// ```standalone_crate
    /// # use events::{Bus, Context, Event, handler};
    /// # #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    /// # struct Ping;
    /// #[handler]
    /// fn on_ping(_: &Ping, ctx: &Context) -> Result<(), events::HandlerError> {
    ///     if ctx.attempt() < 3 {
    ///         return Err(events::HandlerError::transient("not yet"));
    ///     }
    ///     Ok(())
    /// }
    ///
    /// let bus = Bus::builder().no_handlers().build().unwrap();
    /// assert!(on_ping(&Ping, &Context::for_test::<Ping>(&bus)).is_err());
    /// assert!(on_ping(&Ping, &Context::for_test::<Ping>(&bus).with_attempt(3)).is_ok());
    /// ```
    ///
    /// # Panics
    /// When `bus` is shut down or disabled (it refuses new envelopes).
    pub fn for_test<E: Event>(bus: &Bus) -> Context {
        match bus.context::<E>(None, NoOptions) {
            Ok(ctx) => ctx,
            Err(e) => panic!(
                "Context::for_test: the bus refuses a new `{}`: {e}",
                E::NAME
            ),
        }
    }

    /// The same context as attempt `attempt` (2 for the first retry), to test a handler's
    /// retry logic.
    #[must_use]
    pub fn with_attempt(mut self, attempt: u32) -> Context {
        self.attempt = attempt.max(1);
        self
    }

    /// Which attempt this call is: 1 the first time a handler runs for the event, then 2, 3,
    /// ... for its retries (see [`RetryPolicy`](crate::RetryPolicy)).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The event's sequence number in the bus's [store](crate::store), if the bus has one.
    pub fn sequence(&self) -> Option<u64> {
        self.meta.sequence()
    }

    /// Whether the event is being delivered again by [`Bus::replay`](crate::Bus::replay),
    /// rather than as it happens (or as [`Bus::recover`](crate::Bus::recover) completes it).
    pub fn is_replay(&self) -> bool {
        self.meta.replay().is_some()
    }

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
            .publish_from(event, Some(self.meta.lineage()), NoOptions)
            .await
    }

    /// Emits a child event to the background queue, like [`Bus::emit`].
    pub async fn emit<E: Event>(&self, event: E) -> Result<EventId, PublishError> {
        self.bus
            .emit_from(event, Some(self.meta.lineage()), NoOptions)
            .await
    }

    /// Emits a child event without waiting for room, like [`Bus::try_emit`].
    pub fn try_emit<E: Event>(&self, event: E) -> Result<EventId, PublishError> {
        self.bus
            .try_emit_from(event, Some(self.meta.lineage()), NoOptions)
    }

    /// Publishes a child event from a synchronous handler, like [`Bus::publish_blocking`].
    pub fn publish_blocking<E: Event>(&self, event: E) -> Result<Receipt, PublishError> {
        self.bus
            .publish_blocking_from(event, Some(self.meta.lineage()), NoOptions)
    }
}

/// The event whose handler is running on this thread, if any: set around each synchronous
/// call and each poll of an async handler (and of a task started with [`spawn`]), and
/// restored afterwards, even when the handler panics. A flag beside the value, so that the
/// common case (no handler running) reads one byte.
struct Current {
    active: Cell<bool>,
    lineage: Cell<Lineage>,
}

thread_local! {
    static CURRENT: Current = const {
        Current {
            active: Cell::new(false),
            lineage: Cell::new(Lineage::NONE),
        }
    };
}

/// The event whose handlers are running here: events published now are its children.
#[inline]
pub(crate) fn current() -> Option<Lineage> {
    CURRENT.with(|c| c.active.get().then(|| c.lineage.get()))
}

/// Puts the previous current event back when dropped.
struct Restore(Option<Lineage>);

impl Restore {
    /// Makes `lineage` current until the guard drops.
    #[inline]
    fn enter(lineage: Lineage) -> Restore {
        CURRENT.with(|c| {
            let previous = c.active.replace(true).then(|| c.lineage.get());
            c.lineage.set(lineage);
            Restore(previous)
        })
    }
}

impl Drop for Restore {
    #[inline]
    fn drop(&mut self) {
        CURRENT.with(|c| match self.0 {
            None => c.active.set(false),
            Some(previous) => c.lineage.set(previous),
        });
    }
}

/// Runs the synchronous `f` as the handling of the event `lineage` describes.
#[inline]
pub(crate) fn sync_scoped<R>(lineage: Lineage, f: impl FnOnce() -> R) -> R {
    let _restore = Restore::enter(lineage);
    f()
}

pin_project_lite::pin_project! {
    /// A future polled as the handling of one event: what `tokio::task_local!` does, in one
    /// thread-local shared with synchronous handlers, so `current()` reads one slot.
    pub(crate) struct Scoped<F> {
        lineage: Lineage,
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _restore = Restore::enter(*this.lineage);
        this.future.poll(cx)
    }
}

/// Runs `future` as the handling of the event `lineage` describes.
pub(crate) fn scoped<F: Future>(lineage: Lineage, future: F) -> Scoped<F> {
    Scoped { lineage, future }
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
        Some(lineage) => tokio::spawn(scoped(lineage, future)),
        None => tokio::spawn(future),
    }
}
