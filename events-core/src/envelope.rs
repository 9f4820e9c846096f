//! What travels with every event: its id, time, source, correlation and causation
//! ([`Meta`]), and the id generator behind [`EventId`].

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use crate::event::EventInfo;

/// An event's unique id: a UUIDv7, so ids sort by creation time.
///
/// Ids are generated without a system call or a lock: a per-thread generator follows
/// RFC 9562's "monotonic random" method (48-bit Unix milliseconds, a 12-bit counter within
/// the same millisecond, 62 random bits). Ids made by one thread strictly increase; ids made
/// by different threads are unique and ordered by millisecond.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct EventId(Uuid);

impl EventId {
    /// A new, time-ordered id for now.
    pub fn new() -> EventId {
        EventId::now().0
    }

    /// A new id together with the wall-clock time it encodes (one clock read for both).
    pub(crate) fn now() -> (EventId, u64) {
        GENERATOR.with(|g| {
            let nanos = g.wall_nanos();
            (EventId(g.next(nanos / 1_000_000)), nanos)
        })
    }

    /// The id as a [`Uuid`].
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for EventId {
    fn default() -> Self {
        EventId::new()
    }
}

impl From<Uuid> for EventId {
    fn from(u: Uuid) -> Self {
        EventId(u)
    }
}

impl From<EventId> for Uuid {
    fn from(id: EventId) -> Self {
        id.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.0)
    }
}

impl FromStr for EventId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(EventId)
    }
}

thread_local! {
    static GENERATOR: Generator = Generator::seeded();
}

/// The processor's time-stamp counter, calibrated once per process (`quanta`).
fn tsc() -> &'static quanta::Clock {
    static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// Calibrates the clock ahead of the first event (it takes a few milliseconds).
pub(crate) fn warm_up_clock() {
    let _ = tsc();
}

/// How long a thread's wall-clock anchor is trusted before it is read again.
const ANCHOR_NANOS: u64 = 50_000_000;

/// Per thread: the wall clock and the event-id generator.
///
/// Wall time is read from the system (`clock_gettime`, about 30 ns on a VM) once per
/// 50 ms and carried forward with the time-stamp counter (about 12 ns) in between, so it
/// follows NTP adjustments within 50 ms at a third of the cost.
///
/// Ids follow RFC 9562 §6.2 method 1: a counter in `rand_a`, re-based on each new
/// millisecond; when it overflows within one millisecond the timestamp is advanced, which
/// keeps ids monotonic.
struct Generator {
    last_ms: Cell<u64>,
    counter: Cell<u16>,
    rng: Cell<u64>,
    /// Counter value and wall time (ns since the Unix epoch) at the last anchor.
    anchor_raw: Cell<u64>,
    anchor_wall: Cell<u64>,
}

impl Generator {
    fn seeded() -> Generator {
        // `RandomState` is seeded from the OS once per thread; no extra dependency.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x9e37_79b9_7f4a_7c15);
        Generator {
            last_ms: Cell::new(0),
            counter: Cell::new(0),
            rng: Cell::new(h.finish()),
            anchor_raw: Cell::new(0),
            anchor_wall: Cell::new(0),
        }
    }

    /// Nanoseconds since the Unix epoch.
    #[inline]
    fn wall_nanos(&self) -> u64 {
        let clock = tsc();
        let raw = clock.raw();
        let since = clock.delta_as_nanos(self.anchor_raw.get(), raw);
        if self.anchor_wall.get() == 0 || since >= ANCHOR_NANOS || raw < self.anchor_raw.get() {
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            self.anchor_raw.set(raw);
            self.anchor_wall.set(wall);
            return wall;
        }
        self.anchor_wall.get() + since
    }

