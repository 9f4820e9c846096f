//! [`Bus::consume`]: the handlers of this process fed by the bus's [`Transport`], with the
//! same ingest path, failure decision and dead letters as in-process dispatch. Nothing here
//! knows which broker it talks to.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::{Bus, PublishError, Slot, Target};
use crate::context::Context;
use crate::event::{AnyEvent, EventInfo};
use crate::handler::Call;
use crate::receipt::Outcome;
use crate::transport::{
    ConsumerSpec, Consumers, Delivery, Selects, Settle, Transport, TransportError,
};

impl Bus {
    /// Starts this process's consumers: one per `#[handler]` (except responders and
    /// handlers of local events), shared with every other process that runs the same
    /// handler. They run until the returned [`Consumers`] is dropped or stopped.
    ///
    /// Every message goes through the ingest path (size and depth limits, JSON Schema,
    /// upcasting); one that fails it is terminated with the reason and never stops the
    /// consumer. A handler's outcome is settled by the same rule as in process
    /// ([`retry::fate`](crate::retry::fate)): success or filtered acknowledges, a transient
    /// error is delivered again after the retry policy's delay, a permanent error, a panic
    /// or the last retry dead-letters it (in the bus and at the transport).
    ///
    /// # Errors
    /// [`TransportError::NoTransport`], or the broker refused a consumer.
    pub async fn consume(&self) -> Result<Consumers, TransportError> {
        let Some(transport) = self.inner.transport.clone() else {
            return Err(TransportError::NoTransport);
        };
        let mut tasks = Vec::new();
        let mut seen = HashSet::new();
        for &handler in self.handlers() {
            if handler.is_responder() || !seen.insert(handler.name()) {
                continue;
            }
            let (selects, slot) = match handler.event() {
                Some(info) => {
                    if transport.is_local(info.name) {
                        continue;
                    }
                    let Some(slot) = self.link_slot(info.type_id(), handler.name()) else {
                        continue;
                    };
                    (Selects::Event(info.name), slot)
                }
                None => {
                    let Some(slot) = self.any_slot(handler.name()) else {
                        continue;
                    };
                    (
                        Selects::Pattern(handler.pattern().unwrap_or(">").into()),
                        slot,
                    )
                }
            };
            let mut spec = ConsumerSpec::new(handler.name(), selects);
            if let Some(policy) = slot.retry {
                spec = spec.max_deliver(policy.max_retries().saturating_add(1));
            }
            let consumer = transport.consumer(spec).await?;
            let bus = self.clone();
            let limit = handler.concurrency().map_or(1, |n| n.max(1) as usize);
            tasks.push(tokio::spawn(consume_loop(
                bus,
                consumer,
                slot,
                handler.event(),
                limit,
            )));
        }
        let watcher = transport.watch().map(tokio::spawn);
        Ok(Consumers::new(tasks, watcher))
    }

    /// The link-time slot of handler `name` in the route of type `type_id`.
    fn link_slot(&self, type_id: std::any::TypeId, name: &str) -> Option<Slot> {
        self.inner
            .fixed
            .get(&type_id)
            .and_then(|slots| slots.iter().find(|s| s.name() == name).cloned())
    }

    /// A wildcard handler's slot (the same in every route it joined).
    fn any_slot(&self, name: &str) -> Option<Slot> {
        self.inner
            .fixed
            .values()
            .flat_map(|slots| slots.iter())
            .find(|s| {
                s.name() == name
                    && matches!(s.target, Target::Handler(Call::Sync(_) | Call::Async(_)))
            })
            .cloned()
    }

    /// A received message as the handler's event type, through the ingest path (limits,
    /// schema, upcasting), with the options that give it its envelope as published.
    #[allow(clippy::type_complexity)]
    fn decode_delivery(
        &self,
        transport: &dyn Transport,
        delivery: &dyn Delivery,
        typed: Option<&'static EventInfo>,
    ) -> Result<(Box<AnyEvent>, &'static EventInfo, crate::PublishOptions), String> {
        let attributes = delivery.attributes()?;
        // Sealed personal data from another process of the service is opened with the
        // shared key store (a subject forgotten there reads as forgotten).
        let (event, options) = self
            .unsealed(|| {
                self.decode_cloudevent_parts(
                    delivery.principal().unwrap_or(super::anonymous()),
                    attributes,
                    delivery.body(),
                )
            })
            .map_err(|e| e.to_string())?;
        // The address says which consumers see the message: it must be the type's own.
        let name = event.info().name;
        if delivery.routed_name() != Some(name) {
            return Err(format!(
                "the message on `{}` is a `{name}` event, which travels on `{}`",
                crate::ingest::clip(delivery.address()),
                transport.address(name)
            ));
        }
        let (event, info) = match typed {
            Some(target) => self.upcast_to(event, target)?,
            None => {
                let info = event.info();
                (event, info)
            }
        };
        Ok((event, info, options))
    }
}

