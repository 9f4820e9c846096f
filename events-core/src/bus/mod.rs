//! The [`Bus`]: built once from the registry, then publishes events to their handlers.

mod aggregates;
mod audit;
mod call;
mod consume;
mod dead_letters;
mod dispatch;
pub(crate) mod durable;
mod failure;
mod guard;
mod ingest;
mod lifecycle;
mod outbox;
mod personal;
mod projection;
mod queue;
mod request;
mod retention;
mod run;
mod select;
mod staged;
mod subscribe;

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

pub use aggregates::{Aggregates, CommandError, Executed, LoadError, Loaded};
pub(crate) use call::call_once;
pub use dead_letters::DeadLetters;
pub use dispatch::PublishError;
pub(crate) use dispatch::{Outcomes, spans_on};
pub use durable::{Recovery, Replay, ReplayError, ReplayProgress, ReplayReport};
pub use guard::Ingress;
pub(crate) use guard::anonymous;
pub use lifecycle::{ShutdownReport, Unprocessed};
pub use projection::{Lag, Rebuild, RebuildError, RebuildProgress, RebuildReport};
pub use request::{Request, RequestError};
pub(crate) use run::run_one;
pub use staged::{Staged, StagedRow};
pub use subscribe::{SubscribeOptions, Subscription, SubscriptionInfo};

use crate::Context;
use crate::event::Payload;
use crate::event::{Event, EventInfo};
use crate::handler::{AnyState, Call, HandlerInfo, HandlerResult};
use crate::registry::{BuildError, Registry};

/// An in-process event bus.
///
/// Build it once with [`Bus::builder`]; clone it freely (clones share one bus). Handlers
/// declared with `#[handler]` anywhere in the binary are found at [`BusBuilder::build`], with
/// no registration list. Dispatch order is the same on every run: priority descending, then
/// handler name (then, for dynamic subscriptions with equal priority and name, subscription
/// order).
#[derive(Clone)]
pub struct Bus {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) registry: Registry,
    /// Kept for the process's lifetime: every event's envelope points at it.
    pub(crate) source: &'static str,
    pub(crate) max_depth: u32,
    /// Handler calls that failed for good.
    pub(crate) dead_letters: dead_letters::Queue,
    /// Event types by name and version, for input from outside.
    pub(crate) catalog: crate::ingest::Catalog,
    /// How much outside JSON is accepted.
    pub(crate) ingest_limits: crate::ingest::IngestLimits,
    /// Access rules and rate limits of outside input, if any.
    pub(crate) guard: Option<guard::Guard>,
    /// Records the bus's own actions as events ([`BusBuilder::audit`]), if asked.
    pub(crate) auditor: Option<audit::Auditor>,
    /// The data keys of personal data, if the bus keeps any.
    pub(crate) keys: Option<Arc<personal::Keys>>,
    /// How long stored events and dead letters are kept, if the bus says.
    pub(crate) retention: Option<crate::retention::Retention>,
    /// The responder of each query, kept out of the routes: only `request` calls it.
    pub(crate) responders: HashMap<TypeId, Slot, BuildHasherDefault<TypeIdHasher>>,
    /// How long `request` waits for an answer unless told otherwise.
    pub(crate) request_timeout: std::time::Duration,
    /// Link-time handlers per event type, in dispatch order; fixed after `build()`. Read
    /// with no synchronization while there are no dynamic subscriptions.
    pub(crate) fixed: Routes,
    /// How many dynamic subscriptions exist; while 0, `routes` is not consulted.
    pub(crate) subscriptions: std::sync::atomic::AtomicUsize,
    /// What `publish` reads: fixed handlers merged with dynamic subscriptions. Replaced
    /// whole (copy-on-write) when a subscription changes, so publishing takes no lock.
    pub(crate) routes: ArcSwap<Routes>,
    /// Serializes writers of `routes`; never taken by `publish`.
    pub(crate) dynamic: Mutex<Vec<(&'static EventInfo, Slot)>>,
    next_sub: std::sync::atomic::AtomicU64,
    /// Events emitted for background processing.
    pub(crate) queue: Arc<queue::Queue>,
    /// Enabled, disabled or shut down.
    pub(crate) lifecycle: lifecycle::Lifecycle,
    pub(crate) observers: crate::observe::Observers,
    /// Where events are appended before their handlers run, if anywhere.
    pub(crate) store: Option<Arc<dyn crate::store::EventStore>>,
    /// Where events go when they leave the process, if anywhere.
    pub(crate) transport: Option<Arc<dyn crate::transport::Transport>>,
    /// A store or a transport: the cold path of a publish.
    pub(crate) outbound: bool,
    /// The outbox's forwarder ([`BusBuilder::outbox`]), if any.
    pub(crate) forwarder: Option<Arc<outbox::Forwarder>>,
    /// Deliveries to `#[handler(inbox)]` handlers skipped: their inbox had them.
    pub(crate) inbox_hits: std::sync::atomic::AtomicU64,
    /// The durable handlers being rebuilt, with the sequence above which live deliveries
    /// go to them again (`None`: not yet).
    pub(crate) rebuilds: Mutex<HashMap<String, Option<u64>>>,
    /// The durable handlers paused ([`Bus::pause`]); the lock also orders a pause with a
    /// rebuild's reopening of the gate.
    pub(crate) paused: Mutex<std::collections::HashSet<String>>,
    /// How many retries may wait at once; past it, failures are dead-lettered.
    pub(crate) max_pending_retries: usize,
    /// The retry policy of handlers and subscriptions without their own.
    pub(crate) default_retry: Option<crate::RetryPolicy>,
    /// [`BusBuilder::no_retries`]: no retry for anyone.
    pub(crate) no_retries: bool,
    /// The durable handlers, with the event type each takes.
    pub(crate) durable: Vec<(&'static EventInfo, Slot)>,
    /// Event types no `#[handler]` takes, each with whether the warning that one was
    /// published into nothing was given.
    pub(crate) unhandled_warned:
        HashMap<TypeId, std::sync::atomic::AtomicBool, BuildHasherDefault<TypeIdHasher>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: refuse new events and let the workers stop. Workers hold
        // only a weak reference, so events still queued now are not handled; they say so.
        self.queue.close();
        // Subscriptions still held leave the process-wide counts of their types (they can
        // no longer remove themselves: their bus is gone).
        let dynamic = self.dynamic.get_mut().unwrap_or_else(|p| p.into_inner());
        for (info, _) in dynamic.drain(..) {
            info.subscribed
                .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
    }
}

pub(crate) type Routes = HashMap<TypeId, Arc<[Slot]>, BuildHasherDefault<TypeIdHasher>>;

/// `TypeId` is already a hash; pass it through instead of running SipHash on every publish.
#[derive(Default)]
pub(crate) struct TypeIdHasher(u64);

impl Hasher for TypeIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(buf);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.rotate_left(5) ^ n;
    }
}

