//! What a publisher may add to an envelope: [`PublishOptions`], and the [`Metadata`] that
//! travels as CloudEvents extensions.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::ids::EventId;

/// Metadata carried with an event (tenant, user, request id, ...): it travels as CloudEvents
/// extension attributes, so keys are lower-case ASCII letters and digits
/// ([`is_metadata_key`]) and values are strings, integers or booleans, as CloudEvents types them.
pub type Metadata = BTreeMap<String, MetaValue>;

/// One metadata value: a CloudEvents String, Integer or Boolean.
///
/// ```
/// # use events::MetaValue;
/// let tenant: MetaValue = "acme".into();
/// assert_eq!(tenant, "acme");
/// assert_eq!(MetaValue::from(3), MetaValue::Integer(3));
/// assert_eq!(MetaValue::from(true).to_string(), "true");
/// ```
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(untagged)]
pub enum MetaValue {
    /// A CloudEvents Boolean: JSON `true` or `false`.
    Boolean(bool),
    /// A CloudEvents Integer: a JSON number from -2^31 to 2^31 - 1.
    Integer(i32),
    /// A CloudEvents String (or URI, timestamp, ...): a JSON string. (Named `Text`, not
    /// `String`: a variant named `String` makes rustc spell out `std::string::String` in
    /// every user's error message.)
    Text(String),
}

impl MetaValue {
    /// The text of a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Text(s) => Some(s),
            _ => None,
        }
    }
    /// Its JSON form, as CloudEvents' JSON format writes it.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            MetaValue::Boolean(b) => (*b).into(),
            MetaValue::Integer(i) => (*i).into(),
            MetaValue::Text(s) => s.as_str().into(),
        }
    }
    /// Bytes it takes in memory beyond its own size.
    pub(crate) fn heap_len(&self) -> usize {
        self.as_str().map_or(0, str::len)
    }
}

impl fmt::Display for MetaValue {
    /// The CloudEvents canonical string form (`true`, `42`, the text).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaValue::Boolean(b) => write!(f, "{b}"),
            MetaValue::Integer(i) => write!(f, "{i}"),
            MetaValue::Text(s) => f.write_str(s),
        }
    }
}

impl From<String> for MetaValue {
    fn from(s: String) -> MetaValue {
        MetaValue::Text(s)
    }
}
impl From<&str> for MetaValue {
    fn from(s: &str) -> MetaValue {
        MetaValue::Text(s.to_owned())
    }
}
impl From<&String> for MetaValue {
    fn from(s: &String) -> MetaValue {
        MetaValue::Text(s.clone())
    }
}
impl From<i32> for MetaValue {
    fn from(i: i32) -> MetaValue {
        MetaValue::Integer(i)
    }
}
impl From<bool> for MetaValue {
    fn from(b: bool) -> MetaValue {
        MetaValue::Boolean(b)
    }
}
impl PartialEq<str> for MetaValue {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == Some(other)
    }
}
impl PartialEq<&str> for MetaValue {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == Some(*other)
    }
}
impl PartialEq<String> for MetaValue {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == Some(other.as_str())
    }
}

/// Whether `key` can name a metadata entry: lower-case ASCII letters and digits, as
/// CloudEvents requires of an extension attribute's name, and not an attribute the envelope
/// already has (`id`, `source`, `type`, `time`, `eventversion`, `correlationid`, ...).
/// `subject` is allowed: it is the CloudEvents `subject`. Keys with any other character are
/// reserved for the bus (`cloudevents.id`), so input from outside can never set them.
pub fn is_metadata_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && !RESERVED_KEYS.contains(&key)
}

/// CloudEvents attributes that the envelope sets itself.
pub(crate) const RESERVED_KEYS: [&str; 13] = [
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "datacontenttype",
    "dataschema",
    "data",
    "data_base64",
    "eventversion",
    "correlationid",
    "causationid",
    "dataref",
];

/// Publish options, or their absence known at compile time.
pub(crate) trait Options {
    /// `true` for [`NoOptions`]: the root fast path.
    const NONE: bool;
    /// The options, if any.
    fn into_options(self) -> Option<PublishOptions>;
}

/// No options: what the entry points without `_with` pass.
pub(crate) struct NoOptions;

impl Options for NoOptions {
    const NONE: bool = true;
    #[inline(always)]
    fn into_options(self) -> Option<PublishOptions> {
        None
    }
}

impl Options for PublishOptions {
    const NONE: bool = false;
    #[inline(always)]
    fn into_options(self) -> Option<PublishOptions> {
        Some(self)
    }
}