    fn random(&self) -> u64 {
        // wyrand: fast, passes BigCrush; uniqueness, not secrecy, is what ids need.
        let s = self.rng.get().wrapping_add(0xa076_1d64_78bd_642f);
        self.rng.set(s);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    fn next(&self, now_ms: u64) -> Uuid {
        let mut ms = self.last_ms.get();
        let counter = if now_ms > ms {
            ms = now_ms;
            // Start low in the 12-bit space so a burst has room before it spills over.
            (self.random() & 0x1ff) as u16
        } else {
            let c = self.counter.get() + 1;
            if c > 0xfff {
                ms += 1;
                0
            } else {
                c
            }
        };
        self.last_ms.set(ms);
        self.counter.set(counter);
        let rand_b = self.random() & 0x3fff_ffff_ffff_ffff;
        let hi = (ms << 16) | 0x7000 | u64::from(counter);
        let lo = 0x8000_0000_0000_0000 | rand_b;
        Uuid::from_u64_pair(hi, lo)
    }
}

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

/// An event's metadata: the envelope around the payload.
///
/// Every published event gets one. A root event is its own correlation: its correlation id is
/// its id and it has no causation id. An event published from inside a handler through its
/// [`Context`](crate::Context) is a child: same correlation id, causation id = the parent's id.
///
/// It is 56 bytes for a root event published without options: what only children and events
/// with options need lives in a box that other events do not allocate.
#[derive(Clone)]
pub struct Meta {
    pub(crate) id: EventId,
    /// Nanoseconds since the Unix epoch.
    pub(crate) time: u64,
    pub(crate) info: &'static EventInfo,
    /// The bus's source.
    pub(crate) source: &'static str,
    pub(crate) extra: Option<Box<Extra>>,
}

/// What a child event inherits from its parent: small and `Copy`, so it can sit in a
/// task-local for the duration of a dispatch without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lineage {
    pub(crate) id: EventId,
    pub(crate) correlation_id: EventId,
    pub(crate) depth: u32,
}

/// Nanoseconds since the Unix epoch; 0 before it.
fn nanos_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Lineage {
    /// A placeholder, never read as a real parent.
    pub(crate) const NONE: Lineage = Lineage {
        id: EventId(Uuid::nil()),
        correlation_id: EventId(Uuid::nil()),
        depth: 0,
    };
}

/// The parts of [`Meta`] that a root event published without options does not have.
#[derive(Clone, Debug)]
pub(crate) struct Extra {
    pub(crate) correlation_id: EventId,
    pub(crate) causation_id: Option<EventId>,
    pub(crate) depth: u32,
    pub(crate) source: Option<Arc<str>>,
    pub(crate) target: Option<Arc<str>>,
    pub(crate) metadata: Metadata,
    pub(crate) priority: Option<i32>,
    /// Nanoseconds since the Unix epoch.
    pub(crate) expires_at: Option<u64>,
    /// Its position in the bus's store; 0 when not stored.
    pub(crate) sequence: u64,
    /// Set while the event is replayed: which handlers get it.
    pub(crate) replay: Option<Arc<crate::bus::durable::Selection>>,
}

static NO_METADATA: Metadata = Metadata::new();

