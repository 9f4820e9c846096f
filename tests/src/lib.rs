//! A second crate of the workspace, for the integration tests: its handler is registered by
//! nothing but `#[handler]`, and the tests in `tests/` check that a bus built in another
//! crate finds it.
//!
//! It also compiles the README's code blocks as doctests.

#![doc = include_str!("../../README.md")]

use std::sync::atomic::{AtomicU64, Ordering};

use events::{Event, handler};

/// Published by the tests; handled only by `count_plugin_pings` in this crate.
#[derive(Debug, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "plugin.ping")]
pub struct PluginPing {
    /// Added to [`PLUGIN_PINGS`] by the handler.
    pub n: u64,
}

/// The sum of every `PluginPing::n` handled in this process.
pub static PLUGIN_PINGS: AtomicU64 = AtomicU64::new(0);

/// Never called from this crate nor registered by hand.
#[handler(name = "plugin.count_pings")]
fn count_plugin_pings(ev: &PluginPing) {
    PLUGIN_PINGS.fetch_add(ev.n, Ordering::SeqCst);
}
