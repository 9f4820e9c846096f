//! The events of the three-crate linking test. Their handlers live in `link-billing`; the
//! binary (`link-app`) uses only this crate.

use std::sync::atomic::AtomicU64;

use events::Event;

/// An order was placed; `link_billing` charges it.
#[derive(Debug, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "order.placed")]
pub struct OrderPlaced {
    /// The order.
    pub order_id: u64,
    /// What to charge.
    pub total_cents: u64,
}

/// An order was charged; published by `link_billing`'s handler.
#[derive(Debug, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "order.charged")]
pub struct OrderCharged {
    /// The order.
    pub order_id: u64,
}

/// The state `link_billing`'s handler takes: the total charged.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Cents charged so far.
    pub charged_cents: AtomicU64,
}
