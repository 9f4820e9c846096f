//! The testing kit: a bus limited to the handlers under test, every event it dispatches
//! captured with its envelope, typed assertions, and a wait until the bus is idle.
//!
//! ```standalone_crate
//! use events::testing::TestBus;
//! use events::{Bus, Context, Event, handler};
//!
//! #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! #[event(name = "order.placed")]
//! struct OrderPlaced { order_id: u64 }
//!
//! #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! #[event(name = "order.confirmed")]
//! struct OrderConfirmed { order_id: u64 }
//!
//! #[handler(name = "orders.confirm")]
//! async fn confirm(ev: &OrderPlaced, ctx: &Context) -> Result<(), events::HandlerError> {
//!     ctx.emit(OrderConfirmed { order_id: ev.order_id }).await?;
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let t = TestBus::new(Bus::builder().handler("orders.confirm")).unwrap();
//! t.publish(OrderPlaced { order_id: 7 }).await.unwrap();
//! t.settle().await; // the emitted confirmation has been handled too
//!
//! let placed = t.expect_one::<OrderPlaced>(|e| e.order_id == 7);
//! let confirmed = t.expect_one::<OrderConfirmed>(|e| e.order_id == 7);
//! assert_eq!(confirmed.meta.causation_id(), Some(placed.meta.id()));
//! assert!(t.dead_letters().is_empty());
//! # }
//! ```
//!
//! - **Selection.** [`TestBus::new`] takes any [`BusBuilder`]: narrow it with
//!   [`BusBuilder::handler`] (an exact handler name or function path) and
//!   [`BusBuilder::scope`] (a module). A selector that matches no handler fails
//!   [`build`](BusBuilder::build) with [`Problem::NoMatch`](crate::Problem::NoMatch), so a
//!   typo is not an empty bus.
//! - **Capture.** Every event the bus dispatches (published, emitted when a worker takes it,
//!   child events, events from [`Bus::publish_json`] and CloudEvents) is kept with its
//!   [`Meta`], in dispatch order. [`published`](TestBus::published) reads them back as typed
//!   values, [`captured`](TestBus::captured) as JSON, [`expect_one`](TestBus::expect_one) and [`expect_none`](TestBus::expect_none)
//!   assert on them. Events sent over a transport are handled elsewhere and not captured.
//! - **Idle.** [`settle`](TestBus::settle) waits until no event is queued or being handled
//!   by a worker and no retry is waiting, within [`settle_timeout`](TestBus::settle_timeout)
//!   (30 s by default, on tokio's clock: with `#[tokio::test(start_paused = true)]` retry
//!   delays pass at once). Failing, it panics with what is still pending and everything
//!   captured.
//! - **Failures.** [`dead_letters`](TestBus::dead_letters) lists the calls that failed for
//!   good, [`pending_retries`](TestBus::pending_retries) counts the retries waiting, and the
//!   bus's [store](Bus::store) is there as on any bus. Everything else on [`Bus`] is there
//!   too ([`TestBus`] derefs to it).
//! - **Handlers without a bus.** A `#[handler]` is still a plain function: call it with
//!   [`State::new`](crate::State::new) and [`Context::for_test`](crate::Context::for_test).
//! - **Aggregates.** [`AggregateTest`]: given past events, when a command, then new events
//!   or an error, with no store or bus; [`check_aggregates`] checks that every aggregate's
//!   events round-trip through JSON and upcasting.
//! - **Stores.** [`store`] is the conformance suite every [`EventStore`](crate::store::EventStore)
//!   passes, run with [`store_conformance!`](crate::store_conformance).

mod aggregate;
pub mod store;
pub mod transport;

pub use aggregate::{AggregateTest, Then, check_aggregate, check_aggregates};

use std::any::TypeId;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::bus::{Bus, BusBuilder};
use crate::dead_letter::{DeadLetter, DeadLetterFilter};
use crate::envelope::Meta;
use crate::event::{AnyEvent, Event};
use crate::registry::BuildError;

/// A [`Bus`] that records every event it dispatches. See the [module docs](self).
///
/// It derefs to its [`Bus`]: publish, emit, request and subscribe on it as on any bus.
#[derive(Clone)]
pub struct TestBus {
    bus: Bus,
    recorder: Arc<Recorder>,
    settle_timeout: Duration,
}