/// Takes and handles messages until stopped: one at a time, in order, or up to `limit` at
/// once for a handler with `concurrency = limit`.
async fn consume_loop(
    bus: Bus,
    mut consumer: Box<dyn crate::transport::Consumer>,
    slot: Slot,
    typed: Option<&'static EventInfo>,
    limit: usize,
) {
    let slot = Arc::new(slot);
    let permits = Arc::new(tokio::sync::Semaphore::new(limit));
    // Aborted with this task: calls in flight stop with the consumer, and the broker
    // delivers their messages again.
    let mut running = tokio::task::JoinSet::new();
    while let Some(delivery) = consumer.next().await {
        if limit == 1 {
            handle(&bus, &slot, typed, delivery).await;
            continue;
        }
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        while running.try_join_next().is_some() {}
        let (bus, slot) = (bus.clone(), Arc::clone(&slot));
        running.spawn(async move {
            handle(&bus, &slot, typed, delivery).await;
            drop(permit);
        });
    }
    tracing::warn!(
        handler = slot.name(),
        "the transport closed this handler's consumer"
    );
    while running.join_next().await.is_some() {}
}

/// Handles one message for one handler and settles it.
async fn handle(
    bus: &Bus,
    slot: &Slot,
    typed: Option<&'static EventInfo>,
    delivery: Box<dyn Delivery>,
) {
    let Some(transport) = bus.inner.transport.as_deref() else {
        return;
    };
    let attempt = delivery.attempt().max(1);
    let decoded =
        bus.decode_delivery(transport, &*delivery, typed)
            .and_then(|(event, info, options)| {
                match bus.try_meta_of(info, None, options) {
                    Ok(meta) => Ok(Ok((event, meta))),
                    // A disabled or closing bus takes the message later, or another process does.
                    Err(e @ (PublishError::Disabled { .. } | PublishError::Closed)) => Ok(Err(e)),
                    Err(e) => Err(e.to_string()),
                }
            });
    let settle = match decoded {
        Ok(Err(refused)) => {
            tracing::debug!(handler = slot.name(), %refused, "message left for later");
            Settle::Nak {
                after: Duration::from_secs(1),
            }
        }
        Err(reason) => {
            tracing::error!(
                handler = slot.name(),
                address = %crate::ingest::clip(delivery.address()),
                %reason,
                "a message was refused and terminated"
            );
            terminate(slot, &reason)
        }
        Ok(Ok((_, meta))) if bus.in_inbox(slot, &meta) => {
            tracing::debug!(handler = slot.name(), event_id = %meta.id(), "already in the inbox");
            Settle::Ack
        }
        Ok(Ok((event, meta))) => {
            let ctx = Context {
                bus: bus.clone(),
                meta,
                attempt,
            };
            let call = with_progress(&*delivery, super::call_once(slot, &*event, &ctx));
            let outcome = if super::spans_on() {
                // The handler span is its child; `traceparent` ties it to the publisher.
                let span = tracing::debug_span!(
                    "receive",
                    handler = slot.name(),
                    event = ctx.meta.name(),
                    event_id = %ctx.meta.id(),
                    correlation_id = %ctx.meta.correlation_id(),
                    traceparent = %crate::ingest::clip(delivery.traceparent().unwrap_or_default()),
                    attempt,
                );
                tracing::Instrument::instrument(call, span).await
            } else {
                call.await
            };
            // The same decision as in process: retried (here by the broker, after the
            // delay) or dead-lettered.
            match crate::retry::fate(&outcome, slot.retry, attempt) {
                crate::retry::Fate::Retry { after, .. } => Settle::Nak { after },
                crate::retry::Fate::DeadLetter { error, permanent } => {
                    let json = bus.sealed_json(&*event).unwrap_or_else(|e| {
                        serde_json::Value::String(format!("unserializable: {e}"))
                    });
                    let settle = terminate(slot, &error);
                    bus.dead_letter(&ctx, slot.name(), json, error, permanent);
                    settle
                }
                _ => Settle::Ack,
            }
        }
    };
    if let Err(e) = delivery.settle(settle).await {
        tracing::warn!(
            handler = slot.name(),
            error = %crate::ingest::clip(&e),
            "settling a message failed; the broker will deliver it again"
        );
    }
}

/// The settlement that ends a message for good, with its reason clipped for a header.
fn terminate(slot: &Slot, reason: &str) -> Settle {
    Settle::Terminate {
        handler: slot.name().to_owned(),
        reason: crate::ingest::clip_to(reason, 300),
    }
}

/// Runs `call`, telling the broker every [`Delivery::progress_every`] that the message is
/// still being worked on.
async fn with_progress<F: std::future::Future<Output = Outcome>>(
    delivery: &dyn Delivery,
    call: F,
) -> Outcome {
    let Some(every) = delivery.progress_every() else {
        return call.await;
    };
    let every = every.max(Duration::from_millis(100));
    let mut call = std::pin::pin!(call);
    loop {
        match tokio::time::timeout(every, call.as_mut()).await {
            Ok(outcome) => return outcome,
            Err(_) => delivery.progress().await,
        }
    }
}
