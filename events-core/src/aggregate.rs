//! Event-sourced aggregates: state rebuilt from its own stream of events ([`Aggregate`]),
//! one `apply` per event type ([`Apply`]), commands that decide new events ([`Decision`]).
//!
//! Declare them with `#[aggregate]` on the state type's `impl`; load and run commands
//! through [`Bus::aggregates`](crate::Bus::aggregates).

use std::fmt;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::event::{AnyEvent, Event, EventInfo};

/// The metadata key of an aggregate's event that names its stream (`<aggregate>-<id>`).
pub const STREAM_KEY: &str = "stream";
/// The metadata key of an aggregate's event that gives its version in the stream, as
/// decimal text.
pub const STREAM_VERSION_KEY: &str = "streamversion";

/// The state of an event-sourced entity, rebuilt from its stream: implemented by
/// `#[aggregate]` on the type's `impl`, never by hand.
///
/// ```
/// use events::{Event, aggregate};
///
/// #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// #[event(name = "doc.cart.item.added")]
/// struct ItemAdded { sku: String }
///
/// #[derive(Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// struct Cart { items: Vec<String> }
///
/// #[aggregate(name = "doc.cart", id = u64, snapshot_every = 50)]
/// impl Cart {
///     #[apply]
///     fn added(&mut self, e: &ItemAdded) { self.items.push(e.sku.clone()); }
///
///     #[command]
///     fn add(&self, sku: &str) -> Result<Option<ItemAdded>, String> {
///         // Adding what is in the cart already decides nothing.
///         Ok((!self.items.iter().any(|i| i == sku)).then(|| ItemAdded { sku: sku.into() }))
///     }
/// }
///
/// assert_eq!(<Cart as events::Aggregate>::NAME, "doc.cart");
/// assert_eq!(events::aggregate::stream_name::<Cart>(&7).unwrap(), "doc.cart-7");
/// ```
///
/// # `#[aggregate(..)]` keys
///
/// | key | default | meaning |
/// |---|---|---|
/// | `name = "ledger.account"` | the type name as dotted lower case (`BankAccount` → `bank.account`) | the first part of its streams' names; the rule of event names |
/// | `id = AccountId` | `String` | the type that identifies an instance (`Display`: the second part of the stream's name) |
/// | `snapshot_every = 100` | `0` (only when asked) | keep a snapshot whenever an append crosses a multiple of this many events |
/// | `crate = path` | `::events` | where the `events` crate is |
///
/// # Methods
///
/// - `#[apply] fn name(&mut self, event: &E)`: one per event type `E` the state is built
///   from; not `async`, no return value (applying cannot fail: deciding is a command's job).
/// - `#[command] fn name(&self, ..) -> Result<D, Error>` (or `-> D`): reads the state and
///   decides `D`, an event the aggregate applies, `()`, or an `Option`, `Vec` or tuple of up
///   to six of them. Not `async`: a command may run again after a conflict, so it decides
///   from the state and its arguments alone.
///
/// Every other method of the block is left as written. Compile errors, on the user's token:
/// an `#[apply]` of a type that is not an event, two `#[apply]`s for one event type, a wrong
/// `#[apply]` or `#[command]` signature, a command that returns an event with no `#[apply]`.
///
/// The state starts as [`Default`], and each stored event is handed to the `#[apply]`
/// method of its type, in stream order. A command is a method that reads the state and
/// returns the new events (a [`Decision`]) or an error; the repository
/// ([`Bus::aggregates`](crate::Bus::aggregates)) appends them to the stream with the
/// version it loaded, so that a concurrent writer's events are never overwritten.
///
/// The state is `Serialize + Deserialize` for snapshots and `JsonSchema` for their
/// [shape](Aggregate::shape): a snapshot taken from a different shape of the type is
/// ignored, not misread.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an aggregate",
    label = "not an aggregate",
    note = "put `#[events::aggregate]` on an `impl` block of the type, with an `#[apply]` method per event"
)]
pub trait Aggregate:
    Default + Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static
{
    /// The aggregate's name: the first part of its streams' names (`<name>-<id>`).
    const NAME: &'static str;
    /// Take a snapshot every this many events (`#[aggregate(snapshot_every = N)]`); 0: only
    /// when asked ([`Aggregates::snapshot`](crate::Aggregates::snapshot)).
    const SNAPSHOT_EVERY: u64 = 0;
    /// What identifies one instance; its `Display` form is the second part of its stream's
    /// name.
    type Id: fmt::Display + Send + Sync;

    /// The catalog entries of the events it applies (one per `#[apply]`), in declaration
    /// order.
    fn events() -> Vec<&'static EventInfo>;

    /// What the state type looks like (a hash of its name and JSON Schema): recorded with
    /// each snapshot, which is used only when it matches.
    fn shape() -> &'static str;

    /// Applies a stored event of name `name` and version `version` (upcast to the version
    /// its `#[apply]` takes). Generated by `#[aggregate]`.
    ///
    /// # Errors
    /// When the payload does not deserialize, cannot be upcast, or no `#[apply]` takes an
    /// event of that name.
    #[doc(hidden)]
    fn apply_stored(&mut self, name: &str, version: u32, payload: &str) -> Result<(), String>;
}

