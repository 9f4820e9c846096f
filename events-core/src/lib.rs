//! The core of [`events`](https://docs.rs/events): the model, the bus, the store and
//! transport seams, the in-memory store and loopback transport, and the testing kit.
//!
//! Applications depend on `events`, which re-exports all of this with the adapters
//! (`events-sqlite`, `events-nats`, `events-postgres`) behind its features. An adapter
//! depends on this crate alone, and only on its public API: [`store::EventStore`] and
//! [`transport::Transport`] are the seams, [`testing::store`] and [`testing::transport`] the
//! conformance suites an adapter runs with one macro.

#![deny(missing_docs)]
#![warn(unreachable_pub, rust_2018_idioms)]
#![forbid(unsafe_code)]
// Nothing user input reaches may panic; tests may.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod aggregate;
#[cfg(feature = "macros")]
pub mod audit;
mod bus;
pub mod compat;
mod context;
mod dead_letter;
mod dedup;
#[cfg(feature = "docs")]
pub mod docs;
mod envelope;
mod error;
mod event;
mod example;
mod filter;
mod handler;
mod ids;
mod ingest;
mod link;
pub mod observe;
mod options;
pub mod outbox;
mod outcome;
mod pattern;
pub mod personal;
mod receipt;
mod registry;
pub mod retention;
pub mod retry;
pub mod security;
pub mod store;
pub mod testing;
pub mod text;
pub mod transport;
mod wire;

#[doc(hidden)]
pub mod __private;

pub use aggregate::{Aggregate, Apply, Changes, Decision};
pub use bus::{
    Aggregates, Bus, BusBuilder, CommandError, DeadLetters, Executed, Ingress, Lag, LoadError,
    Loaded, PublishError, Rebuild, RebuildError, RebuildProgress, RebuildReport, Recovery, Replay,
    ReplayError, ReplayProgress, ReplayReport, Request, RequestError, ShutdownReport, Staged,
    StagedRow, SubscribeOptions, Subscription, SubscriptionInfo, Unprocessed,
};
pub use context::{Context, spawn};
pub use dead_letter::{DeadLetter, DeadLetterFilter};
pub use dedup::Deduplicator;
pub use envelope::Meta;
pub use event::{AnyEvent, Event, EventInfo, EventKind, Payload, Query, ResponseInfo};
pub use filter::{Filter, IntoFilter};
pub use handler::{
    FromInvocation, HandlerError, HandlerInfo, HandlerTimedOut, IntoHandlerResult, IntoResponse,
    State, StateKey,
};
pub use ids::EventId;
pub use ingest::{IngestError, IngestLimits, Violation, cloudevents};
pub use options::{MetaValue, Metadata, PublishOptions, is_metadata_key};
pub use pattern::InvalidPattern;
pub use receipt::{HandlerOutcome, Outcome, Receipt};
pub use registry::{BuildError, Problem};
pub use retry::RetryPolicy;

/// Derives [`Event`]. See [`Event`] for the `#[event(..)]` keys.
#[cfg(feature = "macros")]
pub use events_macros::Event;

/// Registers a function as an event handler. See the [crate docs](crate#handler-signatures)
/// for the signature rules and options.
#[cfg(feature = "macros")]
pub use events_macros::handler;

/// Makes a state type an event-sourced aggregate. See [`Aggregate`] for the options and
/// the rules.
#[cfg(feature = "macros")]
pub use events_macros::aggregate;
