//! The errors of the model: why a publish was refused ([`PublishError`]), why a store
//! operation failed ([`StoreError`]), why outside input was refused ([`IngestError`]), and a
//! handler's failure ([`HandlerError`]). They name no runtime type, so every layer can return
//! them.

use std::error::Error as StdError;
use std::fmt;

use crate::ids::EventId;

mod ingest;

pub use ingest::{IngestError, Violation};

/// Why an event could not be published. No handler ran.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The event is too many generations below its root event.
    #[error(
        "event `{name}` would be {depth} generations below its root event (limit {limit}): \
         a handler probably publishes the event that triggers it; raise the limit with \
         `BusBuilder::max_depth` if the chain is intended"
    )]
    TooDeep {
        /// The event's name.
        name: &'static str,
        /// Its depth.
        depth: u32,
        /// The bus's limit.
        limit: u32,
    },
    /// [`Bus::try_emit`](crate::Bus::try_emit) found the queue full; the event was not queued.
    #[error(
        "event `{name}` was not queued: the queue is full ({capacity} events); emit with \
         `.emit(..).await` to wait for room, or raise `BusBuilder::queue_capacity`"
    )]
    QueueFull {
        /// The event's name.
        name: &'static str,
        /// The queue's capacity.
        capacity: usize,
    },
    /// Emitting needs a tokio runtime to run the workers on.
    #[error("`emit` needs a tokio runtime for its workers: call it from inside one")]
    NoRuntime,
    /// The event's `expires_at` had passed when it was published.
    #[error("event `{name}` had already expired when it was published")]
    Expired {
        /// The event's name.
        name: &'static str,
    },
    /// The bus is disabled ([`Bus::disable`](crate::Bus::disable)); the event was refused.
    #[error("event `{name}` was refused: the bus is disabled; `Bus::enable` takes events again")]
    Disabled {
        /// The event's name.
        name: &'static str,
    },
    /// The bus was shut down ([`Bus::shutdown`](crate::Bus::shutdown)) and takes no more events.
    #[error("the bus was shut down and takes no more events")]
    Closed,
    /// The event was not sent over the bus's transport (NATS); no handler ran.
    #[error("event `{name}` was not sent: {reason}")]
    Transport {
        /// The event's name.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// The event was sent over the transport, but its storage was not confirmed: no ack
    /// within `NatsOptions::publish_timeout` (feature `nats`), or
    /// the connection broke while waiting. It may have been stored, and then it is
    /// delivered. Publishing it again with the same id
    /// ([`PublishOptions::id`](crate::PublishOptions::id)`(id)`) is the safe retry: JetStream
    /// stores an id once within its duplicate window, and a bus store that already has it
    /// lets it through. A new event (a new id) would be a duplicate nobody can catch.
    #[error(
        "event `{name}` ({id}) was sent but not confirmed, so it may have been stored: \
         {reason}; to retry, publish it again with the same id (`PublishOptions::id`)"
    )]
    Unconfirmed {
        /// The event's name.
        name: &'static str,
        /// The event's id: the one to publish it again with.
        id: crate::EventId,
        /// What the transport said.
        reason: String,
    },
    /// A metadata entry (or the source) cannot travel as a CloudEvents attribute: its key is
    /// not an extension name (see [`is_metadata_key`](crate::is_metadata_key)), or its text
    /// holds a control character. The event was not published.
    #[error("event `{name}` was not published: metadata `{key}`: {reason}")]
    BadMetadata {
        /// The event's name.
        name: &'static str,
        /// The key, or `source` (control characters escaped, clipped).
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The bus's store did not take the event; no handler ran.
    #[error("event `{name}` was not stored, so it was not published: {source}")]
    Store {
        /// The event's name.
        name: &'static str,
        /// What the store said.
        #[source]
        source: StoreError,
    },
}

