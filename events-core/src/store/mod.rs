//! Event stores: the history of published events, the delivery records that make delivery
//! at-least-once across crashes, and durable dead letters.
//!
//! A bus with a store ([`BusBuilder::store`](crate::BusBuilder::store)) appends every event
//! before its handlers run: [`Bus::publish`](crate::Bus::publish) resolves only after the
//! store has the event. Handlers marked `#[handler(durable)]` get a delivery record when they
//! are done with an event (succeeded, or failed for good into the dead-letter queue);
//! [`Bus::recover`](crate::Bus::recover) delivers every stored event a durable handler has no
//! record for: the ones a crash interrupted, and the whole history for a durable handler added
//! later. [`Bus::replay`](crate::Bus::replay) delivers stored events again.
//!
//! Two stores come with the crate:
//!
//! | store | durable | history | dead letters | for |
//! |---|---|---|---|---|
//! | [`MemoryStore`] | no | bounded by a byte budget (default 10 MB), oldest evicted first | within the same budget, at most half of it | tests, replay of recent events |
//! | `SqliteStore` (feature `sqlite`) | yes: WAL, `synchronous = FULL` by default, group commit, a high-water mark that detects a lost tail | the whole log | the newest `SqliteOptions::max_dead_letters` (default 100,000) | a service that must not lose events |
//!
//! Recovery and replay read a page at a time ([`EventStore::undelivered`]'s `limit`,
//! [`StoreQuery::limit`]), so their memory does not grow with the history; a row that cannot
//! be read back is an `Err` in its place ([`Row`]) and costs one event, not the read.
//!
//! Implement [`EventStore`] for another backend.

mod keys;
mod memory;
mod outbox;
mod stream;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use crate::error::StoreError;
pub(crate) use keys::check_subject;
pub use keys::{
    KeyStore, Kms, MAX_SUBJECT_BYTES, MemoryKeys, stored_key, unwrap_secret, wrap_secret,
};
pub use memory::MemoryStore;
pub use outbox::{Backlog, Inbox, InboxKey, Outbox, TransactionError};
pub use stream::{Snapshot, StreamAppend, StreamEvent, StreamLoad, Streams};

use crate::envelope::{EventId, Meta, Metadata};
use crate::event::EventKind;
use crate::pattern::InvalidPattern;

/// What a store's asynchronous operations return.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// One row of a [read](EventStore::read): an event, or `Err(StoreError::Corrupt)` for a row
/// that cannot be read back (it costs that one event, not the read).
pub type Row = Result<StoredEvent, StoreError>;

/// The sequence of a row, readable or not.
pub(crate) fn row_sequence(row: &Row) -> Option<u64> {
    match row {
        Ok(e) => Some(e.sequence),
        Err(e) => e.corrupt_sequence(),
    }
}

/// What one retention rule deletes ([`EventStore::purge`]): events named one of `names`,
/// below sequence `below` (what durable handlers and the outbox are done with), published
/// before `before` (nanoseconds since the Unix epoch), except the newest `keep` of each
/// name; at most `limit` of them in one call, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Purge {
    /// The event names.
    pub names: Vec<String>,
    /// Only events below this sequence.
    pub below: u64,
    /// Only events published before this time.
    pub before: u64,
    /// The newest this many events of each name are kept.
    pub keep: u64,
    /// At most this many events are deleted by one call (one transaction); the caller
    /// calls again while a call deletes this many. No limit by default.
    pub limit: u64,
}

impl Purge {
    /// Events named `names` below sequence `below`, published before `before`, but the
    /// newest `keep` of each name; without a limit.
    pub fn new(names: Vec<String>, below: u64, before: u64, keep: u64) -> Purge {
        Purge {
            names,
            below,
            before,
            keep,
            limit: u64::MAX,
        }
    }

    /// At most `limit` events deleted by one call: what the bus's retention runs use
    /// ([`PURGE_PAGE`]), so that memory and each transaction stay bounded.
    #[must_use]
    pub fn limit(mut self, limit: u64) -> Purge {
        self.limit = limit;
        self
    }
}

/// How many events one retention call deletes at most, in one transaction.
pub const PURGE_PAGE: u64 = 10_000;

