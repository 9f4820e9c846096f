//! Dynamic subscriptions beside the link-time handlers. Subscribing and unsubscribing copy
//! the routing table and swap it in, so publishing never waits for them.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use super::{Bus, DynHandler, Inner, Slot, Target};
use crate::context::Context;
use crate::event::{AnyEvent, Event, EventInfo};
use crate::filter::Filter;
use crate::handler::IntoHandlerResult;
use crate::pattern::InvalidPattern;

/// Name, priority, filter and retry policy of a dynamic subscription, for [`Bus::subscribe_with`] and
/// [`Bus::subscribe_pattern_with`].
#[derive(Clone, Debug)]
#[must_use]
pub struct SubscribeOptions {
    name: Cow<'static, str>,
    priority: i32,
    filter: Option<Filter>,
    retry: Option<crate::RetryPolicy>,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            name: Cow::Borrowed("subscription"),
            priority: 0,
            filter: None,
            retry: None,
        }
    }
}

impl SubscribeOptions {
    /// Name `"subscription"`, priority 0, no filter.
    pub fn new() -> SubscribeOptions {
        SubscribeOptions::default()
    }
    /// The name shown in receipts and logs, and used for ordering.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> SubscribeOptions {
        self.name = name.into();
        self
    }
    /// Higher runs first; link-time handlers and subscriptions share one order.
    pub fn priority(mut self, priority: i32) -> SubscribeOptions {
        self.priority = priority;
        self
    }
    /// Delivers only the events `filter` passes; the others show as
    /// [`Outcome::Filtered`](crate::Outcome::Filtered) in receipts. A second call replaces
    /// the first; combine filters with `&` instead.
    pub fn filter(mut self, filter: Filter) -> SubscribeOptions {
        self.filter = Some(filter);
        self
    }
    /// How a transient failure of this subscription is retried, instead of the bus's
    /// default ([`BusBuilder::retry`](crate::BusBuilder::retry)).
    pub fn retry(mut self, policy: crate::RetryPolicy) -> SubscribeOptions {
        self.retry = Some(policy);
        self
    }
}

/// A dynamic subscription. Dropping it unsubscribes; so does [`Subscription::unsubscribe`].
/// [`Subscription::detach`] keeps it for the bus's lifetime.
#[must_use = "dropping a `Subscription` unsubscribes at once; call `.detach()` to keep it"]
pub struct Subscription {
    bus: Weak<Inner>,
    id: u64,
    /// The event name, or the pattern.
    receives: Arc<str>,
    paused: Arc<AtomicBool>,
}

/// A dynamic subscription as [`Bus::subscriptions`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriptionInfo {
    /// Unique on its bus.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// The event name it receives, or its pattern.
    pub event: String,
    /// Its priority.
    pub priority: i32,
    /// Whether it is paused.
    pub paused: bool,
    /// Its filter, written out (see [`Filter`]'s `Display`).
    pub filter: Option<String>,
}

impl Subscription {
    /// Removes the subscription. Publishes that already started may still call it once.
    pub fn unsubscribe(mut self) {
        self.remove();
    }

    /// Keeps the subscription for as long as the bus lives.
    pub fn detach(mut self) {
        self.bus = Weak::new();
    }

    /// Stops delivering events to it until [`resume`](Self::resume); receipts show it as
    /// [`Outcome::Paused`](crate::Outcome::Paused). Events published meanwhile are not kept
    /// for it.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::Relaxed);
    }

    /// Delivers events to it again.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::Relaxed);
    }

    /// Whether it is paused.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    /// Its id, as [`Bus::subscriptions`] lists it.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the subscription is still on its bus.
    pub fn is_active(&self) -> bool {
        self.bus.upgrade().is_some_and(|inner| {
            inner
                .dynamic
                .lock()
                .is_ok_and(|d| d.iter().any(|(_, s)| s.sub_id() == Some(self.id)))
        })
    }

    fn remove(&mut self) {
        if let Some(inner) = std::mem::take(&mut self.bus).upgrade() {
            inner.change_dynamic(false, |dynamic| {
                let mut removed = Vec::new();
                dynamic.retain(|(t, s)| {
                    let mine = s.sub_id() == Some(self.id);
                    if mine {
                        removed.push(*t);
                    }
                    !mine
                });
                removed
            });
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.remove();
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("receives", &self.receives)
            .finish()
    }
}

