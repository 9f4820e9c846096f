//! The streams side of a store: one ordered stream of events per aggregate instance, with
//! optimistic concurrency, and snapshots of aggregates' state ([`Streams`]).

use super::{Row, StoreError, StoreFuture, StoredEvent};

/// Events to append to one stream, if it is still at the version the writer read.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StreamAppend {
    /// The stream's name (`<aggregate>-<id>`).
    pub stream: String,
    /// The version the writer read: the stream's number of events. The append is refused
    /// ([`StoreError::Conflict`]) unless the stream has exactly this many.
    pub expected: u64,
    /// The events, at versions `expected + 1, expected + 2, ..`, each with the outbox
    /// partition of its entry when it leaves the process (`None`: no entry).
    pub events: Vec<(StoredEvent, Option<String>)>,
}

impl StreamAppend {
    /// An append of `events` to `stream` at `expected`.
    pub fn new(
        stream: impl Into<String>,
        expected: u64,
        events: Vec<(StoredEvent, Option<String>)>,
    ) -> StreamAppend {
        StreamAppend {
            stream: stream.into(),
            expected,
            events,
        }
    }
}

/// A snapshot of an aggregate's state at a version of its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The stream.
    pub stream: String,
    /// How many of the stream's events the state includes.
    pub version: u64,
    /// The state type's [shape](crate::aggregate::Aggregate::shape) when it was taken.
    pub shape: String,
    /// The state, as JSON text.
    pub state: String,
}

impl Snapshot {
    /// A snapshot of `stream` at `version`.
    pub fn new(
        stream: impl Into<String>,
        version: u64,
        shape: impl Into<String>,
        state: impl Into<String>,
    ) -> Snapshot {
        Snapshot {
            stream: stream.into(),
            version,
            shape: shape.into(),
            state: state.into(),
        }
    }
}

/// One event of a stream as an aggregate loads it: its type and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamEvent {
    /// Its name.
    pub name: String,
    /// Its payload's version.
    pub version: u32,
    /// The payload, as JSON text.
    pub payload: String,
}

impl StreamEvent {
    /// An event named `name` at `version` with `payload`.
    pub fn new(name: impl Into<String>, version: u32, payload: impl Into<String>) -> StreamEvent {
        StreamEvent {
            name: name.into(),
            version,
            payload: payload.into(),
        }
    }
}

/// What an aggregate loads: [`Streams::load`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct StreamLoad {
    /// The stream's snapshot, when one of the asked-for shape is kept.
    pub snapshot: Option<Snapshot>,
    /// The events after it (after version 0 without it), in stream order; an unreadable
    /// one is `Err(StoreError::Corrupt)` in its place.
    pub events: Vec<Result<StreamEvent, StoreError>>,
}

impl StreamLoad {
    /// A load of `events` after `snapshot`.
    pub fn new(
        snapshot: Option<Snapshot>,
        events: Vec<Result<StreamEvent, StoreError>>,
    ) -> StreamLoad {
        StreamLoad { snapshot, events }
    }
}

/// A store that keeps streams ([`EventStore::streams`](super::EventStore::streams)): the
/// events of each aggregate instance, numbered 1, 2, .. within it, in the store's log like
/// every other event (each also has its log sequence), and a snapshot per stream.
///
/// Appends are optimistic: an append says which version it read, and is refused with
/// [`StoreError::Conflict`] when another writer appended first, so exactly one of two
/// concurrent writers at one version wins, across processes too.
pub trait Streams: Send + Sync {
    /// Appends the events (and their outbox entries) in one transaction if the stream is
    /// at `append.expected`; resolves with their log sequences.
    /// [`StoreError::Conflict`] (nothing written) when it is not.
    fn append_to_stream(&self, append: StreamAppend) -> StoreFuture<'_, Vec<u64>>;

    /// The events of `stream` after version `after`, in stream order, read at once (one
    /// query): the first is at version `after + 1`. An unreadable one is
    /// `Err(StoreError::Corrupt)` in its place.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn read_stream(&self, stream: &str, after: u64) -> Result<Vec<Row>, StoreError>;

    /// What loading an aggregate reads, in one trip to the store: the snapshot of `stream`
    /// if one of shape `shape` is kept, and the stream's events after it. By default
    /// [`snapshot`](Self::snapshot) then [`read_stream`](Self::read_stream).
    ///
    /// # Errors
    /// When the store cannot be read.
    fn load(&self, stream: &str, shape: &str) -> Result<StreamLoad, StoreError> {
        let snapshot = self.snapshot(stream)?.filter(|s| s.shape == shape);
        let after = snapshot.as_ref().map_or(0, |s| s.version);
        let events = self
            .read_stream(stream, after)?
            .into_iter()
            .map(|row| row.map(|e| StreamEvent::new(e.name, e.version, e.payload)))
            .collect();
        Ok(StreamLoad { snapshot, events })
    }

    /// How many events `stream` has (0 for a stream never written).
    ///
    /// # Errors
    /// When the store cannot be read.
    fn stream_version(&self, stream: &str) -> Result<u64, StoreError>;

    /// The stream's snapshot, if one was taken.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn snapshot(&self, stream: &str) -> Result<Option<Snapshot>, StoreError>;

    /// Keeps `snapshot` as its stream's snapshot, unless the one kept is at a later version.
    fn put_snapshot(&self, snapshot: Snapshot) -> StoreFuture<'_, ()>;
}
