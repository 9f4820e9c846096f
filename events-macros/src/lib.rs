//! Procedural macros for [`events`](https://docs.rs/events). Use them through the `events`
//! crate, which re-exports them; this crate's API is not meant to be used on its own.
//!
//! Every mistake is reported as a compile error on the smallest piece of your code that is
//! wrong, and all of them at once: one build shows every problem.

// Never panic on user input: every problem is a `syn::Error`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod aggregate;
mod ctxt;
mod event;
mod handler;
mod lit;

use proc_macro::TokenStream;

/// Derives `events::Event`: the event's name, version, kind, priority and JSON Schema, and
/// its entry in the run-time catalog. See the `events` crate for the attributes.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    event::derive(syn::parse_macro_input!(input as syn::DeriveInput)).into()
}

/// Registers a function as an event handler, found at start-up with no registration call.
/// See the `events` crate for the signature rules and options.
#[proc_macro_attribute]
pub fn handler(args: TokenStream, item: TokenStream) -> TokenStream {
    handler::expand(args.into(), item.into()).into()
}

/// Makes the state type of an `impl` block an event-sourced aggregate: its `#[apply]`
/// methods (one per event type) rebuild the state, its `#[command]` methods decide new
/// events. See `events::Aggregate` for the options and the rules.
#[proc_macro_attribute]
pub fn aggregate(args: TokenStream, item: TokenStream) -> TokenStream {
    aggregate::expand(args.into(), item.into()).into()
}