impl Slot {
    fn sub_id(&self) -> Option<u64> {
        match self.target {
            Target::Subscription { id, .. } => Some(id),
            Target::Handler(_) | Target::Upcast { .. } => None,
        }
    }
}

impl Inner {
    /// Applies `change` to the dynamic subscriptions under the writers' lock and, if it names
    /// the event type it touched, publishes a new routing table for that type.
    fn change_dynamic(
        &self,
        added: bool,
        change: impl FnOnce(&mut Vec<(&'static EventInfo, Slot)>) -> Vec<&'static EventInfo>,
    ) {
        // A poisoned lock only means another writer panicked mid-change; the vector is still
        // consistent because every change is a push or a retain.
        let mut dynamic = self.dynamic.lock().unwrap_or_else(|p| p.into_inner());
        let changed = change(&mut dynamic);
        if changed.is_empty() {
            return;
        }
        // Publishers skip the copy-on-write table while this bus's count is 0, or the
        // type's own (one per subscription slot `changed` names): each count is raised
        // before the new table is visible, and lowered after.
        let count = dynamic.len();
        if added {
            for info in &changed {
                info.subscribed.fetch_add(1, Ordering::AcqRel);
            }
        }
        let mut routes = (**self.routes.load()).clone();
        for info in &changed {
            let type_id = info.type_id();
            let mut slots: Vec<Slot> = self
                .fixed
                .get(&type_id)
                .map(|s| s.to_vec())
                .unwrap_or_default();
            slots.extend(
                dynamic
                    .iter()
                    .filter(|(t, _)| std::ptr::eq(*t, *info))
                    .map(|(_, s)| s.clone()),
            );
            slots.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
            if slots.is_empty() {
                routes.remove(&type_id);
            } else {
                routes.insert(type_id, slots.into());
            }
        }
        if count > 0 {
            self.subscriptions.store(count, Ordering::Release);
        }
        self.routes.store(Arc::new(routes));
        if !added {
            for info in &changed {
                info.subscribed.fetch_sub(1, Ordering::AcqRel);
            }
        }
        if count == 0 {
            self.subscriptions.store(0, Ordering::Release);
        }
    }
}

impl Bus {
    /// Subscribes a closure to `E` beside the link-time handlers, until the returned
    /// [`Subscription`] is dropped.
    ///
    /// ```
    /// # #[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    /// # struct Ping;
    /// let bus = events::Bus::builder().build()?;
    /// let sub = bus.subscribe(|_: &Ping, ctx: &events::Context| {
    ///     println!("ping {}", ctx.meta().id());
    /// });
    /// bus.publish_blocking(Ping).unwrap();
    /// sub.unsubscribe();
    /// # Ok::<(), events::BuildError>(())
    /// ```
    pub fn subscribe<E, F, R>(&self, handler: F) -> Subscription
    where
        E: Event,
        F: Fn(&E, &Context) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        self.subscribe_with(SubscribeOptions::default(), handler)
    }

    /// [`subscribe`](Self::subscribe) with a name and a priority.
    pub fn subscribe_with<E, F, R>(&self, options: SubscribeOptions, handler: F) -> Subscription
    where
        E: Event,
        F: Fn(&E, &Context) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        let call: DynHandler =
            Arc::new(move |event, ctx| match event.as_any().downcast_ref::<E>() {
                Some(event) => handler(event, ctx).into_handler_result(),
                None => Ok(()),
            });
        self.subscribe_dyn(options, vec![E::info()], call, E::NAME.into())
    }