impl Meta {
    /// The event's id.
    #[inline]
    pub fn id(&self) -> EventId {
        self.id
    }
    /// The event's name.
    #[inline]
    pub fn name(&self) -> &'static str {
        self.info.name
    }
    /// The payload's version.
    pub fn version(&self) -> u32 {
        self.info.version
    }
    /// The event type's catalog entry.
    pub fn info(&self) -> &'static EventInfo {
        self.info
    }
    /// When the event was published.
    pub fn time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.time)
    }
    /// Who published it: the bus's source (see [`BusBuilder::source`](crate::BusBuilder::source))
    /// unless the publisher set another.
    pub fn source(&self) -> &str {
        self.extra
            .as_ref()
            .and_then(|e| e.source.as_deref())
            .unwrap_or(self.source)
    }
    /// Whom the event is meant for (a service or component name), if the publisher said:
    /// see [`PublishOptions::target`].
    pub fn target(&self) -> Option<&str> {
        self.extra.as_ref().and_then(|e| e.target.as_deref())
    }
    /// The id shared by every event of one flow; a root event's own id.
    #[inline]
    pub fn correlation_id(&self) -> EventId {
        self.extra.as_ref().map_or(self.id, |e| e.correlation_id)
    }
    /// The id of the event whose handler published this one; `None` for a root event.
    #[inline]
    pub fn causation_id(&self) -> Option<EventId> {
        self.extra.as_ref().and_then(|e| e.causation_id)
    }
    /// How many parents the event has: 0 for a root event.
    #[inline]
    pub fn depth(&self) -> u32 {
        self.extra.as_ref().map_or(0, |e| e.depth)
    }
    /// The free-form metadata.
    pub fn metadata(&self) -> &Metadata {
        self.extra.as_ref().map_or(&NO_METADATA, |e| &e.metadata)
    }
    /// Its priority in the background queue: set when published, else the event type's.
    pub fn priority(&self) -> i32 {
        self.extra
            .as_ref()
            .and_then(|e| e.priority)
            .unwrap_or(self.info.priority)
    }
    /// When it expires, if it does.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at_nanos()
            .map(|n| UNIX_EPOCH + Duration::from_nanos(n))
    }
    fn expires_at_nanos(&self) -> Option<u64> {
        self.extra.as_ref().and_then(|e| e.expires_at)
    }
    /// Whether it has expired by now.
    pub(crate) fn is_expired(&self) -> bool {
        self.expires_at_nanos()
            .is_some_and(|at| EventId::now().1 >= at)
    }

    /// The event's position in the bus's [store](crate::store), once stored: events are
    /// appended before their handlers run, so handlers always see it on a bus with a store.
    pub fn sequence(&self) -> Option<u64> {
        self.extra
            .as_ref()
            .and_then(|e| (e.sequence != 0).then_some(e.sequence))
    }

    /// The parts beyond a root event's, made for a root event when it first needs them.
    fn extra_mut(&mut self) -> &mut Extra {
        let id = self.id;
        self.extra
            .get_or_insert_with(|| Extra::new(id, None, PublishOptions::default()))
    }

    /// Records where the store put the event.
    pub(crate) fn set_sequence(&mut self, sequence: u64) {
        self.extra_mut().sequence = sequence;
    }

    /// The replay delivering the event, if it is being replayed.
    pub(crate) fn replay(&self) -> Option<&Arc<crate::bus::durable::Selection>> {
        self.extra.as_ref().and_then(|e| e.replay.as_ref())
    }

    /// Marks the event as replayed to the handlers `selection` chooses (`None`: not replayed).
    pub(crate) fn set_replay(&mut self, selection: Option<Arc<crate::bus::durable::Selection>>) {
        if selection.is_some() || self.extra.is_some() {
            self.extra_mut().replay = selection;
        }
    }

    /// What a child of this event inherits.
    #[inline]
    pub(crate) fn lineage(&self) -> Lineage {
        Lineage {
            id: self.id,
            correlation_id: self.correlation_id(),
            depth: self.depth(),
        }
    }

    /// The envelope of a new event of type `info` on a bus whose source is `source`.
    #[inline(always)]
    pub(crate) fn new<O: Options>(
        info: &'static EventInfo,
        source: &'static str,
        parent: Option<Lineage>,
        options: O,
    ) -> Meta {
        let (mut id, mut time) = EventId::now();
        // Decided at compile time for the entry points without options: no options value
        // exists on that path, so none is moved, checked or dropped.
        let options = if O::NONE {
            None
        } else {
            options.into_options()
        };
        let extra = match options {
            None => parent.map(|parent| Extra::child(id, parent)),
            Some(o) => {
                id = o.id.unwrap_or(id);
                time = o.time.map_or(time, nanos_since_epoch);
                Some(Extra::new(id, parent, o))
            }
        };
        Meta {
            id,
            time,
            info,
            source,
            extra,
        }
    }
}

impl Meta {
    /// The envelope of a stored event, as it was published; `info` is the type it is
    /// decoded as (the stored version's, or a later one's after upcasting).
    pub(crate) fn restore(
        info: &'static EventInfo,
        source: &'static str,
        stored: &crate::store::StoredEvent,
    ) -> Meta {
        Meta {
            id: stored.id,
            time: stored.time,
            info,
            source,
            extra: Some(Box::new(Extra {
                correlation_id: stored.correlation_id,
                causation_id: stored.causation_id,
                depth: stored.depth,
                source: Some(stored.source.as_str().into()),
                target: stored.target.as_deref().map(Into::into),
                metadata: stored.metadata.clone(),
                priority: Some(stored.priority),
                expires_at: None,
                sequence: stored.sequence,
                replay: None,
            })),
        }
    }
}