/// One captured event of type `E`: the value as the handlers saw it, and its envelope.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Published<E> {
    /// The event.
    pub event: E,
    /// Its envelope: id, correlation and causation ids, source, metadata.
    pub meta: Meta,
}

impl<E> Deref for Published<E> {
    type Target = E;
    fn deref(&self) -> &E {
        &self.event
    }
}

/// One captured event of any type: its envelope and its payload as JSON.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Its envelope.
    pub meta: Meta,
    /// The payload as JSON; `None` when the type's `Serialize` failed (the handlers still
    /// ran).
    pub payload: Option<serde_json::Value>,
    type_id: TypeId,
}

/// What the observer captured, shared with the [`TestBus`].
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Captured>>,
}

/// The observer that captures.
struct Capture(Arc<Recorder>);

impl crate::observe::Observer for Capture {
    fn dispatching(&self, meta: &Meta, event: &AnyEvent) {
        let captured = Captured {
            meta: meta.clone(),
            payload: event.to_json().ok(),
            type_id: event.as_any().type_id(),
        };
        lock(&self.0.events).push(captured);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What kept [`TestBus::try_settle`] from finishing in time.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Unsettled {
    /// How long it waited.
    pub waited: Duration,
    /// Events still in the queue.
    pub queued: usize,
    /// Events a worker was handling.
    pub running: usize,
    /// Retries still waiting for their delay (or running).
    pub retries: usize,
    /// Every captured event so far, one per line (`name id`).
    pub published: String,
}

impl fmt::Display for Unsettled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the bus did not settle within {:?}: {} queued, {} being handled, {} retries \
             waiting\n{}",
            self.waited, self.queued, self.running, self.retries, self.published
        )
    }
}

impl std::error::Error for Unsettled {}

impl TestBus {
    /// Builds `builder` into a bus that records every event it dispatches.
    ///
    /// # Errors
    /// As [`BusBuilder::build`]: every problem at once, including a
    /// [`scope`](BusBuilder::scope) or [`handler`](BusBuilder::handler) that selects nothing.
    pub fn new(builder: BusBuilder) -> Result<TestBus, BuildError> {
        let recorder = Arc::new(Recorder::default());
        let bus = builder.observer(Capture(Arc::clone(&recorder))).build()?;
        Ok(TestBus {
            bus,
            recorder,
            settle_timeout: Duration::from_secs(30),
        })
    }

    /// How long [`settle`](Self::settle) waits at most: default 30 s, on tokio's clock (a
    /// paused clock lets retry delays pass at once, so long retry chains cost no real time).
    #[must_use]
    pub fn settle_timeout(mut self, timeout: Duration) -> TestBus {
        self.settle_timeout = timeout;
        self
    }

    /// The bus.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Waits until the bus is idle: nothing queued, no worker handling an event, no retry
    /// waiting. Child events published by handlers are handled inside their parent's
    /// dispatch; emitted ones go through the queue: both are done when this returns. (Tasks
    /// a handler started itself, with [`spawn`](crate::spawn), are not tracked.)
    ///
    /// # Panics
    /// When the bus is still busy after the [`settle_timeout`](Self::settle_timeout), with
    /// what is pending and every event captured so far.
    pub async fn settle(&self) {
        if let Err(e) = self.try_settle().await {
            panic!("{e}");
        }
    }