/// One event as a store keeps it: the envelope's fields and the payload as JSON text.
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct StoredEvent {
    /// Its position in the store's log: increasing from 1 in the order appends became
    /// durable (a refused append may leave a gap). 0 before it is appended.
    pub sequence: u64,
    /// The event's id.
    pub id: EventId,
    /// Its name.
    pub name: String,
    /// Its payload's version.
    pub version: u32,
    /// Its kind, as [`EventKind::as_str`] spells it.
    pub kind: String,
    /// When it was published, in nanoseconds since the Unix epoch.
    pub time: u64,
    /// Who published it.
    pub source: String,
    /// Whom it was meant for.
    pub target: Option<String>,
    /// Its flow's id.
    pub correlation_id: EventId,
    /// The event whose handler published it.
    pub causation_id: Option<EventId>,
    /// How many parents it has.
    pub depth: u32,
    /// Its priority.
    pub priority: i32,
    /// Free-form metadata.
    pub metadata: Metadata,
    /// The payload, as JSON text.
    pub payload: String,
}

impl StoredEvent {
    /// An event named `name` with id `id` and everything else empty (sequence 0, version 1,
    /// kind `notification`, time 0, payload `null`): for a store in another crate, which
    /// sets the public fields from what it reads back.
    pub fn new(id: EventId, name: impl Into<String>) -> StoredEvent {
        StoredEvent {
            sequence: 0,
            id,
            name: name.into(),
            version: 1,
            kind: EventKind::Notification.as_str().to_owned(),
            time: 0,
            source: String::new(),
            target: None,
            correlation_id: id,
            causation_id: None,
            depth: 0,
            priority: 0,
            metadata: Metadata::new(),
            payload: "null".to_owned(),
        }
    }

    /// The stored form of an event's envelope and JSON payload.
    pub(crate) fn of(meta: &Meta, payload: String) -> StoredEvent {
        StoredEvent {
            sequence: 0,
            id: meta.id(),
            name: meta.name().to_owned(),
            version: meta.version(),
            kind: meta.info().kind().as_str().to_owned(),
            time: meta.time,
            source: meta.source().to_owned(),
            target: meta.target().map(str::to_owned),
            correlation_id: meta.correlation_id(),
            causation_id: meta.causation_id(),
            depth: meta.depth(),
            priority: meta.priority(),
            metadata: meta.metadata().clone(),
            payload,
        }
    }

    /// When it was published.
    pub fn time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.time)
    }

    /// The payload parsed as JSON.
    ///
    /// # Errors
    /// When the stored text is not JSON (a damaged store).
    pub fn payload_json(&self) -> Result<serde_json::Value, StoreError> {
        serde_json::from_str(&self.payload).map_err(|e| StoreError::Corrupt {
            sequence: self.sequence,
            reason: format!("payload is not JSON: {e}"),
        })
    }

    /// Roughly how many bytes it takes in memory.
    pub(crate) fn size(&self) -> usize {
        std::mem::size_of::<StoredEvent>()
            + self.name.len()
            + self.kind.len()
            + self.source.len()
            + self.target.as_ref().map_or(0, String::len)
            + self
                .metadata
                .iter()
                .map(|(k, v)| k.len() + v.heap_len() + 48)
                .sum::<usize>()
            + self.payload.len()
    }
}

/// The payload is not shown: it may hold `#[event(redact)]` fields.
impl fmt::Debug for StoredEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredEvent")
            .field("sequence", &self.sequence)
            .field("id", &self.id)
            .field("name", &self.name)
            .field("version", &self.version)
            .field("correlation_id", &self.correlation_id)
            .field("payload_bytes", &self.payload.len())
            .finish_non_exhaustive()
    }
}

/// A dead letter as a store keeps it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct StoredDeadLetter {
    /// Its number (the bus's dead-letter id).
    pub id: u64,
    /// The event.
    pub event: StoredEvent,
    /// The handler that failed.
    pub handler: String,
    /// Its last error.
    pub error: String,
    /// Whether it failed permanently (rather than running out of retries).
    pub permanent: bool,
    /// How many times it ran.
    pub attempts: u32,
    /// First failure, nanoseconds since the Unix epoch.
    pub first_failure: u64,
    /// Last failure, nanoseconds since the Unix epoch.
    pub last_failure: u64,
}