/// An aggregate that applies events of type `E`: one `#[apply] fn(&mut self, &E)`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot apply `{E}`: it has no `#[apply]` for it",
    label = "`{Self}` has no `#[apply]` method for `{E}`",
    note = "a command may return only events its aggregate applies: add `#[apply] fn ..(&mut self, event: &{E})` to the `#[aggregate]` impl of `{Self}`"
)]
pub trait Apply<E: Event>: Aggregate {
    /// Changes the state by one event.
    fn apply(&mut self, event: &E);
}

/// What a command decides: the new events. An event its aggregate applies, `()` (nothing
/// happened), `Option`, `Vec`, or a tuple of up to six of them.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not something `{A}` can apply",
    label = "a command of `{A}` returns events `{A}` applies",
    note = "return an event with an `#[apply]` method in the aggregate, `()`, or an `Option`, `Vec` or tuple of them"
)]
pub trait Decision<A: Aggregate> {
    /// Applies the events to the state and collects them, in order.
    fn decide(self, changes: &mut Changes<'_, A>);
}

/// The events a [`Decision`] adds: each is applied to the state as it is pushed, so a
/// later one sees the earlier ones' effect.
pub struct Changes<'a, A> {
    state: &'a mut A,
    events: Vec<Box<AnyEvent>>,
    apply: bool,
}

