//! How long stored events and dead letters are kept: [`Retention`] rules per event name or
//! pattern, by age and/or count, enforced by a background task
//! ([`BusBuilder::retention`](crate::BusBuilder::retention)) and on demand
//! ([`Bus::enforce_retention`](crate::Bus::enforce_retention)).
//!
//! By default a rule never deletes an event that a durable handler has not finished or
//! that waits in the outbox: the run stops below the oldest such event, and deletes it once
//! it is done. [`Retention::delete_undelivered`] says otherwise, by policy. Events of an
//! aggregate's stream are never deleted (they are its state), nor the newest event of the
//! log (the store's high-water mark).
//!
//! ```
//! use std::time::Duration;
//! use events::retention::{Keep, Retention};
//!
//! let retention = Retention::new()
//!     .keep("metrics.>", Keep::age(Duration::from_secs(7 * 86_400)))
//!     .keep("order.*", Keep::count(1_000_000).and_age(Duration::from_secs(365 * 86_400)))
//!     .dead_letters(Keep::age(Duration::from_secs(30 * 86_400)))
//!     .every(Duration::from_secs(3600));
//! # let _ = retention;
//! ```

use std::time::Duration;

/// How much to keep: events younger than an age, the newest so many, or both (an event
/// goes when either says so).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keep {
    pub(crate) age: Option<Duration>,
    pub(crate) count: Option<u64>,
}

impl Keep {
    /// Events published within `age`.
    pub fn age(age: Duration) -> Keep {
        Keep {
            age: Some(age),
            count: None,
        }
    }
    /// The newest `count` events of each name.
    pub fn count(count: u64) -> Keep {
        Keep {
            age: None,
            count: Some(count),
        }
    }
    /// And only those published within `age`.
    pub fn and_age(mut self, age: Duration) -> Keep {
        self.age = Some(age);
        self
    }
    /// And only the newest `count` of each name.
    pub fn and_count(mut self, count: u64) -> Keep {
        self.count = Some(count);
        self
    }
}

/// The retention rules of a bus's store.
#[derive(Clone, Debug)]
#[must_use]
pub struct Retention {
    pub(crate) rules: Vec<(String, Keep)>,
    pub(crate) dead_letters: Option<Keep>,
    pub(crate) every: Duration,
    pub(crate) delete_undelivered: bool,
}

impl Default for Retention {
    fn default() -> Self {
        Retention::new()
    }
}

impl Retention {
    /// No rule; enforced every hour once rules are added.
    pub fn new() -> Retention {
        Retention {
            rules: Vec::new(),
            dead_letters: None,
            every: Duration::from_secs(3600),
            delete_undelivered: false,
        }
    }
    /// Events whose name `pattern` matches are kept as `keep` says (the first rule that
    /// matches a name applies to it).
    pub fn keep(mut self, pattern: impl Into<String>, keep: Keep) -> Self {
        self.rules.push((pattern.into(), keep));
        self
    }
    /// Dead letters are kept as `keep` says (by the time of their last failure, and the
    /// newest so many).
    pub fn dead_letters(mut self, keep: Keep) -> Self {
        self.dead_letters = Some(keep);
        self
    }
    /// How often the background task enforces the rules (default: every hour).
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every.max(Duration::from_millis(10));
        self
    }
    /// Deletes events past the rules even when a durable handler has not finished them
    /// or they wait in the outbox: those handlers never get them, and the outbox entry
    /// is dropped with the event. Off by default.
    pub fn delete_undelivered(mut self) -> Self {
        self.delete_undelivered = true;
        self
    }

    /// Every problem with the rules.
    pub(crate) fn problems(&self) -> Vec<String> {
        self.rules
            .iter()
            .filter_map(|(pattern, keep)| {
                if let Err(e) = crate::pattern::check(pattern) {
                    Some(format!("retention: {e}"))
                } else if keep.age.is_none() && keep.count.is_none() {
                    Some(format!(
                        "retention: the rule for `{pattern}` keeps everything"
                    ))
                } else {
                    None
                }
            })
            .collect()
    }
}

/// What a retention run deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionReport {
    /// Events deleted, per rule (its pattern).
    pub deleted: Vec<(String, u64)>,
    /// Dead letters deleted.
    pub dead_letters: u64,
    /// Whether the run stopped below an event a durable handler or the outbox still needs.
    pub held_back: bool,
}
