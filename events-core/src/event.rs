//! The [`Event`] trait, event kinds, and the run-time catalog entry [`EventInfo`].

use std::any::{Any, TypeId};
use std::fmt;

use schemars::{JsonSchema, Schema};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A typed event: a plain Rust type with a name, a version and a JSON Schema.
///
/// Implement it with `#[derive(Event)]`, never by hand: the derive also registers the event
/// in the catalog that [`Bus::events`](crate::Bus::events) lists.
///
/// ```
/// use events::Event;
///
/// /// An order was placed by a customer.
/// #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// #[event(name = "order.placed", version = 2, kind = "notification", priority = 5)]
/// struct OrderPlaced {
///     order_id: u64,
///     total_cents: u64,
/// }
///
/// assert_eq!(OrderPlaced::NAME, "order.placed");
/// assert_eq!(OrderPlaced::VERSION, 2);
/// assert_eq!(OrderPlaced::info().description(), Some("An order was placed by a customer."));
/// ```
///
/// # `#[event(..)]` keys
///
/// | key | default | meaning |
/// |---|---|---|
/// | `name = "order.placed"` | the type name as dotted lower case: `OrderPlaced` → `order.placed`, `HTTPRequestFailed` → `http.request.failed`, `OrderPlacedV2` → `order.placed.v2` | the name other services and the catalog know it by: lower-case `.`-separated segments of `a-z 0-9 _ -` |
/// | `version = 2` | `1` | the payload version; several types may share a name with different versions |
/// | `kind = "command"` | `"notification"` | one of [`EventKind`] |
/// | `response = Answer` | none | a query's answer type (makes the event a [`Query`]; `kind = "query"` needs it) |
/// | `priority = 10` | `0` | the event's default priority when queued |
/// | `upcast_from = OrderPlacedV1` | none | the previous version's type, with a `From<OrderPlacedV1>` impl: events of that version are converted and reach this version's handlers too |
/// | `crate = path` | `::events` | where the `events` crate is, when it is renamed or re-exported |
///
/// On a field, `#[event(redact)]` keeps its value out of `Debug`, logs, error messages and
/// dead-letter dumps (shown as `"[redacted]"`; [`Payload::to_redacted_json`]), and sealed at
/// rest when the bus keeps keys. `#[event(subject)]` names the data subject whose key seals
/// the event's [`Personal`](crate::personal::Personal) fields (see
/// [`personal`](crate::personal)); a `Personal` field without one is a compile error.
///
/// Doc comments become the schema's and the catalog's descriptions. Generic types and unions
/// are rejected at compile time: an event has exactly one schema.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event",
    label = "not an event",
    note = "add `#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]` to the type"
)]
pub trait Event: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static {
    /// The event's name, e.g. `order.placed`.
    const NAME: &'static str;
    /// The payload's version, starting at 1.
    const VERSION: u32;
    /// What kind of message this is.
    const KIND: EventKind;
    /// The default priority when queued; higher runs first.
    const PRIORITY: i32;
    /// The JSON keys of the `#[event(redact)]` fields: kept out of `Debug`, logs and dumps
    /// (see [`Payload::to_redacted_json`]).
    const REDACTED: &'static [&'static str] = &[];
    /// Whether it holds [`Personal`](crate::personal::Personal) data (set by the derive).
    const PERSONAL: bool = false;

    /// The data subject its personal data is about: the `#[event(subject)]` field, as text
    /// (see [`personal`](crate::personal)). `None` when it names none.
    fn data_subject(&self) -> Option<String> {
        None
    }

    /// The catalog entry of this event.
    fn info() -> &'static EventInfo;

    /// The JSON Schema (draft 2020-12) of the payload, generated once and cached.
    fn schema() -> &'static Schema;
}

/// A question with one typed answer: `#[derive(Event)] #[event(kind = "query", response = T)]`.
///
/// Ask it with [`Bus::request`](crate::Bus::request); it is answered by the one `#[handler]`
/// of the query that returns `T` (or `Result<T, E>`). [`BusBuilder::build`](crate::BusBuilder::build)
/// fails when a query has no responder or several, and a responder that returns anything
/// else does not compile. Handlers of the query that return `()` are listeners: they see
/// every request, after the answer is made, as they would a published event.
///
/// ```standalone_crate
/// use events::{Bus, Event, handler};
///
/// #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// #[event(kind = "query", response = Stock)]
/// struct GetStock { sku: String }
///
/// #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// struct Stock { available: u32 }
///
/// #[handler]
/// fn stock(q: &GetStock) -> Stock {
///     Stock { available: if q.sku == "tea" { 7 } else { 0 } }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = Bus::builder().build()?;
/// let stock = bus.request(GetStock { sku: "tea".into() }).await?;
/// assert_eq!(stock, Stock { available: 7 });
/// # Ok(()) }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a query, so its handlers cannot return a value",
    label = "a handler returning a value answers a query",
    note = "return `()` or `Result<(), E>`; or, to answer requests, declare the event with `#[event(kind = \"query\", response = YourAnswer)]`"
)]
pub trait Query: Event {
    /// The answer's type.
    type Response: Serialize + DeserializeOwned + JsonSchema + Send + 'static;
}