/// Where one publish found its handlers; kept by the receipt to name them later.
pub(crate) enum Route {
    /// The fixed table's entry for this type (possibly none).
    Fixed(TypeId),
    /// The copy-on-write table's entry when the publish started.
    Snapshot(Arc<[Slot]>),
}

/// One handler or subscription, as the dispatcher sees it.
#[derive(Clone)]
pub(crate) struct Slot {
    name: Cow<'static, str>,
    priority: i32,
    /// The event's name.
    event: &'static str,
    /// Tie-breaker after priority and name: 0 for link-time handlers (whose names are
    /// unique), the subscription number for dynamic ones.
    seq: u64,
    pub(crate) target: Target,
    pub(crate) filter: Option<crate::Filter>,
    /// `State<T>` values by parameter position, resolved at `build()`.
    pub(crate) states: Arc<[Option<AnyState>]>,
    /// Set while a dynamic subscription is paused, or a durable handler is rebuilt
    /// ([`Bus::rebuild`]); `None` for other link-time handlers.
    pub(crate) paused: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// `#[handler(concurrency = N)]`: one semaphore per handler per bus.
    pub(crate) limit: Option<Arc<tokio::sync::Semaphore>>,
    /// `#[handler(timeout = "..")]`.
    pub(crate) timeout: Option<std::time::Duration>,
    /// How a transient failure is retried: the handler's policy, else the bus's.
    pub(crate) retry: Option<crate::RetryPolicy>,
    /// `#[handler(durable)]`: its deliveries are recorded in the store.
    pub(crate) durable: bool,
    /// `#[handler(inbox)]`: deliveries the store's inbox recorded are skipped.
    pub(crate) inbox: bool,
    /// `false` for `#[handler(replay = false)]` and for upcast steps (replay follows them
    /// by itself).
    pub(crate) replay: bool,
}

pub(crate) type DynHandler = Arc<dyn Fn(&dyn Payload, &Context) -> HandlerResult + Send + Sync>;

#[derive(Clone)]
pub(crate) enum Target {
    Handler(Call),
    /// Converts the event into its next version and runs that version's handlers.
    Upcast {
        to: &'static EventInfo,
        convert: call::Convert,
    },
    /// `receives`: the event name or pattern, for listing.
    Subscription {
        id: u64,
        call: DynHandler,
        receives: Arc<str>,
    },
}