impl StoredDeadLetter {
    /// A dead letter: `event`'s call of `handler` failed for good with `error` (one
    /// attempt, not permanent, no times: set the public fields for the rest).
    pub fn new(
        id: u64,
        event: StoredEvent,
        handler: impl Into<String>,
        error: impl Into<String>,
    ) -> StoredDeadLetter {
        StoredDeadLetter {
            id,
            event,
            handler: handler.into(),
            error: error.into(),
            permanent: false,
            attempts: 1,
            first_failure: 0,
            last_failure: 0,
        }
    }
}

/// In which order a query returns events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    /// Oldest first (ascending sequence): the default.
    #[default]
    OldestFirst,
    /// Newest first.
    NewestFirst,
}

/// Which stored events to read: all by default; each setting narrows.
///
/// ```
/// use events::store::StoreQuery;
/// let q = StoreQuery::all()
///     .name("order.*")?
///     .from_sequence(100)
///     .limit(50);
/// # let _ = q;
/// # Ok::<(), events::InvalidPattern>(())
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct StoreQuery {
    pub(crate) id: Option<EventId>,
    pub(crate) name: Option<String>,
    pub(crate) kind: Option<EventKind>,
    pub(crate) source: Option<String>,
    pub(crate) target: Option<String>,
    pub(crate) correlation_id: Option<EventId>,
    pub(crate) since: Option<u64>,
    pub(crate) until: Option<u64>,
    pub(crate) from_sequence: Option<u64>,
    pub(crate) to_sequence: Option<u64>,
    pub(crate) limit: Option<usize>,
    pub(crate) order: Order,
}

/// What a [`StoreQuery`] selects, read by a store in another crate: every setting, `None`
/// when it does not narrow. A row is selected when it passes every setting
/// ([`StoreQuery::matches`]); then `order`, then `limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueryParts<'a> {
    /// The event with this id.
    pub id: Option<EventId>,
    /// A name or a pattern (`order.*`, `order.>`; checked when the query was made): match it
    /// with [`pattern_matches`].
    pub name: Option<&'a str>,
    /// Events of this kind.
    pub kind: Option<EventKind>,
    /// Events from this source.
    pub source: Option<&'a str>,
    /// Events meant for this target.
    pub target: Option<&'a str>,
    /// Events of this flow.
    pub correlation_id: Option<EventId>,
    /// Events with `time >= since` (nanoseconds since the Unix epoch, as
    /// [`StoredEvent::time`]).
    pub since: Option<u64>,
    /// Events with `time < until` (nanoseconds since the Unix epoch).
    pub until: Option<u64>,
    /// Events with `sequence >= from_sequence`.
    pub from_sequence: Option<u64>,
    /// Events with `sequence <= to_sequence`.
    pub to_sequence: Option<u64>,
    /// At most this many rows, taken in `order`.
    pub limit: Option<usize>,
    /// Oldest or newest first.
    pub order: Order,
}

/// Whether the event name `name` matches `pattern` (a name, or `*` for one segment and a
/// final `>` for the rest), as [`StoreQuery::name`] means it.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    crate::pattern::matches(pattern, name)
}