    /// [`settle`](Self::settle), returning what is still pending instead of panicking.
    ///
    /// # Errors
    /// [`Unsettled`] after the [`settle_timeout`](Self::settle_timeout).
    pub async fn try_settle(&self) -> Result<(), Unsettled> {
        let start = tokio::time::Instant::now();
        // Idle twice in a row, a tick apart: a handler that emits a child and returns between
        // the reads of one look cannot pass for idle.
        let mut idle_before = false;
        loop {
            let (queued, running, retries) = self.bus.activity();
            let idle = queued == 0 && running == 0 && retries == 0;
            if idle && idle_before {
                return Ok(());
            }
            idle_before = idle;
            let waited = start.elapsed();
            if waited >= self.settle_timeout {
                return Err(Unsettled {
                    waited,
                    queued,
                    running,
                    retries,
                    published: self.log(),
                });
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Every captured `E`, in dispatch order.
    ///
    /// # Panics
    /// When a captured `E` does not read back from its own JSON (a `Serialize` and
    /// `Deserialize` that disagree).
    pub fn published<E: Event>(&self) -> Vec<Published<E>> {
        self.captured_of::<E>()
            .into_iter()
            .map(|c| {
                let event = c
                    .payload
                    .and_then(|p| serde_json::from_value(p).ok())
                    .unwrap_or_else(|| {
                        panic!(
                            "a captured `{}` does not read back from its JSON: its `Serialize` \
                             and `Deserialize` disagree",
                            E::NAME
                        )
                    });
                Published {
                    event,
                    meta: c.meta,
                }
            })
            .collect()
    }

    /// The one captured `E` for which `matches` holds.
    ///
    /// # Panics
    /// When none or several match, listing every captured event.
    #[track_caller]
    pub fn expect_one<E: Event>(&self, matches: impl Fn(&E) -> bool) -> Published<E> {
        let mut found: Vec<Published<E>> = self
            .published::<E>()
            .into_iter()
            .filter(|p| matches(&p.event))
            .collect();
        if found.len() != 1 {
            panic!(
                "expected exactly one `{}` matching the predicate, found {}\n{}",
                E::NAME,
                found.len(),
                self.log()
            );
        }
        found.remove(0)
    }

    /// Asserts that no `E` was captured.
    ///
    /// # Panics
    /// When one was, listing every captured event.
    #[track_caller]
    pub fn expect_none<E: Event>(&self) {
        let n = self.count_of(Some(TypeId::of::<E>()));
        if n != 0 {
            panic!("expected no `{}`, found {n}\n{}", E::NAME, self.log());
        }
    }

    /// Asserts that no event at all was captured.
    ///
    /// # Panics
    /// When one was, listing every captured event.
    #[track_caller]
    pub fn expect_nothing(&self) {
        let n = self.count_of(None);
        if n != 0 {
            panic!("expected no event, found {n}\n{}", self.log());
        }
    }

    /// Every captured event, of any type, in dispatch order.
    pub fn captured(&self) -> Vec<Captured> {
        lock(&self.recorder.events).clone()
    }

    /// Forgets what was captured (the bus, its dead letters and its store keep theirs).
    pub fn clear(&self) {
        lock(&self.recorder.events).clear();
    }

    /// Every captured event, one line each: `1. order.placed 0190… (child of 0190…)`.
    pub fn log(&self) -> String {
        let events = lock(&self.recorder.events);
        if events.is_empty() {
            return "captured: nothing".to_owned();
        }
        let mut out = format!("captured ({}):", events.len());
        for (i, c) in events.iter().enumerate() {
            out.push_str(&format!("\n  {}. {} {}", i + 1, c.meta.name(), c.meta.id()));
            if let Some(parent) = c.meta.causation_id() {
                out.push_str(&format!(" (child of {parent})"));
            }
        }
        out
    }

    /// The handler calls that failed for good, oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.bus.dead_letters().list(&DeadLetterFilter::all())
    }

    /// How many retries wait for their delay (or are running) now.
    pub fn pending_retries(&self) -> usize {
        self.bus.activity().2
    }

    fn captured_of<E: Event>(&self) -> Vec<Captured> {
        let type_id = TypeId::of::<E>();
        lock(&self.recorder.events)
            .iter()
            .filter(|c| c.type_id == type_id)
            .cloned()
            .collect()
    }

    fn count_of(&self, type_id: Option<TypeId>) -> usize {
        lock(&self.recorder.events)
            .iter()
            .filter(|c| type_id.is_none_or(|t| c.type_id == t))
            .count()
    }
}

impl Deref for TestBus {
    type Target = Bus;
    fn deref(&self) -> &Bus {
        &self.bus
    }
}

impl fmt::Debug for TestBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestBus")
            .field("bus", &self.bus)
            .field("captured", &lock(&self.recorder.events).len())
            .field("settle_timeout", &self.settle_timeout)
            .finish()
    }
}
