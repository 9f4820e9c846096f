//! [`Context`]: what a handler knows about the event it handles, and how it publishes more.

use crate::bus::{Bus, PublishError};
use crate::envelope::{EventId, Meta};
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
        self.bus.publish_from(event, Some(&self.meta), None).await
    }

    /// Emits a child event to the background queue, like [`Bus::emit`].
    pub async fn emit<E: Event>(&self, event: E) -> Result<EventId, PublishError> {
        self.bus.emit_from(event, Some(&self.meta), None).await
    }

    /// Emits a child event without waiting for room, like [`Bus::try_emit`].
    pub fn try_emit<E: Event>(&self, event: E) -> Result<EventId, PublishError> {
        self.bus.try_emit_from(event, Some(&self.meta), None)
    }

    /// Publishes a child event from a synchronous handler, like [`Bus::publish_blocking`].
    pub fn publish_blocking<E: Event>(&self, event: E) -> Result<Receipt, PublishError> {
        self.bus
            .publish_blocking_from(event, Some(&self.meta), None)
    }
}