impl Extra {
    /// What a child event published without options carries beyond a root event.
    #[inline(never)]
    fn child(id: EventId, parent: Lineage) -> Box<Extra> {
        Extra::new(id, Some(parent), PublishOptions::default())
    }

    /// What an event published with options carries beyond a root event.
    #[inline(never)]
    fn new(id: EventId, parent: Option<Lineage>, options: PublishOptions) -> Box<Extra> {
        Box::new(Extra {
            correlation_id: options
                .correlation_id
                .or(parent.map(|p| p.correlation_id))
                .unwrap_or(id),
            causation_id: options.causation_id.or(parent.map(|p| p.id)),
            depth: parent.map_or(0, |p| p.depth + 1),
            source: options.source,
            target: options.target,
            metadata: options.metadata,
            priority: options.priority,
            expires_at: options.expires_at.map(nanos_since_epoch),
            sequence: 0,
            replay: None,
        })
    }
}

impl fmt::Debug for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Meta")
            .field("id", &self.id)
            .field("name", &self.name())
            .field("version", &self.version())
            .field("time", &self.time())
            .field("source", &self.source())
            .field("target", &self.target())
            .field("correlation_id", &self.correlation_id())
            .field("causation_id", &self.causation_id())
            .field("depth", &self.depth())
            .field("metadata", self.metadata())
            .field("priority", &self.priority())
            .field("expires_at", &self.expires_at())
            .finish()
    }
}

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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_v7_unique_and_increasing_within_a_thread() {
        let ids: Vec<EventId> = (0..100_000).map(|_| EventId::new()).collect();
        for w in ids.windows(2) {
            assert!(w[0] < w[1], "{} !< {}", w[0], w[1]);
        }
        let first = ids[0].as_uuid();
        assert_eq!(first.get_version_num(), 7);
        assert_eq!(first.get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn id_timestamp_is_wall_clock_milliseconds() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let (id, time) = EventId::now();
        let (secs, nanos) = id.as_uuid().get_timestamp().unwrap().to_unix();
        let id_ms = secs * 1000 + u64::from(nanos) / 1_000_000;
        let t_ms = time / 1_000_000;
        assert!(
            id_ms >= before && id_ms <= t_ms + 1,
            "{before} <= {id_ms} <= {t_ms}"
        );
    }

    #[test]
    fn the_anchored_clock_tracks_the_system_clock_across_re_anchoring() {
        let system = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        };
        let mut last = 0;
        for round in 0..4 {
            let before = system();
            let (_, ours) = EventId::now();
            let after = system();
            // Within 1 ms of the system clock read around it (TSC drift over 50 ms is µs).
            assert!(
                ours + 1_000_000 >= before && ours <= after + 1_000_000,
                "round {round}"
            );
            assert!(ours >= last, "time went backwards");
            last = ours;
            if round % 2 == 1 {
                // Past the anchor window: the next read re-anchors.
                std::thread::sleep(std::time::Duration::from_millis(60));
            }
        }
    }

    #[test]
    fn counter_overflow_advances_the_timestamp_and_stays_monotonic() {
        let g = Generator::seeded();
        let ids: Vec<Uuid> = (0..10_000).map(|_| g.next(1_000)).collect();
        for w in ids.windows(2) {
            assert!(w[0] < w[1]);
        }
        assert!(ids.last().unwrap().get_timestamp().is_some());
        // A clock that goes backwards does not make ids go backwards.
        let after = g.next(5);
        assert!(after > *ids.last().unwrap());
    }

    #[test]
    fn ids_from_many_threads_are_unique() {
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..50_000).map(|_| EventId::new()).collect::<Vec<_>>()))
            .collect();
        let mut all: Vec<EventId> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn id_round_trips_through_text() {
        let id = EventId::new();
        assert_eq!(id.to_string().parse::<EventId>().unwrap(), id);
    }
}