/// The answer type of a query, in the catalog.
#[derive(Debug)]
pub struct ResponseInfo {
    pub(crate) type_name: &'static str,
    pub(crate) schema: fn() -> &'static Schema,
}

impl ResponseInfo {
    /// The answer's type as written in `response = ..`.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }
    /// The answer's JSON Schema.
    pub fn schema(&self) -> &'static Schema {
        (self.schema)()
    }
}

/// What kind of message an event is, as in a message taxonomy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EventKind {
    /// Something happened (the default): any number of handlers, none of them answers.
    Notification,
    /// A request to do something, addressed to the one component that does it.
    Command,
    /// A question that expects one answer: see [`Query`].
    Query,
    /// The answer to a query.
    Response,
    /// A failure reported as an event.
    Error,
}

impl EventKind {
    /// The lower-case name used in `#[event(kind = "..")]` and in generated documents.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Notification => "notification",
            EventKind::Command => "command",
            EventKind::Query => "query",
            EventKind::Response => "response",
            EventKind::Error => "error",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event type's entry in the run-time catalog: everything known about it without a value.
pub struct EventInfo {
    pub(crate) name: &'static str,
    pub(crate) version: u32,
    pub(crate) kind: EventKind,
    pub(crate) priority: i32,
    pub(crate) type_name: &'static str,
    pub(crate) description: Option<&'static str>,
    pub(crate) type_id: fn() -> TypeId,
    pub(crate) schema: fn() -> &'static Schema,
    pub(crate) response: Option<ResponseInfo>,
    /// Deserializes a payload already checked against the schema.
    /// Deserializes a payload; the flag says whether it may hold whole numbers written as
    /// floats (`true` when not known).
    pub(crate) decode:
        fn(serde_json::Value, bool) -> Result<Box<AnyEvent>, crate::error::IngestError>,
    /// The schema's compiled validator, made on first use.
    pub(crate) validator: ValidatorCell,
    /// Deserializes a checked payload and publishes it on the typed path.
    pub(crate) publish_value: PublishValue,
    /// `#[event(upcast_from = ..)]`.
    pub(crate) upcast: Option<UpcastInfo>,
    /// The JSON keys of the `#[event(redact)]` fields.
    pub(crate) redacted: &'static [&'static str],
    /// Whether it holds personal data.
    pub(crate) personal: bool,
    /// The top-level keys whose values an error message must not quote, made on first use
    /// ([`EventInfo::secret_keys`]).
    pub(crate) secrets: std::sync::OnceLock<Box<[Box<str>]>>,
    /// How many dynamic subscriptions to this type exist, on every bus of the process:
    /// while 0, a publish of it reads the fixed routes without a lookup.
    pub(crate) subscribed: std::sync::atomic::AtomicU32,
}

/// Deserializes a checked payload as its type and publishes it on the typed path, without a
/// boxed payload (`publish_blocking`). Its types are the model's: the bus is passed as
/// `&dyn Any` and the receipt comes back in `out` (an `Option<Receipt>`), so that the
/// catalog entry names nothing of the runtime. The flag says whether the payload may hold
/// whole numbers written as floats.
pub(crate) type PublishValue = fn(
    bus: &dyn Any,
    value: serde_json::Value,
    whole_floats: bool,
    options: Option<crate::options::PublishOptions>,
    out: &mut dyn Any,
) -> Result<(), crate::error::IngestError>;

/// The compiled validator of one event type, made on first use and kept for the process.
pub(crate) type ValidatorCell = std::sync::OnceLock<Result<jsonschema::Validator, String>>;

/// How an event's previous version becomes this one: `#[event(upcast_from = OrderPlacedV1)]`.
#[derive(Debug)]
pub struct UpcastInfo {
    pub(crate) from: fn() -> &'static EventInfo,
    pub(crate) convert: fn(&AnyEvent) -> Result<Box<AnyEvent>, String>,
}

