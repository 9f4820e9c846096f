//! Aggregates without a store or a bus: given past events, when a command, then these new
//! events or this error ([`AggregateTest`]); and the JSON round-trip check of every
//! aggregate's events ([`check_aggregates`]).

use std::fmt;

use crate::aggregate::{Aggregate, Changes, Decision};

/// Given these past events, when this command, then these new events (or this error):
/// an aggregate's behaviour, checked without a store or a bus.
///
/// The past events reach the state as they would from a store: serialized to JSON and
/// applied through the aggregate's generated code (upcasting included), so a payload that
/// does not survive the trip fails here, not in production.
///
/// ```
/// # use events::{Event, aggregate};
/// # #[derive(Debug, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// # #[event(name = "doc.kit.deposited")]
/// # struct Deposited { cents: u64 }
/// # #[derive(Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// # struct Account { balance: u64 }
/// # #[aggregate(name = "doc.kit.account")]
/// # impl Account {
/// #     #[apply] fn deposited(&mut self, e: &Deposited) { self.balance += e.cents; }
/// #     #[command] fn withdraw(&self, cents: u64) -> Result<Deposited, String> {
/// #         if cents > self.balance { Err("insufficient".into()) } else { Ok(Deposited { cents: 0 }) }
/// #     }
/// # }
/// use events::testing::AggregateTest;
///
/// let error = AggregateTest::<Account>::given(Deposited { cents: 100 })
///     .when(|a| a.withdraw(500))
///     .then_error();
/// assert_eq!(error, "insufficient");
/// ```
pub struct AggregateTest<A: Aggregate> {
    state: A,
    version: u64,
}

impl<A: Aggregate> fmt::Debug for AggregateTest<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggregateTest")
            .field("aggregate", &A::NAME)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate> Default for AggregateTest<A> {
    fn default() -> Self {
        AggregateTest::new()
    }
}

/// One event as a test compares it: name, version and JSON payload.
fn as_json(events: Vec<Box<crate::AnyEvent>>) -> Vec<(&'static str, u32, serde_json::Value)> {
    events
        .into_iter()
        .map(|e| {
            let json = e
                .to_json()
                .unwrap_or_else(|err| panic!("`{}` does not serialize: {err}", e.name()));
            (e.name(), e.version(), json)
        })
        .collect()
}

impl<A: Aggregate> AggregateTest<A> {
    /// A new instance: no past events.
    pub fn new() -> Self {
        AggregateTest {
            state: A::default(),
            version: 0,
        }
    }

    /// An instance whose stream holds `events` (an event, a tuple or a `Vec` of them).
    ///
    /// # Panics
    /// When one does not go through JSON and back into the aggregate.
    #[track_caller]
    pub fn given(events: impl Decision<A>) -> Self {
        AggregateTest::new().and(events)
    }

    /// Adds `events` to the past.
    ///
    /// # Panics
    /// As [`given`](Self::given).
    #[track_caller]
    pub fn and(mut self, events: impl Decision<A>) -> Self {
        let mut scratch = A::default();
        let mut changes = Changes::collecting(&mut scratch);
        events.decide(&mut changes);
        for (name, version, json) in as_json(changes.into_events()) {
            if let Err(e) = self.state.apply_stored(name, version, &json.to_string()) {
                panic!(
                    "past event `{name}` v{version} does not load into `{}`: {e}",
                    A::NAME
                );
            }
            self.version += 1;
        }
        self
    }

    /// The state the past events built.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// Runs `command` on the state.
    pub fn when<D: Decision<A>, E>(self, command: impl FnOnce(&A) -> Result<D, E>) -> Then<A, E> {
        let AggregateTest { mut state, .. } = self;
        let result = command(&state).map(|decision| {
            let mut changes = Changes::new(&mut state);
            decision.decide(&mut changes);
            as_json(changes.into_events())
        });
        Then { state, result }
    }
}

/// What a command did in an [`AggregateTest`]: assert on it with [`then`](Then::then) or
/// [`then_error`](Then::then_error).
#[must_use = "assert on the outcome with `then` or `then_error`"]
pub struct Then<A, E> {
    state: A,
    result: Result<Vec<(&'static str, u32, serde_json::Value)>, E>,
}

impl<A, E> fmt::Debug for Then<A, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Then")
            .field("ok", &self.result.is_ok())
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate, E: fmt::Debug> Then<A, E> {
    /// Asserts that the command decided exactly `expected` (compared as name, version and
    /// JSON, in order); the state after them.
    ///
    /// # Panics
    /// When it refused, or decided other events.
    #[track_caller]
    pub fn then(self, expected: impl Decision<A>) -> A {
        let mut scratch = A::default();
        let mut changes = Changes::collecting(&mut scratch);
        expected.decide(&mut changes);
        let expected = as_json(changes.into_events());
        match self.result {
            Err(e) => panic!("the command refused with {e:?}; expected events {expected:?}"),
            Ok(actual) if actual != expected => {
                panic!("the command decided\n  {actual:?}\nexpected\n  {expected:?}")
            }
            Ok(_) => self.state,
        }
    }

    /// Asserts that the command refused; its error.
    ///
    /// # Panics
    /// When it decided events instead.
    #[track_caller]
    pub fn then_error(self) -> E {
        match self.result {
            Ok(events) => panic!("the command decided {events:?}; expected it to refuse"),
            Err(e) => e,
        }
    }
}

/// Checks every aggregate linked into the binary ([`AggregateInfo::check`](crate::aggregate::AggregateInfo::check)):
/// each event it applies, and each older version on its upcast chain, round-trips through
/// JSON and applies; the state round-trips through a snapshot. One line per failure.
///
/// # Errors
/// The failures, one per aggregate that failed.
pub fn check_aggregates() -> Result<usize, Vec<String>> {
    let all = crate::aggregate::aggregates();
    let failures: Vec<String> = all
        .iter()
        .filter_map(|a| {
            a.check()
                .err()
                .map(|e| format!("{} ({}): {e}", a.name(), a.type_name()))
        })
        .collect();
    if failures.is_empty() {
        Ok(all.len())
    } else {
        Err(failures)
    }
}

/// [`check_aggregates`] for one aggregate type.
///
/// # Errors
/// What failed.
pub fn check_aggregate<A: Aggregate>() -> Result<(), String> {
    crate::aggregate::check::<A>()
}
