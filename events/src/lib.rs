//! Typed, macro-driven events for Rust services.
//!
//! Declare an event as a plain type with `#[derive(Event)]`, write handlers as plain
//! functions with `#[handler]`, build a [`Bus`] and publish. Handlers anywhere in the binary
//! are found at start-up, with no registration list, and dispatch by type is checked by the
//! compiler.
//!
//! ```standalone_crate
//! use events::{Bus, Context, Event, HandlerError, State, handler};
//!
//! /// An order was placed.
//! #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! #[event(name = "order.placed")]
//! struct OrderPlaced { order_id: u64, total_cents: u64 }
//!
//! struct Ledger { total: std::sync::Mutex<u64> }
//!
//! #[handler(priority = 10)]
//! fn book(ev: &OrderPlaced, ledger: State<Ledger>) {
//!     *ledger.total.lock().unwrap() += ev.total_cents;
//! }
//!
//! #[handler]
//! async fn confirm(ev: &OrderPlaced, ctx: &Context) -> Result<(), HandlerError> {
//!     assert_eq!(ctx.meta().name(), "order.placed");
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = Bus::builder().state(Ledger { total: std::sync::Mutex::new(0) }).build()?;
//! let receipt = bus.publish(OrderPlaced { order_id: 1, total_cents: 995 }).await?;
//! assert!(receipt.is_ok());
//! assert_eq!(receipt.delivered(), 2);
//! # Ok(()) }
//! ```
//!
//! # Handler signatures
//!
//! A `#[handler]` is a free `fn` or `async fn`:
//! - its first parameter is the event, by shared reference: `ev: &OrderPlaced`;
//! - further parameters, in any order: `ctx: &Context` (the envelope, and publishing child
//!   events) and `State<T>` (state given to [`BusBuilder::state`]);
//! - it returns `()` or `Result<(), E>` where `E: Into<HandlerError>`; a handler of a
//!   [`Query`] may instead return the query's response type `T` or `Result<T, E>`: it is
//!   then the query's responder, which [`Bus::request`] awaits;
//! - an `async fn` handler's future must be `Send`.
//!
//! # Handler options
//!
//! `#[handler(name = "billing.charge", priority = 10, retry(max = 5))]`; every option at most
//! once. Handlers run in priority order (higher first), then by name. Anything not in this
//! table is a compile error on the offending token.
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `name = "billing.charge"` | the function's path | the handler's name in receipts, logs, metrics, dead letters and `Replay::only` |
//! | `priority = 10` | `0` | higher runs first |
//! | `filter = ..` | none | a [`Filter`] expression (`Filter::target("billing") \| Filter::untargeted()`) or a `fn(&E, &Meta) -> bool`, evaluated per event; a handler filtered out does not run |
//! | `pattern = "order.*"` | none | for a wildcard handler (`ev: &AnyEvent`): the event names it takes, `*` for one segment, a final `>` for the rest |
//! | `retry(..)` | the bus's [`BusBuilder::retry`], else none | re-runs the handler alone after a transient failure: `max = 5` (retries, default 3), `backoff = "exponential"` (default: the delay doubles from `base`) or `backoff = "fixed"` (every delay is `base`), `base = "100ms"` (default), `max_delay = "30s"` (default), `jitter = true` (default; `false` for exact delays); durations are a whole number with `ms`, `s`, `m` or `h` |
//! | `durable` | off | with a [`store`]: deliveries are recorded, and [`Bus::recover`] makes the ones a crash interrupted |
//! | `inbox` | off | with a store that keeps an inbox: the handler takes an [`outbox::InboxKey`] and records it in the transaction of its writes; a delivery whose key is recorded is skipped (exactly once for those writes: see the README's "Offline and outbox") |
//! | `replay = false` | `true` | [`Bus::replay`] never calls the handler (one that sends mail, say) |
//! | `concurrency = 4` | unlimited | `async fn` only: at most this many calls at once, across publishes |
//! | `timeout = "2s"` | none | `async fn` only: a call past it fails with a transient [`HandlerTimedOut`] |
//! | `crate = path` | `::events` | where the `events` crate is, when it is renamed or re-exported |
//!
//! # Linking
//!
//! Handlers are collected with [`inventory`](https://docs.rs/inventory) when the bus is built,
//! from everything linked into the binary. rustc links a dependency only when the code names
//! something in it, and a crate of handlers is usually named by nothing: name it once with
//! [`link!`] (`events::link!(billing);` in `main.rs`, or at the top of an integration test).
//! `build()` then checks that it contributed handlers or events
//! ([`Problem::LinkedNothing`]). A forgotten `link!` is loud: an event that nothing takes
//! gets a receipt that is not [`is_ok`](Receipt::is_ok) and names the fix
//! ([`Receipt::is_unhandled`]), with a warning in the log; [`Bus::unhandled_events`] lists
//! such events; a query without a responder, and a [`BusBuilder::scope`] or
//! [`BusBuilder::handler`] that selects nothing, fail `build()` with the same advice.
//!
//! # Testing
//!
//! [`testing::TestBus`] captures every event a bus dispatches, with typed assertions and a
//! wait until the bus is idle; [`State::new`] and [`Context::for_test`] call a handler
//! without a bus. See [`testing`].

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub use events_core::*;

/// Event stores: the history of published events, delivery records and durable dead
/// letters ([`store::EventStore`]); with feature `sqlite`, [`store::SqliteStore`].
pub mod store {
    pub use events_core::store::*;
    #[cfg(feature = "sqlite")]
    pub use events_sqlite::{SqliteOptions, SqliteStore, Synchronous, rusqlite};
}

/// CloudEvents and plain JSON over HTTP (feature `http`): [`http::router`].
#[cfg(feature = "http")]
pub use events_http as http;

/// The `events` command line (feature `cli`), linked into a binary of yours so that it
/// knows your events and handlers: [`cli::Cli`].
#[cfg(feature = "cli")]
pub use events_cli as cli;
#[cfg(feature = "nats")]
pub use events_nats as nats;

#[cfg(feature = "postgres")]
pub use events_postgres as postgres;