/// A store operation that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend (SQLite, the file system) reported an error.
    #[error("event store error: {0}")]
    Backend(String),
    /// The store could not be opened: the file is not a SQLite database (it is left
    /// unchanged), cannot be created or read, or could not be migrated (a migration that
    /// fails is rolled back).
    #[error("cannot open the event store `{path}`: {reason}")]
    Open {
        /// The store's file.
        path: String,
        /// What SQLite or the file system said.
        reason: String,
    },
    /// The store file was written by a newer version of `events`, with a schema this one
    /// does not know; it was not changed.
    #[error(
        "the event store `{path}` has schema version {found}, newer than this version of \
         `events` knows ({known}); it was left unchanged: upgrade `events` to open it"
    )]
    TooNew {
        /// The store's file.
        path: String,
        /// Its schema version.
        found: i64,
        /// The newest this version knows.
        known: i64,
    },
    /// The store's writer has stopped (the store was closed, or its thread failed).
    #[error("the event store's writer has stopped; nothing more can be written")]
    Closed,
    /// An event with this id is already stored; the new one was not appended.
    #[error(
        "event `{id}` is already in the store (sequence {sequence}); it was not appended again"
    )]
    Duplicate {
        /// The event id.
        id: EventId,
        /// The stored event's sequence number.
        sequence: u64,
    },
    /// A stored row could not be read back. In the rows of [`EventStore::read`](crate::store::EventStore::read) it stands
    /// for one event; the other rows are read.
    #[error("stored row {sequence} is unreadable: {reason}")]
    Corrupt {
        /// The row's sequence number (or dead letter's id).
        sequence: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// Events the store had acknowledged are gone: the store's high-water mark (the last
    /// sequence it acknowledged, kept beside the database) is above the last event it can
    /// read. SQLite drops the committed tail of its write-ahead log when a frame of it is
    /// damaged, and opens without a word; this is that loss, detected. The store was not
    /// changed. Restore the file from a backup, or open it with
    /// `SqliteOptions::accept_lost_tail` to go on without those events.
    #[error(
        "the event store `{path}` acknowledged events up to sequence {acknowledged} but can \
         read only up to {readable}: {lost} acknowledged event(s) are lost (a damaged \
         write-ahead log, or a file restored from an older copy); it was left unchanged: \
         restore it from a backup, or open it with `SqliteOptions::accept_lost_tail` to go on \
         without them"
    )]
    LostTail {
        /// The store's file.
        path: String,
        /// The last sequence the store acknowledged.
        acknowledged: u64,
        /// The last sequence it can read.
        readable: u64,
        /// How many sequences are missing.
        lost: u64,
    },
    /// SQLite's `PRAGMA quick_check` (run at open when asked for with
    /// `SqliteOptions::quick_check`) found the file damaged; it was not changed.
    #[error("the event store `{path}` is damaged: {problems}; it was left unchanged")]
    Damaged {
        /// The store's file.
        path: String,
        /// The first problems `quick_check` reported.
        problems: String,
    },
    /// An append to a stream was refused: it expected the stream at `expected` events, and
    /// another writer had brought it to `actual` first. Nothing was written; reload and
    /// decide again.
    #[error(
        "stream `{stream}` is at version {actual}, not {expected}: another writer appended          first; nothing was written"
    )]
    Conflict {
        /// The stream.
        stream: String,
        /// The version the writer read.
        expected: u64,
        /// The version the stream is at.
        actual: u64,
    },
}

impl StoreError {
    /// The sequence number of the row a [`StoreError::Corrupt`] is about.
    pub fn corrupt_sequence(&self) -> Option<u64> {
        match self {
            StoreError::Corrupt { sequence, .. } => Some(*sequence),
            _ => None,
        }
    }
}

/// A handler's failure.
///
/// Any error converts into it with `?`: every `std::error::Error + Send + Sync + 'static`
/// (so `thiserror` types), `anyhow::Error`, `String` and `&str`. A converted error is
/// *transient* (worth retrying); say [`HandlerError::permanent`] for one that is not.
///
/// Like `anyhow::Error`, `HandlerError` does not itself implement `std::error::Error`: that is
/// what lets every error convert into it. Reach the original with
/// [`HandlerError::downcast_ref`] or [`HandlerError::as_error`].
pub struct HandlerError(Box<Failure>);

/// Boxed so that `Result<(), HandlerError>` is one pointer, returned in a register: the
/// success path of every handler call is checked without a trip through memory.
struct Failure {
    permanent: bool,
    error: Box<dyn StdError + Send + Sync + 'static>,
}

impl HandlerError {
    /// A failure that may succeed when tried again (a timeout, a busy database).
    pub fn transient(error: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> Self {
        HandlerError(Box::new(Failure {
            permanent: false,
            error: error.into(),
        }))
    }

    /// A failure that will fail again the same way (a rejected payload, a broken invariant).
    pub fn permanent(error: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> Self {
        HandlerError(Box::new(Failure {
            permanent: true,
            error: error.into(),
        }))
    }

    /// Whether retrying may help.
    pub fn is_transient(&self) -> bool {
        !self.0.permanent
    }

    /// The underlying error.
    pub fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.0.error
    }

    /// The underlying error, if it is a `T`.
    pub fn downcast_ref<T: StdError + 'static>(&self) -> Option<&T> {
        self.0.error.downcast_ref::<T>()
    }
}

impl<E> From<E> for HandlerError
where
    E: Into<Box<dyn StdError + Send + Sync + 'static>>,
{
    fn from(error: E) -> Self {
        HandlerError::transient(error)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.error, f)?;
        let mut source = self.0.error.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("transient", &!self.0.permanent)
            .field("error", &self.0.error)
            .finish()
    }
}

/// The error of a handler call that ran past its `#[handler(timeout = "..")]`. Transient:
/// the call may succeed when tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandlerTimedOut {
    /// The handler's timeout.
    pub after: std::time::Duration,
}

impl fmt::Display for HandlerTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "handler timed out after {:?}", self.after)
    }
}

impl StdError for HandlerTimedOut {}