impl Slot {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn order_key(&self) -> (std::cmp::Reverse<i32>, &str, u64) {
        (std::cmp::Reverse(self.priority), &self.name, self.seq)
    }
}

impl Bus {
    /// Starts configuring a bus.
    pub fn builder() -> BusBuilder {
        BusBuilder::default()
    }

    /// Every event type linked into the binary, by name then version.
    pub fn events(&self) -> &[&'static EventInfo] {
        &self.inner.registry.events
    }

    /// Every `#[handler]` this bus calls (all in the binary, or those in its
    /// [`scope`](BusBuilder::scope)), grouped by event, in dispatch order.
    pub fn handlers(&self) -> &[&'static HandlerInfo] {
        &self.inner.registry.handlers
    }

    /// The names of the handlers and subscriptions an `E` is delivered to now, in the order
    /// they run.
    pub fn handler_names<E: Event>(&self) -> Vec<String> {
        self.slots(TypeId::of::<E>())
            .map(|s| s.iter().map(|s| s.name.to_string()).collect())
            .unwrap_or_default()
    }

    /// How many handlers and subscriptions an `E` is delivered to now.
    pub fn handler_count<E: Event>(&self) -> usize {
        self.slots(TypeId::of::<E>()).map_or(0, |s| s.len())
    }

    /// The event types linked into the binary that no handler or subscription of this bus
    /// takes now (queries count as taken by their responder). At start-up, an event you
    /// expected handled in this list means the crate with its handlers is not linked: add
    /// [`events::link!`](crate::link!) naming it.
    pub fn unhandled_events(&self) -> Vec<&'static EventInfo> {
        let routes = self.inner.routes.load();
        self.inner
            .registry
            .events
            .iter()
            .copied()
            .filter(|e| {
                // Not `e.type_id()`: with `Any` in scope that is the reference's type id.
                let type_id = EventInfo::type_id(e);
                routes.get(&type_id).is_none_or(|s| s.is_empty())
                    && !self.inner.responders.contains_key(&type_id)
            })
            .collect()
    }

    #[inline]
    pub(crate) fn slots(&self, type_id: TypeId) -> Option<Arc<[Slot]>> {
        self.inner.routes.load().get(&type_id).cloned()
    }

    /// Where `type_id`'s handlers are now: the fixed table (no synchronization) unless
    /// dynamic subscriptions exist, then a snapshot of the copy-on-write table.
    #[inline]
    pub(crate) fn route(&self, type_id: TypeId, info: &'static EventInfo) -> Route {
        use std::sync::atomic::Ordering::Acquire;
        // No subscription on this bus, or none to this type on any bus (the type's own
        // count, in its catalog entry: no lookup, so a publish costs the same however many
        // subscriptions other types have).
        if self.inner.subscriptions.load(Acquire) == 0 || info.subscribed.load(Acquire) == 0 {
            return Route::Fixed(type_id);
        }
        self.route_with_subscriptions(type_id)
    }

    /// [`route`](Self::route) for a type that has dynamic subscriptions.
    #[inline(never)]
    fn route_with_subscriptions(&self, type_id: TypeId) -> Route {
        match self.inner.routes.load().get(&type_id) {
            Some(slots) => Route::Snapshot(Arc::clone(slots)),
            None => Route::Fixed(type_id),
        }
    }

    /// The slots a [`Route`] names.
    #[inline]
    pub(crate) fn slots_of<'a>(&'a self, route: &'a Route, type_id: TypeId) -> &'a [Slot] {
        match route {
            Route::Snapshot(slots) => slots,
            Route::Fixed(_) => self.inner.fixed.get(&type_id).map_or(&[], |s| s),
        }
    }
}

impl Bus {
    /// [`slots_of`](Self::slots_of) for a new event's dispatch: an event that nothing takes
    /// is reported ([`taken_by_nothing`](Self::taken_by_nothing)) from the branch that finds
    /// no handlers, so the common case pays no extra test.
    #[inline]
    pub(crate) fn dispatch_slots<'a>(
        &'a self,
        route: &'a Route,
        type_id: TypeId,
        meta: &crate::Meta,
    ) -> &'a [Slot] {
        match route {
            Route::Snapshot(slots) => {
                if slots.is_empty() {
                    self.taken_by_nothing(meta);
                }
                slots
            }
            Route::Fixed(_) => match self.inner.fixed.get(&type_id) {
                Some(slots) => slots,
                None => {
                    self.taken_by_nothing(meta);
                    &[]
                }
            },
        }
    }
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("source", &self.inner.source)
            .field("events", &self.inner.registry.events.len())
            .field("handlers", &self.inner.registry.handlers.len())
            .field("queue_capacity", &self.inner.queue.capacity())
            .finish_non_exhaustive()
    }
}