    /// Subscribes a closure to every event whose name matches `pattern`: `*` matches one
    /// `.`-separated segment, a final `>` the rest (`order.*`, `order.>`, `>`). The closure
    /// gets the event as [`AnyEvent`]; its JSON is made only if it asks.
    ///
    /// ```standalone_crate
    /// # #[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    /// # #[event(name = "order.placed")]
    /// # struct OrderPlaced;
    /// let bus = events::Bus::builder().build()?;
    /// let audit = bus.subscribe_pattern("order.*", |ev: &events::AnyEvent, _: &events::Context| {
    ///     println!("{} v{}", ev.name(), ev.version());
    /// })?;
    /// bus.publish_blocking(OrderPlaced).unwrap();
    /// # drop(audit);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`InvalidPattern`] when `pattern` is not one.
    pub fn subscribe_pattern<F, R>(
        &self,
        pattern: &str,
        handler: F,
    ) -> Result<Subscription, InvalidPattern>
    where
        F: Fn(&AnyEvent, &Context) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        self.subscribe_pattern_with(SubscribeOptions::default(), pattern, handler)
    }

    /// [`subscribe_pattern`](Self::subscribe_pattern) with a name and a priority.
    pub fn subscribe_pattern_with<F, R>(
        &self,
        options: SubscribeOptions,
        pattern: &str,
        handler: F,
    ) -> Result<Subscription, InvalidPattern>
    where
        F: Fn(&AnyEvent, &Context) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        crate::pattern::check(pattern)?;
        let targets = self
            .inner
            .registry
            .events
            .iter()
            .copied()
            .filter(|e| crate::pattern::matches(pattern, e.name))
            .collect();
        let call: DynHandler =
            Arc::new(move |event, ctx| handler(event, ctx).into_handler_result());
        Ok(self.subscribe_dyn(options, targets, call, pattern.into()))
    }

    /// Adds one dynamic subscription to the routes of `targets`.
    fn subscribe_dyn(
        &self,
        options: SubscribeOptions,
        targets: Vec<&'static EventInfo>,
        call: DynHandler,
        receives: Arc<str>,
    ) -> Subscription {
        let id = self.inner.next_sub.fetch_add(1, Ordering::Relaxed);
        let paused = Arc::new(AtomicBool::new(false));
        let slot = |info: &'static EventInfo| Slot {
            name: options.name.clone(),
            priority: options.priority,
            seq: id,
            target: Target::Subscription {
                id,
                call: Arc::clone(&call),
                receives: Arc::clone(&receives),
            },
            event: info.name,
            filter: options.filter.clone(),
            states: Arc::new([]),
            paused: Some(Arc::clone(&paused)),
            limit: None,
            durable: false,
            inbox: false,
            replay: true,
            timeout: None,
            retry: options
                .retry
                .or(self.inner.default_retry)
                .filter(|p| !self.inner.no_retries && p.max_retries() > 0),
        };
        self.inner.change_dynamic(true, |dynamic| {
            targets
                .iter()
                .map(|info| {
                    dynamic.push((info, slot(info)));
                    *info
                })
                .collect()
        });
        Subscription {
            bus: Arc::downgrade(&self.inner),
            id,
            receives,
            paused,
        }
    }

    /// The dynamic subscriptions on this bus now, in subscription order.
    pub fn subscriptions(&self) -> Vec<SubscriptionInfo> {
        let dynamic = self.inner.dynamic.lock().unwrap_or_else(|p| p.into_inner());
        let mut list: Vec<SubscriptionInfo> = dynamic
            .iter()
            .filter_map(|(_, slot)| {
                let id = slot.sub_id()?;
                let receives = match &slot.target {
                    Target::Subscription { receives, .. } => receives.to_string(),
                    Target::Handler(_) | Target::Upcast { .. } => slot.event.to_owned(),
                };
                Some(SubscriptionInfo {
                    id,
                    name: slot.name().to_owned(),
                    event: receives,
                    priority: slot.priority,
                    paused: slot
                        .paused
                        .as_ref()
                        .is_some_and(|p| p.load(Ordering::Relaxed)),
                    filter: slot.filter.as_ref().map(Filter::to_string),
                })
            })
            .collect();
        list.sort_by_key(|s| s.id);
        // A pattern subscription has one slot per event it matches: list it once.
        list.dedup_by_key(|s| s.id);
        list
    }
}