/// Nanoseconds since the Unix epoch; 0 before it.
pub(crate) fn nanos_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The time `nanos` after the Unix epoch.
pub(crate) fn time_of(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

impl StoreQuery {
    /// Every stored event, oldest first.
    pub fn all() -> StoreQuery {
        StoreQuery::default()
    }
    /// The event with this id.
    pub fn id(mut self, id: EventId) -> StoreQuery {
        self.id = Some(id);
        self
    }
    /// Events whose name matches `pattern`: a name (`order.placed`) or a pattern
    /// (`order.*`, `order.>`), as handlers' patterns.
    ///
    /// # Errors
    /// When `pattern` is not a valid pattern.
    pub fn name(mut self, pattern: impl Into<String>) -> Result<StoreQuery, InvalidPattern> {
        let pattern = pattern.into();
        crate::pattern::check(&pattern)?;
        self.name = Some(pattern);
        Ok(self)
    }
    /// Events of this kind.
    pub fn kind(mut self, kind: EventKind) -> StoreQuery {
        self.kind = Some(kind);
        self
    }
    /// Events from this source.
    pub fn source(mut self, source: impl Into<String>) -> StoreQuery {
        self.source = Some(source.into());
        self
    }
    /// Events meant for this target.
    pub fn target(mut self, target: impl Into<String>) -> StoreQuery {
        self.target = Some(target.into());
        self
    }
    /// Events of one flow.
    pub fn correlation_id(mut self, id: EventId) -> StoreQuery {
        self.correlation_id = Some(id);
        self
    }
    /// Events published at or after `t`.
    pub fn since(mut self, t: SystemTime) -> StoreQuery {
        self.since = Some(nanos_of(t));
        self
    }
    /// Events published before `t`.
    pub fn until(mut self, t: SystemTime) -> StoreQuery {
        self.until = Some(nanos_of(t));
        self
    }
    /// Events from sequence `n` on (inclusive).
    pub fn from_sequence(mut self, n: u64) -> StoreQuery {
        self.from_sequence = Some(n);
        self
    }
    /// Events up to sequence `n` (inclusive).
    pub fn to_sequence(mut self, n: u64) -> StoreQuery {
        self.to_sequence = Some(n);
        self
    }
    /// At most `n` events.
    pub fn limit(mut self, n: usize) -> StoreQuery {
        self.limit = Some(n);
        self
    }
    /// Newest first instead of oldest first.
    pub fn newest_first(mut self) -> StoreQuery {
        self.order = Order::NewestFirst;
        self
    }

    /// What the query selects, for a store that runs queries natively (SQL, say) rather
    /// than scanning with [`matches`](Self::matches).
    pub fn parts(&self) -> QueryParts<'_> {
        QueryParts {
            id: self.id,
            name: self.name.as_deref(),
            kind: self.kind,
            source: self.source.as_deref(),
            target: self.target.as_deref(),
            correlation_id: self.correlation_id,
            since: self.since,
            until: self.until,
            from_sequence: self.from_sequence,
            to_sequence: self.to_sequence,
            limit: self.limit,
            order: self.order,
        }
    }

    /// Moves the query past row `sequence` in its order, for the next page; `false` when
    /// nothing can come after it.
    pub(crate) fn after(&mut self, sequence: u64) -> bool {
        match self.order {
            Order::OldestFirst => match sequence.checked_add(1) {
                Some(next) => {
                    self.from_sequence = Some(next);
                    true
                }
                None => false,
            },
            Order::NewestFirst => match sequence.checked_sub(1) {
                Some(next) if next > 0 => {
                    self.to_sequence = Some(next);
                    true
                }
                _ => false,
            },
        }
    }

    /// Whether `e` is selected (all settings but `limit` and `order`).
    pub fn matches(&self, e: &StoredEvent) -> bool {
        self.id.is_none_or(|id| id == e.id)
            && self
                .name
                .as_deref()
                .is_none_or(|p| crate::pattern::matches(p, &e.name))
            && self.kind.is_none_or(|k| k.as_str() == e.kind)
            && self.source.as_deref().is_none_or(|s| s == e.source)
            && self
                .target
                .as_deref()
                .is_none_or(|t| Some(t) == e.target.as_deref())
            && self.correlation_id.is_none_or(|c| c == e.correlation_id)
            && self.since.is_none_or(|t| e.time >= t)
            && self.until.is_none_or(|t| e.time < t)
            && self.from_sequence.is_none_or(|s| e.sequence >= s)
            && self.to_sequence.is_none_or(|s| e.sequence <= s)
    }
}

