//! [`Outcome`]: what happened in one handler, the input of every failure decision
//! ([`retry::fate`](crate::retry::fate)).

use std::fmt;

use crate::error::HandlerError;

/// What happened in one handler.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// The handler ran and returned `Ok`.
    Delivered,
    /// The handler's filter did not match; it did not run.
    Filtered,
    /// An `async` handler, not run by [`Bus::publish_blocking`](crate::Bus::publish_blocking),
    /// which has no runtime to drive it: publish with [`Bus::publish`](crate::Bus::publish).
    SkippedAsync,
    /// A paused dynamic subscription ([`Subscription::pause`](crate::Subscription::pause)); it
    /// did not run.
    Paused,
    /// The handler returned an error.
    Failed(HandlerError),
    /// The handler panicked; the message of the panic.
    Panicked(String),
    /// The handler failed with a transient error and will be run again: `attempt` is the
    /// number of the next attempt, `after` the delay before it. The retry runs on its own
    /// task; this receipt does not learn how it ends (observers do).
    Retrying {
        /// What the failed attempt returned.
        error: HandlerError,
        /// The next attempt's number (2 for the first retry).
        attempt: u32,
        /// When it runs, from now.
        after: std::time::Duration,
    },
}

impl Outcome {
    /// `Failed`, `Panicked` or `Retrying`.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Outcome::Failed(_) | Outcome::Panicked(_) | Outcome::Retrying { .. }
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Delivered => f.write_str("delivered"),
            Outcome::Filtered => f.write_str("filtered out"),
            Outcome::SkippedAsync => f.write_str("skipped: async handler, publish with `.await`"),
            Outcome::Paused => f.write_str("paused"),
            Outcome::Failed(e) => write!(f, "failed: {e}"),
            Outcome::Panicked(m) => write!(f, "panicked: {m}"),
            Outcome::Retrying {
                error,
                attempt,
                after,
            } => write!(f, "failed: {error}; attempt {attempt} in {after:?}"),
        }
    }
}