impl<A> fmt::Debug for Changes<'_, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Changes")
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl<'a, A: Aggregate> Changes<'a, A> {
    /// Changes to `state`.
    pub fn new(state: &'a mut A) -> Changes<'a, A> {
        Changes {
            state,
            events: Vec::new(),
            apply: true,
        }
    }

    /// Changes that only collect the events (the test kit's expectations).
    pub(crate) fn collecting(state: &'a mut A) -> Changes<'a, A> {
        Changes {
            apply: false,
            ..Changes::new(state)
        }
    }

    /// Applies `event` and adds it.
    pub fn push<E: Event>(&mut self, event: E)
    where
        A: Apply<E>,
    {
        if self.apply {
            self.state.apply(&event);
        }
        self.events.push(Box::new(event));
    }

    /// The events added, in order.
    pub fn into_events(self) -> Vec<Box<AnyEvent>> {
        self.events
    }
}

impl<A: Apply<E>, E: Event> Decision<A> for E {
    fn decide(self, changes: &mut Changes<'_, A>) {
        changes.push(self);
    }
}

impl<A: Aggregate> Decision<A> for () {
    fn decide(self, _: &mut Changes<'_, A>) {}
}

impl<A: Aggregate, D: Decision<A>> Decision<A> for Option<D> {
    fn decide(self, changes: &mut Changes<'_, A>) {
        if let Some(d) = self {
            d.decide(changes);
        }
    }
}

impl<A: Aggregate, D: Decision<A>> Decision<A> for Vec<D> {
    fn decide(self, changes: &mut Changes<'_, A>) {
        for d in self {
            d.decide(changes);
        }
    }
}

macro_rules! tuple_decision {
    ($($d:ident),+) => {
        impl<A: Aggregate, $($d: Decision<A>),+> Decision<A> for ($($d,)+) {
            #[allow(non_snake_case)]
            fn decide(self, changes: &mut Changes<'_, A>) {
                let ($($d,)+) = self;
                $($d.decide(changes);)+
            }
        }
    };
}
tuple_decision!(D1);
tuple_decision!(D1, D2);
tuple_decision!(D1, D2, D3);
tuple_decision!(D1, D2, D3, D4);
tuple_decision!(D1, D2, D3, D4, D5);
tuple_decision!(D1, D2, D3, D4, D5, D6);

/// An aggregate type linked into the binary: what `#[aggregate]` registers, listed by
/// [`aggregates`] (and checked by [`testing::check_aggregates`](crate::testing::check_aggregates)).
#[derive(Debug)]
pub struct AggregateInfo {
    pub(crate) name: &'static str,
    pub(crate) type_name: &'static str,
    pub(crate) events: fn() -> Vec<&'static EventInfo>,
    pub(crate) check: fn() -> Result<(), String>,
}

impl AggregateInfo {
    /// The aggregate's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
    /// The Rust path of its state type.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }
    /// The catalog entries of the events it applies.
    pub fn events(&self) -> Vec<&'static EventInfo> {
        (self.events)()
    }
    /// Checks that every event it applies round-trips through JSON, that an example of each
    /// (and of each older version on its upcast chain) applies to the default state, and
    /// that the state round-trips through a snapshot.
    ///
    /// # Errors
    /// What failed, for which event.
    pub fn check(&self) -> Result<(), String> {
        (self.check)()
    }
}

/// Submitted by `#[aggregate]`. Not public API.
#[doc(hidden)]
#[derive(Debug)]
pub struct AggregateEntry(pub &'static AggregateInfo);

inventory::collect!(AggregateEntry);

/// The aggregates linked into this binary, by name.
pub fn aggregates() -> Vec<&'static AggregateInfo> {
    let mut all: Vec<&'static AggregateInfo> = inventory::iter::<AggregateEntry>
        .into_iter()
        .map(|e| e.0)
        .collect();
    all.sort_by_key(|a| (a.name, a.type_name));
    all
}

/// The name of the stream of aggregate `A`'s instance `id`: `<name>-<id>`.
///
/// # Errors
/// When the id's text is empty, longer than 200 bytes, or holds a control character: it
/// becomes a key in the store.
pub fn stream_name<A: Aggregate>(id: &A::Id) -> Result<String, String> {
    let id = id.to_string();
    if id.is_empty() || id.len() > 200 || id.chars().any(char::is_control) {
        return Err(format!(
            "an aggregate id must be 1 to 200 bytes of text without control characters; `{}` is not",
            crate::text::clip(&id.escape_debug().to_string(), 80)
        ));
    }
    Ok(format!("{}-{id}", A::NAME))
}

/// What went wrong in a payload, without the values serde quotes (a stored payload may hold
/// redacted or personal fields, and this text reaches error messages and logs).
pub(crate) fn without_values(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "an I/O error",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "a value that does not fit the type",
        serde_json::error::Category::Eof => "JSON cut short",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

/// Decodes a stored payload of `E`'s name at `version` as an `E`: directly when it is
/// `E`'s version, else as the older version's type and then along the upcast chain
/// (`#[event(upcast_from = ..)]`).
pub(crate) fn decode_as<E: Event>(version: u32, payload: &str) -> Result<E, String> {
    if version == E::VERSION && !E::REDACTED.is_empty() {
        // Redacted fields are sealed at rest: opened first.
        let mut json: serde_json::Value = serde_json::from_str(payload).map_err(|e| {
            format!(
                "stored `{}` v{version} is not JSON: {}",
                E::NAME,
                without_values(&e)
            )
        })?;
        crate::personal::open_fields(&mut json, E::REDACTED);
        return serde_json::from_value(json).map_err(|e| {
            format!(
                "stored `{}` v{version} does not deserialize: {}",
                E::NAME,
                without_values(&e)
            )
        });
    }
    if version == E::VERSION {
        return serde_json::from_str(payload).map_err(|e| {
            format!(
                "stored `{}` v{version} does not deserialize: {}",
                E::NAME,
                without_values(&e)
            )
        });
    }
    // The chain from E down to the stored version.
    let mut chain: Vec<&'static EventInfo> = vec![E::info()];
    while let Some(older) = chain
        .last()
        .and_then(|i| i.upcast.as_ref())
        .map(|u| (u.from)())
    {
        chain.push(older);
        if older.version == version {
            break;
        }
    }
    let Some(&stored) = chain.last().filter(|i| i.version == version) else {
        return Err(format!(
            "stored `{}` v{version} has no upcast to v{} (`#[event(upcast_from = ..)]`)",
            E::NAME,
            E::VERSION
        ));
    };
    let json: serde_json::Value = serde_json::from_str(payload).map_err(|e| {
        format!(
            "stored `{}` v{version} is not JSON: {}",
            E::NAME,
            without_values(&e)
        )
    })?;
    let mut event = (stored.decode)(json, true)
        .map_err(|e| format!("stored `{}` v{version} does not deserialize: {e}", E::NAME))?;
    // Up the chain: each step's conversion is on the newer version's entry.
    for newer in chain.iter().rev().skip(1) {
        let convert = newer
            .upcast
            .as_ref()
            .map(|u| u.convert)
            .ok_or("no upcast")?;
        event = convert(&*event)?;
    }
    event
        .into_any()
        .downcast::<E>()
        .map(|e| *e)
        .map_err(|_| format!("the upcast chain of `{}` did not end at its type", E::NAME))
}

/// [`AggregateInfo::check`] for `A`.
pub(crate) fn check<A: Aggregate>() -> Result<(), String> {
    let mut state = A::default();
    for newest in A::events() {
        // The event and every older version it is upcast from.
        let mut info = Some(newest);
        while let Some(i) = info {
            let schema = serde_json::to_value(i.schema()).map_err(|e| e.to_string())?;
            let example = crate::example::example(&schema);
            let what = format!("`{}` v{} (`{}`)", i.name, i.version, i.type_name);
            let event = (i.decode)(example.clone(), false)
                .map_err(|e| format!("an example of {what} does not deserialize: {e}"))?;
            let once = event
                .to_json()
                .map_err(|e| format!("{what} does not serialize: {e}"))?;
            let again = (i.decode)(once.clone(), false)
                .map_err(|e| format!("{what} does not read back what it wrote: {e}"))?
                .to_json()
                .map_err(|e| format!("{what} does not serialize: {e}"))?;
            if once != again {
                return Err(format!(
                    "{what} changes through JSON: {once} is read back as {again}"
                ));
            }
            state
                .apply_stored(i.name, i.version, &once.to_string())
                .map_err(|e| format!("aggregate `{}` cannot apply {what}: {e}", A::NAME))?;
            info = i.upcast_from();
        }
    }
    for (what, state) in [("default", A::default()), ("example", state)] {
        let once = serde_json::to_value(&state)
            .map_err(|e| format!("the {what} state of `{}` does not serialize: {e}", A::NAME))?;
        let back: A = serde_json::from_value(once.clone()).map_err(|e| {
            format!(
                "the {what} state of `{}` does not read back (snapshots would be ignored): {e}",
                A::NAME
            )
        })?;
        let again = serde_json::to_value(&back).map_err(|e| e.to_string())?;
        if once != again {
            return Err(format!(
                "the {what} state of `{}` changes through a snapshot: {once} is read back as {again}",
                A::NAME
            ));
        }
    }
    Ok(())
}