impl EventInfo {
    /// The event's name, e.g. `order.placed`.
    pub fn name(&self) -> &'static str {
        self.name
    }
    /// The payload's version.
    pub fn version(&self) -> u32 {
        self.version
    }
    /// The event's kind.
    pub fn kind(&self) -> EventKind {
        self.kind
    }
    /// The default priority when queued.
    pub fn priority(&self) -> i32 {
        self.priority
    }
    /// The Rust path of the type, e.g. `shop::events::OrderPlaced`.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }
    /// The type's doc comment, if it has one.
    pub fn description(&self) -> Option<&'static str> {
        self.description
    }
    /// The payload's JSON Schema.
    pub fn schema(&self) -> &'static Schema {
        (self.schema)()
    }
    /// The JSON keys of its `#[event(redact)]` fields.
    pub fn redacted_fields(&self) -> &'static [&'static str] {
        self.redacted
    }
    /// Whether the type holds [`Personal`](crate::personal::Personal) data.
    pub fn has_personal_data(&self) -> bool {
        self.personal
    }
    /// The top-level JSON keys whose values no error message quotes: the
    /// `#[event(redact)]` fields and every property whose schema holds a
    /// [`Personal`](crate::personal::Personal) value, at any depth (read from the schema,
    /// so `#[serde(rename_all)]`, `Option<Personal<T>>` and a struct holding a `Personal`
    /// field count).
    pub fn secret_keys(&self) -> &[Box<str>] {
        self.secrets.get_or_init(|| {
            let schema = serde_json::to_value(self.schema()).unwrap_or_default();
            let mut keys: Vec<Box<str>> = self.redacted.iter().map(|k| (*k).into()).collect();
            for key in crate::personal::personal_properties(&schema) {
                if !keys.iter().any(|k| **k == *key) {
                    keys.push(key.into());
                }
            }
            keys.into_boxed_slice()
        })
    }
    /// The previous version this one is upcast from (`#[event(upcast_from = ..)]`).
    pub fn upcast_from(&self) -> Option<&'static EventInfo> {
        self.upcast.as_ref().map(|u| (u.from)())
    }
    /// For a query, its answer's type.
    pub fn response(&self) -> Option<&ResponseInfo> {
        self.response.as_ref()
    }
    /// The Rust type's id.
    pub fn type_id(&self) -> TypeId {
        (self.type_id)()
    }
}

impl fmt::Debug for EventInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventInfo")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("kind", &self.kind)
            .field("priority", &self.priority)
            .field("type_name", &self.type_name)
            .finish_non_exhaustive()
    }
}

/// Any event, whatever its type: what a wildcard handler (`ev: &AnyEvent`) and a pattern
/// subscription receive. `AnyEvent` is `dyn Payload`; every [`Event`] is a `Payload`.
///
/// ```standalone_crate
/// # #[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// # #[event(name = "order.placed")]
/// # struct OrderPlaced { id: u64 }
/// use events::AnyEvent;
/// let ev: &AnyEvent = &OrderPlaced { id: 7 };
/// assert_eq!(ev.name(), "order.placed");
/// assert_eq!(ev.to_json().unwrap(), serde_json::json!({ "id": 7 }));
/// assert_eq!(ev.downcast_ref::<OrderPlaced>().map(|o| o.id), Some(7));
/// ```
pub type AnyEvent = dyn Payload;

/// The type-erased view of an [`Event`] behind [`AnyEvent`]. Implemented for every event;
/// there is no reason to implement it yourself.
pub trait Payload: Any + Send + Sync {
    /// The event type's catalog entry.
    fn info(&self) -> &'static EventInfo;
    /// The payload as JSON, serialized now: nothing is serialized unless this is called.
    ///
    /// # Errors
    /// When the type's `Serialize` implementation fails.
    fn to_json(&self) -> Result<serde_json::Value, serde_json::Error>;
    /// The event as `Any`, to downcast.
    fn as_any(&self) -> &(dyn Any + Send + Sync);
    /// The boxed event as `Any`, to downcast by value.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send + Sync>;
    /// The payload as JSON text (what an event store keeps).
    ///
    /// # Errors
    /// When the type's `Serialize` implementation fails.
    fn to_json_text(&self) -> Result<String, serde_json::Error> {
        self.to_json().map(|v| v.to_string())
    }
    /// The data subject of its personal data ([`Event::data_subject`]).
    fn data_subject(&self) -> Option<String> {
        None
    }
    /// The payload as JSON with every `#[event(redact)]` field replaced by `"[redacted]"`
    /// and every [`Personal`](crate::personal::Personal) value by `"[personal]"`: what
    /// logs, error reports and dead-letter dumps show. Handlers still get the values.
    ///
    /// # Errors
    /// When the type's `Serialize` implementation fails.
    fn to_redacted_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        let mut json = crate::personal::shown(|| self.to_json())?;
        if let serde_json::Value::Object(map) = &mut json {
            for key in self.info().redacted {
                if let Some(v) = map.get_mut(*key) {
                    *v = serde_json::Value::String(REDACTED.to_owned());
                }
            }
        }
        Ok(json)
    }
}

/// What a redacted value is shown as.
pub(crate) const REDACTED: &str = "[redacted]";

impl<E: Event> Payload for E {
    #[inline]
    fn info(&self) -> &'static EventInfo {
        E::info()
    }
    fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(self)
    }
    fn to_json_text(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
    fn data_subject(&self) -> Option<String> {
        Event::data_subject(self)
    }
    #[inline]
    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send + Sync> {
        self
    }
}

impl dyn Payload {
    /// The event's name.
    pub fn name(&self) -> &'static str {
        self.info().name
    }
    /// The payload's version.
    pub fn version(&self) -> u32 {
        self.info().version
    }
    /// The event as an `E`, if it is one.
    pub fn downcast_ref<E: Event>(&self) -> Option<&E> {
        self.as_any().downcast_ref::<E>()
    }
}

impl fmt::Debug for dyn Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyEvent")
            .field("name", &self.name())
            .field("version", &self.version())
            .finish_non_exhaustive()
    }
}