/// Where a bus keeps its events. See the [module docs](self).
///
/// Appends must be durable (as durable as the store promises) when their future resolves;
/// the other writes may be batched with later ones: losing one after a crash costs a second
/// delivery or a dead letter shown again, never an event.
///
/// Reads come in pages ([`StoreQuery::limit`], [`undelivered`](Self::undelivered)'s
/// `limit`): recovery and replay hold one page at a time, whatever the history's length. A
/// row that cannot be read back is an `Err` in its place ([`Row`]), so one damaged row costs
/// one event.
pub trait EventStore: Send + Sync + 'static {
    /// Appends `event`; resolves with its sequence number once it is stored.
    /// [`StoreError::Duplicate`] when an event with its id is already stored.
    fn append(&self, event: StoredEvent) -> StoreFuture<'_, u64>;

    /// Records that the durable handler `handler` is done with event `sequence`.
    fn record_delivery(&self, handler: &str, sequence: u64);

    /// The rows `query` selects, in its order; an unreadable row is
    /// `Err(StoreError::Corrupt)` in its place (selected by whatever of it could be read).
    ///
    /// # Errors
    /// When the store cannot be read at all.
    fn read(&self, query: &StoreQuery) -> Result<Vec<Row>, StoreError>;

    /// The stored events `query` selects: [`read`](Self::read) without unreadable rows.
    ///
    /// # Errors
    /// When the store cannot be read, or a selected row is unreadable
    /// ([`StoreError::Corrupt`] with its sequence: narrow the query around it, or use
    /// [`read`](Self::read) to get the others).
    fn query(&self, query: &StoreQuery) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(query)?.into_iter().collect()
    }

    /// How many rows `query` selects (its limit included).
    ///
    /// # Errors
    /// When the store cannot be read.
    fn count(&self, query: &StoreQuery) -> Result<usize, StoreError> {
        let mut page = query.clone();
        let mut left = query.limit.unwrap_or(usize::MAX);
        let mut n = 0;
        while left > 0 {
            page.limit = Some(left.min(PAGE));
            let rows = self.read(&page)?;
            let Some(last) = rows.last().and_then(row_sequence) else {
                break;
            };
            n += rows.len();
            left -= rows.len();
            if rows.len() < page.limit.unwrap_or(0) || !page.after(last) {
                break;
            }
        }
        Ok(n)
    }

    /// Up to `limit` stored events named `event` above sequence `after` that durable handler
    /// `handler` has neither a delivery record nor a checkpoint for, oldest first; an
    /// unreadable one is `Err(StoreError::Corrupt)` in its place.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn undelivered(
        &self,
        handler: &str,
        event: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError>;

    /// Moves `handler`'s checkpoint for events named `event` up to the last sequence before
    /// the first event it has not finished, and forgets the delivery records at or below it;
    /// resolves with the checkpoint.
    fn checkpoint<'a>(&'a self, handler: &'a str, event: &'a str) -> StoreFuture<'a, u64>;

    /// Keeps a dead letter (the store may drop its oldest ones: see its retention).
    fn put_dead_letter(&self, letter: StoredDeadLetter);

    /// Forgets dead letter `id` (retried or discarded).
    fn remove_dead_letter(&self, id: u64);

    /// The newest `limit` kept dead letters, oldest first. A letter that cannot be read back
    /// is left out (and logged).
    ///
    /// # Errors
    /// When the store cannot be read.
    fn dead_letters(&self, limit: usize) -> Result<Vec<StoredDeadLetter>, StoreError>;

    /// The highest dead-letter id ever kept, removed ones included, so that a restarted bus
    /// never gives an id twice. The default looks at the newest kept letter only.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn last_dead_letter_id(&self) -> Result<u64, StoreError> {
        Ok(self.dead_letters(1)?.last().map_or(0, |d| d.id))
    }

    /// Resolves when every write made so far is stored.
    fn flush(&self) -> StoreFuture<'_, ()>;

    /// The store's outbox, if it keeps one: what
    /// [`BusBuilder::outbox`](crate::BusBuilder::outbox) needs. `None` by default.
    fn outbox(&self) -> Option<&dyn Outbox> {
        None
    }

    /// Deletes stored events as a retention rule says ([`Purge`]), at most
    /// [`Purge::limit`] of them, oldest first; how many. Never an event of an aggregate's
    /// stream, never the newest event of the log (its sequence is the store's high-water
    /// mark). Not supported by default.
    fn purge(&self, purge: Purge) -> StoreFuture<'_, u64> {
        let _ = purge;
        Box::pin(std::future::ready(Err(StoreError::Backend(
            "this store cannot delete events (retention)".into(),
        ))))
    }

    /// The store's key store, if it keeps one: where the data keys of
    /// [`Personal`](crate::personal::Personal) values are kept. `None` by default.
    fn keys(&self) -> Option<&dyn KeyStore> {
        None
    }

    /// The store's inbox, if it keeps one: what `#[handler(inbox)]` handlers need. `None`
    /// by default.
    fn inbox(&self) -> Option<&dyn Inbox> {
        None
    }

    /// Forgets durable handler `handler`'s delivery records and its checkpoint for events
    /// named `event`: every stored `event` is undelivered to it again (what
    /// [`Bus::rebuild`](crate::Bus::rebuild) starts from). Not supported by default.
    fn reset<'a>(&'a self, handler: &'a str, event: &'a str) -> StoreFuture<'a, ()> {
        let _ = (handler, event);
        Box::pin(std::future::ready(Err(StoreError::Backend(
            "this store cannot reset a durable handler's progress".into(),
        ))))
    }

    /// How many stored events named `event` durable handler `handler` has not finished
    /// (neither a delivery record nor its checkpoint covers them), and the time of the
    /// oldest (nanoseconds since the Unix epoch). By default counted a page at a time
    /// through [`undelivered`](Self::undelivered).
    ///
    /// # Errors
    /// When the store cannot be read.
    fn lag(&self, handler: &str, event: &str) -> Result<(u64, Option<u64>), StoreError> {
        let (mut count, mut oldest, mut after) = (0u64, None, 0);
        loop {
            let rows = self.undelivered(handler, event, after, PAGE)?;
            for row in &rows {
                if let Ok(e) = row {
                    oldest.get_or_insert(e.time);
                }
                after = after.max(row_sequence(row).unwrap_or(after));
            }
            count += rows.len() as u64;
            if rows.len() < PAGE {
                return Ok((count, oldest));
            }
        }
    }

    /// The store's streams and snapshots, if it keeps them: what event-sourced aggregates
    /// ([`Bus::aggregates`](crate::Bus::aggregates)) need. `None` by default.
    fn streams(&self) -> Option<&dyn Streams> {
        None
    }
}