/// Configures and builds a [`Bus`].
///
/// ```
/// # struct Db;
/// let bus = events::Bus::builder()
///     .source("checkout")
///     .state(Db)
///     .build()?;
/// # Ok::<(), events::BuildError>(())
/// ```
#[must_use]
pub struct BusBuilder {
    /// Whether `scope`, `handler` or `no_handlers` was called: then only what they select
    /// is taken.
    selected: bool,
    scopes: Vec<Cow<'static, str>>,
    /// `handler(..)`: exact names or function paths.
    named: Vec<Cow<'static, str>>,
    source: Option<Cow<'static, str>>,
    states: HashMap<TypeId, AnyState>,
    max_depth: u32,
    queue_capacity: usize,
    workers: Option<usize>,
    request_timeout: std::time::Duration,
    ingest_limits: crate::ingest::IngestLimits,
    retry: Option<crate::RetryPolicy>,
    no_retries: bool,
    dead_letter_capacity: usize,
    max_pending_retries: usize,
    observers: Vec<Arc<dyn crate::observe::Observer>>,
    store: Option<Arc<dyn crate::store::EventStore>>,
    transport: Option<Arc<dyn crate::transport::Transport>>,
    outbox: Option<crate::outbox::OutboxOptions>,
    access: Option<crate::security::AccessRules>,
    rate_limits: Option<crate::security::RateLimits>,
    audit: bool,
    keys: Option<Arc<dyn crate::store::KeyStore>>,
    retention: Option<crate::retention::Retention>,
}

impl Default for BusBuilder {
    fn default() -> Self {
        BusBuilder {
            selected: false,
            scopes: Vec::new(),
            named: Vec::new(),
            source: None,
            states: HashMap::new(),
            max_depth: 64,
            queue_capacity: 8192,
            workers: None,
            request_timeout: std::time::Duration::from_secs(30),
            ingest_limits: crate::ingest::IngestLimits::default(),
            retry: None,
            no_retries: false,
            dead_letter_capacity: 10_000,
            max_pending_retries: 100_000,
            observers: Vec::new(),
            store: None,
            transport: None,
            outbox: None,
            access: None,
            rate_limits: None,
            audit: false,
            keys: None,
            retention: None,
        }
    }
}

impl fmt::Debug for BusBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusBuilder")
            .field("selected", &self.selected)
            .field("scopes", &self.scopes)
            .field("named", &self.named)
            .field("source", &self.source)
            .field("states", &self.states.len())
            .field("max_depth", &self.max_depth)
            .field("queue_capacity", &self.queue_capacity)
            .field("workers", &self.workers)
            .field("request_timeout", &self.request_timeout)
            .field("ingest_limits", &self.ingest_limits)
            .field("retry", &self.retry)
            .field("no_retries", &self.no_retries)
            .field("dead_letter_capacity", &self.dead_letter_capacity)
            .field("max_pending_retries", &self.max_pending_retries)
            .field("observers", &self.observers.len())
            .field("store", &self.store.is_some())
            .finish()
    }
}

impl BusBuilder {
    /// Who publishes: the `source` of every event's metadata. Defaults to the executable's
    /// name.
    ///
    /// Every envelope points at it, so it is kept for the life of the process: a `String`
    /// is leaked once per `build()` (a literal costs nothing).
    pub fn source(mut self, source: impl Into<Cow<'static, str>>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Takes only the `#[handler]`s defined in module `prefix` or below it (e.g.
    /// `"my_app::billing"`, or `module_path!()`); call it again to add modules, and combine
    /// it with [`handler`](Self::handler). Without either, the bus takes every handler in the
    /// binary.
    ///
    /// For several buses in one binary: a test suite, or bounded contexts that must not see
    /// each other's handlers. Handlers outside the selection are neither called nor checked.
    /// A scope that selects no handler fails [`build`](Self::build)
    /// ([`Problem::NoMatch`](crate::Problem::NoMatch)): for a bus without handlers, say
    /// [`no_handlers`](Self::no_handlers).
    pub fn scope(mut self, prefix: impl Into<Cow<'static, str>>) -> Self {
        self.selected = true;
        self.scopes.push(prefix.into());
        self
    }

    /// Takes the one `#[handler]` with this name (`"billing.charge"`) or function path
    /// (`"my_app::billing::charge"`); call it again to add handlers, and combine it with
    /// [`scope`](Self::scope). A name that selects no handler fails [`build`](Self::build)
    /// ([`Problem::NoMatch`](crate::Problem::NoMatch)).
    pub fn handler(mut self, name_or_path: impl Into<Cow<'static, str>>) -> Self {
        self.selected = true;
        self.named.push(name_or_path.into());
        self
    }

    /// Takes no `#[handler]` unless [`scope`](Self::scope) or [`handler`](Self::handler)
    /// select some: a bus for dynamic [subscriptions](Bus::subscribe) only, or for a test
    /// that publishes into nothing on purpose.
    pub fn no_handlers(mut self) -> Self {
        self.selected = true;
        self
    }

    /// Shared state that handlers take as `State<T>`. One value per type; a second call with
    /// the same type replaces the first.
    pub fn state<T: Send + Sync + 'static>(self, value: T) -> Self {
        self.shared_state(Arc::new(value))
    }