impl Options for Option<PublishOptions> {
    const NONE: bool = false;
    #[inline(always)]
    fn into_options(self) -> Option<PublishOptions> {
        self
    }
}

/// Settings for one publish, for [`Bus::publish_with`](crate::Bus::publish_with).
///
/// ```
/// # use events::{EventId, PublishOptions};
/// let opts = PublishOptions::new()
///     .correlation_id(EventId::new())
///     .source("checkout-api")
///     .metadata("tenant", "acme");
/// # let _ = opts;
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct PublishOptions {
    pub(crate) correlation_id: Option<EventId>,
    pub(crate) source: Option<Arc<str>>,
    pub(crate) target: Option<Arc<str>>,
    pub(crate) metadata: Metadata,
    pub(crate) priority: Option<i32>,
    pub(crate) expires_at: Option<SystemTime>,
    /// Kept from an envelope that came from outside (CloudEvents).
    pub(crate) id: Option<EventId>,
    pub(crate) time: Option<SystemTime>,
    pub(crate) causation_id: Option<EventId>,
    pub(crate) ack: Option<crate::outbox::Ack>,
}

impl PublishOptions {
    /// No settings: the same as [`Bus::publish`](crate::Bus::publish).
    pub fn new() -> PublishOptions {
        PublishOptions::default()
    }
    /// Whether nothing is set: the envelope is then a plain root event's.
    pub(crate) fn is_empty(&self) -> bool {
        self.correlation_id.is_none()
            && self.source.is_none()
            && self.target.is_none()
            && self.metadata.is_empty()
            && self.priority.is_none()
            && self.expires_at.is_none()
            && self.id.is_none()
            && self.time.is_none()
            && self.causation_id.is_none()
            && self.ack.is_none()
    }
    /// Publishes with this id instead of a new one: for an event whose id is already known
    /// (re-sent from an outbox, or by a client retrying a request). With a
    /// [store](crate::store), a second event with the same id is refused as a duplicate and
    /// reaches no handler.
    pub fn id(mut self, id: EventId) -> PublishOptions {
        self.id = Some(id);
        self
    }
    /// Joins the event to an existing flow, e.g. one started by an incoming request.
    pub fn correlation_id(mut self, id: EventId) -> PublishOptions {
        self.correlation_id = Some(id);
        self
    }
    /// Overrides the bus's source for this event.
    pub fn source(mut self, source: impl Into<Arc<str>>) -> PublishOptions {
        self.source = Some(source.into());
        self
    }
    /// Whom the event is meant for: a service or component name. Every handler still
    /// receives the event; those that should only see events for them filter with
    /// [`Filter::target`](crate::Filter::target).
    pub fn target(mut self, target: impl Into<Arc<str>>) -> PublishOptions {
        self.target = Some(target.into());
        self
    }
    /// Adds one metadata entry: a string, an `i32` or a `bool`. It travels as a CloudEvents
    /// extension attribute of the same name and type, so the key must be lower-case ASCII
    /// letters and digits ([`is_metadata_key`]); publishing with any other key fails with
    /// [`PublishError::BadMetadata`](crate::PublishError::BadMetadata).
    pub fn metadata(
        mut self,
        key: impl Into<String>,
        value: impl Into<MetaValue>,
    ) -> PublishOptions {
        self.metadata.insert(key.into(), value.into());
        self
    }
    /// The priority in the background queue, instead of the event type's
    /// (`#[event(priority = N)]`); higher is taken first.
    pub fn priority(mut self, priority: i32) -> PublishOptions {
        self.priority = Some(priority);
        self
    }
    /// A queued event not taken by a worker by then is not delivered; it is reported as
    /// expired. Publishing an event that has already expired fails with
    /// [`PublishError::Expired`](crate::PublishError::Expired).
    pub fn expires_at(mut self, at: SystemTime) -> PublishOptions {
        self.expires_at = Some(at);
        self
    }
    /// [`expires_at`](Self::expires_at) now plus `ttl`.
    pub fn ttl(self, ttl: Duration) -> PublishOptions {
        self.expires_at(SystemTime::now() + ttl)
    }
    /// When this publish resolves, if the event leaves the process: on the broker's
    /// acknowledgement or on the local commit to the outbox (see
    /// [`Ack`](crate::outbox::Ack); the bus's default otherwise). An event that stays in
    /// the process ignores it.
    pub fn ack(mut self, ack: crate::outbox::Ack) -> PublishOptions {
        self.ack = Some(ack);
        self
    }
}