/// How many rows recovery and replay read at a time.
pub(crate) const PAGE: usize = 256;

/// A shared store: keep a handle (to query it, or in tests) and give the bus another.
impl<S: EventStore + ?Sized> EventStore for Arc<S> {
    fn append(&self, event: StoredEvent) -> StoreFuture<'_, u64> {
        (**self).append(event)
    }
    fn record_delivery(&self, handler: &str, sequence: u64) {
        (**self).record_delivery(handler, sequence);
    }
    fn read(&self, query: &StoreQuery) -> Result<Vec<Row>, StoreError> {
        (**self).read(query)
    }
    fn query(&self, query: &StoreQuery) -> Result<Vec<StoredEvent>, StoreError> {
        (**self).query(query)
    }
    fn count(&self, query: &StoreQuery) -> Result<usize, StoreError> {
        (**self).count(query)
    }
    fn undelivered(
        &self,
        handler: &str,
        event: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        (**self).undelivered(handler, event, after, limit)
    }
    fn checkpoint<'a>(&'a self, handler: &'a str, event: &'a str) -> StoreFuture<'a, u64> {
        (**self).checkpoint(handler, event)
    }
    fn put_dead_letter(&self, letter: StoredDeadLetter) {
        (**self).put_dead_letter(letter);
    }
    fn remove_dead_letter(&self, id: u64) {
        (**self).remove_dead_letter(id);
    }
    fn dead_letters(&self, limit: usize) -> Result<Vec<StoredDeadLetter>, StoreError> {
        (**self).dead_letters(limit)
    }
    fn last_dead_letter_id(&self) -> Result<u64, StoreError> {
        (**self).last_dead_letter_id()
    }
    fn flush(&self) -> StoreFuture<'_, ()> {
        (**self).flush()
    }
    fn outbox(&self) -> Option<&dyn Outbox> {
        (**self).outbox()
    }
    fn inbox(&self) -> Option<&dyn Inbox> {
        (**self).inbox()
    }
    fn keys(&self) -> Option<&dyn KeyStore> {
        (**self).keys()
    }
    fn purge(&self, purge: Purge) -> StoreFuture<'_, u64> {
        (**self).purge(purge)
    }
    fn streams(&self) -> Option<&dyn Streams> {
        (**self).streams()
    }
    fn reset<'a>(&'a self, handler: &'a str, event: &'a str) -> StoreFuture<'a, ()> {
        (**self).reset(handler, event)
    }
    fn lag(&self, handler: &str, event: &str) -> Result<(u64, Option<u64>), StoreError> {
        (**self).lag(handler, event)
    }
}

/// Runs `future` to completion on this thread: for the blocking API with a store, whose
/// futures need no runtime (they wait on the store's own thread).
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = TaskContext::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}