    /// Like [`state`](Self::state), for a value already behind an `Arc`.
    pub fn shared_state<T: Send + Sync + 'static>(mut self, value: Arc<T>) -> Self {
        self.states
            .insert(TypeId::of::<T>(), value as Arc<dyn Any + Send + Sync>);
        self
    }

    /// How many generations of child events one root event may cause (default 64). Past it,
    /// publishing fails with [`PublishError::TooDeep`]: usually a handler that publishes the
    /// event that triggers it.
    pub fn max_depth(mut self, depth: u32) -> Self {
        self.max_depth = depth;
        self
    }

    /// How many emitted events may wait for a worker (default 8192). When the queue is full,
    /// [`Bus::emit`] waits for room and [`Bus::try_emit`] refuses. At least 1.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// How many worker tasks process emitted events (default: the number of CPUs). Each
    /// worker handles one event at a time; events from one worker run in queue order.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers.max(1));
        self
    }

    /// How long [`Bus::request`] waits for an answer unless the request sets its own
    /// [`timeout`](Request::timeout) (default 30 seconds).
    pub fn request_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How handlers without their own `#[handler(retry(..))]`, and subscriptions without
    /// [`SubscribeOptions::retry`], retry a transient failure (default: they do not). A
    /// handler's own policy wins over this one, `RetryPolicy::none()` included: to turn every
    /// retry off (in a test, say), use [`no_retries`](Self::no_retries). The precedence is
    /// on [`RetryPolicy`](crate::RetryPolicy).
    pub fn retry(mut self, policy: crate::RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Turns every retry off, handlers' own `#[handler(retry(..))]` and subscriptions' own
    /// included: a transient failure is final at once (dead-lettered). For tests that want
    /// a failure's fate without waiting for retries.
    pub fn no_retries(mut self) -> Self {
        self.no_retries = true;
        self
    }

    /// How many dead letters the in-memory queue keeps (default 10,000, at least 1); past
    /// it the oldest is dropped, with a warning in the log.
    pub fn dead_letter_capacity(mut self, capacity: usize) -> Self {
        self.dead_letter_capacity = capacity;
        self
    }

    /// How many retries may wait for their delay at once (default 100,000). Each waiting
    /// retry holds a copy of its event; when this many wait, a further transient failure is
    /// not retried but dead-lettered, with the reason, so that an outage that fails every
    /// call cannot grow memory without bound. `0` turns retries off.
    pub fn max_pending_retries(mut self, max: usize) -> Self {
        self.max_pending_retries = max;
        self
    }

    /// How large and how deeply nested outside JSON may be
    /// ([`Bus::publish_json`], [`Bus::ingest_cloudevent`]); default 1 MiB and 32 levels.
    pub fn ingest_limits(mut self, limits: crate::ingest::IngestLimits) -> Self {
        self.ingest_limits = limits;
        self
    }

    /// Where to keep events (see [`crate::store`]): every published or emitted event is
    /// appended before its handlers run, and `publish` resolves (`emit` returns) only once
    /// the store has it. Durable handlers' deliveries are recorded, dead letters are kept
    /// there (and loaded from there by `build()`), and [`Bus::recover`] and [`Bus::replay`]
    /// read it.
    pub fn store(mut self, store: impl crate::store::EventStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Sends events that are not local through `transport` (NATS JetStream with feature
    /// `nats`, or any [`Transport`](crate::transport::Transport)) and lets
    /// [`Bus::consume`] run this process's share of the handlers.
    pub fn transport(mut self, transport: impl crate::transport::Transport) -> Self {
        self.transport = Some(Arc::new(transport));
        self
    }

    /// Turns on the outbox (see [`crate::outbox`]): with a store that keeps one (every store
    /// of this crate and its adapters does) and a transport, an event that leaves the
    /// process is committed to the store with an outbox entry, and a forwarder, started here
    /// on the current tokio runtime, sends committed entries to the broker in commit order,
    /// many in flight, and retries while the broker is away. `publish` then resolves on the
    /// local commit ([`Ack::Local`](crate::outbox::Ack::Local), the default of
    /// [`OutboxOptions`](crate::outbox::OutboxOptions)) unless it asks for the broker's
    /// acknowledgement ([`PublishOptions::ack`](crate::PublishOptions::ack)).
    ///
    /// `build()` fails ([`Problem::Outbox`](crate::Problem::Outbox)) without a store that
    /// keeps an outbox, without a transport, or outside a tokio runtime.
    pub fn outbox(mut self, options: crate::outbox::OutboxOptions) -> Self {
        self.outbox = Some(options);
        self
    }

    /// Who may publish what from outside: with rules, an entry point that takes outside
    /// input ([`Bus::ingress`], [`Bus::publish_json`], the CloudEvents entry points, a NATS
    /// consumer) refuses a caller no rule allows ([`IngestError::Forbidden`](crate::IngestError)).
    /// Without (the default), every caller may publish every event. See
    /// [`security`](crate::security).
    pub fn access(mut self, rules: crate::security::AccessRules) -> Self {
        self.access = Some(rules);
        self
    }

    /// How often callers may publish from outside: past a limit, an entry point refuses the
    /// call ([`IngestError::RateLimited`](crate::IngestError), with when to retry). No limit
    /// by default. See [`security`](crate::security).
    pub fn rate_limits(mut self, limits: crate::security::RateLimits) -> Self {
        self.rate_limits = Some(limits);
        self
    }

    /// Records the bus's own security- and operator-relevant actions as events of the
    /// [`audit`](crate::audit) module (`events.audit.>`): refusals at the entry points,
    /// dead letters retried or discarded, replays, forgotten data subjects, retention runs.
    /// They are published like any other event: stored, queried, handled. Off by default.
    pub fn audit(mut self, on: bool) -> Self {
        self.audit = on;
        self
    }

    /// Where the data keys of [`Personal`](crate::personal::Personal) values are kept,
    /// instead of the store's own key store: a key management service, a vault.
    pub fn keys(mut self, keys: impl crate::store::KeyStore) -> Self {
        self.keys = Some(Arc::new(keys));
        self
    }

    /// How long the store keeps events and dead letters (see
    /// [`retention`](crate::retention)): enforced every
    /// [`Retention::every`](crate::retention::Retention::every) by a background task (when
    /// the bus is built inside a runtime) and by [`Bus::enforce_retention`]. Without it (the
    /// default) nothing is ever deleted.
    pub fn retention(mut self, retention: crate::retention::Retention) -> Self {
        self.retention = Some(retention);
        self
    }

    /// Adds an observer, told about every event's lifecycle (see [`crate::observe`]).
    /// Observers are called in the order they were added.
    pub fn observer(mut self, observer: impl crate::observe::Observer) -> Self {
        self.observers.push(Arc::new(observer));
        self
    }

    /// Collects every event and handler in the binary, checks them, and precomputes routing.
    ///
    /// # Errors
    /// A [`BuildError`] listing every problem: two types with the same event name and
    /// version, a handler whose `State<T>` was not given, two handlers with the same name, a
    /// query with no responder (when the query is declared within the bus's scope) or with
    /// several.
    pub fn build(self) -> Result<Bus, BuildError> {
        crate::envelope::warm_up_clock();
        let mut registry = Registry::collect();
        // The bus's own audit records are in its catalog only when it records them.
        if !self.audit {
            registry
                .events
                .retain(|e| !crate::security::is_audit_record(e.name));
        }
        let mut problems = crate::registry::check_links(&registry);
        if self.selected {
            problems.extend(select::unmatched(
                &registry.handlers,
                &self.scopes,
                &self.named,
            ));
            registry.handlers.retain(|h| {
                self.scopes.iter().any(|s| in_module(h.module, s))
                    || self.named.iter().any(|n| h.name == n || h.function == n)
            });
        }
        if let Some(source) = self
            .source
            .as_deref()
            .filter(|s| s.chars().any(char::is_control))
        {
            problems.insert(
                0,
                crate::registry::Problem::BadSource {
                    source: crate::ingest::clip(source),
                },
            );
        }
        for reason in (self.access.iter().flat_map(|a| a.problems()))
            .chain(self.rate_limits.iter().flat_map(|r| r.problems()))
            .chain(self.retention.iter().flat_map(|r| r.problems()))
        {
            problems.push(crate::registry::Problem::Security { reason });
        }
        let has_keys =
            self.keys.is_some() || self.store.as_ref().is_some_and(|s| s.keys().is_some());
        if let (Some(transport), false) = (&self.transport, has_keys) {
            for info in registry.events.iter().filter(|e| e.personal) {
                if !transport.is_local(info.name) {
                    problems.push(crate::registry::Problem::Security {
                        reason: format!(
                            "event `{}` holds personal data and leaves the process, and the bus \
                             keeps no keys to seal it with: give it a store that keeps keys \
                             (SQLite, PostgreSQL) or `BusBuilder::keys`",
                            info.name
                        ),
                    });
                }
            }
        }
        let runtime = tokio::runtime::Handle::try_current().ok();
        if self.outbox.is_some() {
            let missing = if self.store.as_ref().is_none_or(|s| s.outbox().is_none()) {
                Some("a store that keeps an outbox (`BusBuilder::store`)")
            } else if self.transport.is_none() {
                Some("a transport (`BusBuilder::transport`)")
            } else if runtime.is_none() {
                Some("a tokio runtime: build the bus inside one")
            } else {
                None
            };
            if let Some(missing) = missing {
                problems.push(crate::registry::Problem::Outbox { missing });
            }
        }
        let (selected, scopes) = (self.selected, &self.scopes);
        registry.check(
            problems,
            |t| t == TypeId::of::<crate::handler::InboxOf>() || self.states.contains_key(&t),
            |module| !selected || scopes.iter().any(|s| in_module(module, s)),
        )?;

        let mut fixed = Routes::default();
        let mut responders: HashMap<TypeId, Slot, BuildHasherDefault<TypeIdHasher>> =
            HashMap::default();
        let mut grouped: HashMap<TypeId, Vec<Slot>> = HashMap::new();
        let mut durable = Vec::new();
        // One gate per durable handler, shared by every event type it takes: closed while
        // `Bus::rebuild` replays its history.
        let mut gates: HashMap<&'static str, Arc<std::sync::atomic::AtomicBool>> = HashMap::new();
        for h in &registry.handlers {
            let states: Vec<Option<AnyState>> = std::iter::once(None)
                .chain(h.params.iter().map(|p| {
                    p().and_then(|k| {
                        if k.type_id == TypeId::of::<crate::handler::InboxOf>() {
                            // An `InboxKey` parameter: the handler it belongs to.
                            let of: AnyState = Arc::new(crate::handler::InboxOf(h.name));
                            return Some(of);
                        }
                        self.states.get(&k.type_id).cloned()
                    })
                }))
                .collect();
            let states: Arc<[Option<AnyState>]> = states.into();
            let filter = h.filter.map(|make| make());
            // One semaphore per handler, shared by every event a wildcard handler receives.
            let limit = h
                .concurrency
                .map(|n| Arc::new(tokio::sync::Semaphore::new(n as usize)));
            // A typed handler joins its event's route; a wildcard handler joins the route of
            // every registered event its pattern matches (all of them without a pattern).
            let targets: Vec<&'static EventInfo> = match h.event() {
                Some(info) => vec![info],
                None => registry
                    .events
                    .iter()
                    .copied()
                    .filter(|e| h.pattern.is_none_or(|p| crate::pattern::matches(p, e.name)))
                    .collect(),
            };
            for info in targets {
                let slot = Slot {
                    name: Cow::Borrowed(h.name),
                    priority: h.priority,
                    event: info.name,
                    seq: 0,
                    target: Target::Handler(h.call),
                    filter: filter.clone(),
                    states: Arc::clone(&states),
                    paused: h
                        .durable
                        .then(|| Arc::clone(gates.entry(h.name).or_default())),
                    limit: limit.clone(),
                    timeout: h.timeout(),
                    retry: h
                        .retry
                        .or(self.retry)
                        .filter(|p| !self.no_retries && p.max_retries() > 0),
                    durable: h.durable,
                    inbox: h.inbox,
                    replay: h.replay,
                };
                if h.durable && !h.is_responder() {
                    durable.push((info, slot.clone()));
                }
                if h.is_responder() {
                    // At most one per query: `check` refused several.
                    responders.insert(info.type_id(), slot);
                } else {
                    grouped.entry(info.type_id()).or_default().push(slot);
                }
            }
        }
        // An older version's route ends with the step to the next version, whose handlers
        // then run (and so on along the chain).
        for info in &registry.events {
            if let Some(u) = &info.upcast {
                let from = (u.from)();
                grouped.entry(from.type_id()).or_default().push(Slot {
                    name: Cow::Owned(format!("upcast to {} v{}", info.name, info.version)),
                    priority: i32::MIN,
                    event: from.name,
                    seq: u64::MAX,
                    target: Target::Upcast {
                        to: info,
                        convert: u.convert,
                    },
                    filter: None,
                    states: Arc::new([]),
                    paused: None,
                    limit: None,
                    timeout: None,
                    retry: None,
                    durable: false,
                    inbox: false,
                    replay: true,
                });
            }
        }
        for (type_id, mut slots) in grouped {
            slots.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
            fixed.insert(type_id, slots.into());
        }

        let unhandled_warned = registry
            .events
            .iter()
            .map(|e| EventInfo::type_id(e))
            .filter(|t| !fixed.contains_key(t))
            .map(|t| (t, std::sync::atomic::AtomicBool::new(false)))
            .collect();
        let source: &'static str = match self.source {
            Some(Cow::Borrowed(s)) => s,
            Some(Cow::Owned(s)) => Box::leak(s.into_boxed_str()),
            None => default_source(),
        };
        let priorities: Vec<i32> = registry.events.iter().map(|e| e.priority).collect();
        // Outside input can never claim to be one of the bus's own audit records.
        let outside: Vec<&'static EventInfo> = registry
            .events
            .iter()
            .copied()
            .filter(|e| !crate::security::is_audit_record(e.name))
            .collect();
        let catalog = crate::ingest::Catalog::new(&outside);
        let workers = self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let bus = Bus {
            inner: Arc::new(Inner {
                registry,
                source,
                max_depth: self.max_depth,
                routes: ArcSwap::from_pointee(fixed.clone()),
                fixed,
                responders,
                request_timeout: self.request_timeout,
                catalog,
                ingest_limits: self.ingest_limits,
                guard: guard::Guard::new(self.access, self.rate_limits),
                auditor: self.audit.then(audit::Auditor::new),
                keys: personal::Keys::new(self.keys, self.store.as_ref()),
                retention: self
                    .retention
                    .filter(|r| !r.rules.is_empty() || r.dead_letters.is_some()),
                dead_letters: dead_letters::Queue::new(self.dead_letter_capacity),
                max_pending_retries: self.max_pending_retries,
                dynamic: Mutex::new(Vec::new()),
                next_sub: std::sync::atomic::AtomicU64::new(1),
                subscriptions: std::sync::atomic::AtomicUsize::new(0),
                queue: Arc::new(queue::Queue::new(self.queue_capacity, workers, &priorities)),
                lifecycle: lifecycle::Lifecycle::default(),
                observers: crate::observe::Observers(self.observers.into()),
                outbound: self.store.is_some() || self.transport.is_some(),
                inbox_hits: std::sync::atomic::AtomicU64::new(0),
                rebuilds: Mutex::new(HashMap::new()),
                paused: Mutex::new(std::collections::HashSet::new()),
                forwarder: self
                    .outbox
                    .map(|o| Arc::new(outbox::Forwarder::new(o, source))),
                store: self.store,
                transport: self.transport,
                default_retry: self.retry,
                no_retries: self.no_retries,
                durable,
                unhandled_warned,
            }),
        };
        bus.load_dead_letters();
        if let Some(runtime) = &runtime {
            outbox::Forwarder::start(&bus, runtime);
        }
        bus.start_retention();
        Ok(bus)
    }
}

impl crate::observe::QueueDepth for Bus {
    fn queue_depth(&self) -> usize {
        self.queue_len()
    }
}

/// `module` is `prefix` or a module below it.
pub(crate) fn in_module(module: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches("::");
    module
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

/// The executable's name, computed once per process.
fn default_source() -> &'static str {
    static SOURCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SOURCE.get_or_init(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "events".to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::in_module;

    #[test]
    fn scope_matches_whole_module_segments() {
        assert!(in_module("app::billing", "app::billing"));
        assert!(in_module("app::billing::cards", "app::billing"));
        assert!(in_module("app::billing::cards", "app::billing::"));
        assert!(in_module("app", "app"));
        assert!(!in_module("app::billing2", "app::billing"));
        assert!(!in_module("app", "app::billing"));
    }
}
