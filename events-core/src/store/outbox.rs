//! The outbox side of a store: events appended with an entry that the bus's forwarder
//! sends to the broker later ([`Outbox`]).

use std::time::Duration;

use super::{Row, StoreError, StoreFuture, StoredEvent};
pub use crate::outbox::{Backlog, InboxKey};

/// A store that keeps an outbox: an entry beside each event appended through it, written
/// in the same transaction, until the bus's forwarder has the broker's acknowledgement
/// for it ([`EventStore::outbox`](super::EventStore::outbox)).
///
/// Entries belong to a *partition* (the publishing bus's, by default its source name); a
/// forwarder sends the entries of the partitions it holds a lease on, oldest first, so
/// each partition's events reach the broker in commit order. A store shared by several
/// processes (PostgreSQL) gives each partition to one forwarder at a time: the one whose
/// partition it is, or, when its lease has run out (its process died), whoever claims it
/// next. A store of one process may ignore partitions and owners.
pub trait Outbox: Send + Sync {
    /// Appends `event` and an outbox entry for it in partition `partition`, in one
    /// transaction; resolves with its sequence once both are stored.
    /// [`StoreError::Duplicate`] when an event with its id is already stored (then no
    /// entry is added).
    fn append<'a>(&'a self, event: StoredEvent, partition: &'a str) -> StoreFuture<'a, u64>;

    /// Takes (or renews) for `owner` a lease of `lease` on partition `partition` and on
    /// every partition whose lease ran out, and resolves with up to `limit` of their
    /// entries' events above sequence `after`, oldest first. Entries stay until
    /// [`forwarded`](Self::forwarded): a second claim returns them again. (The forwarder
    /// passes the last sequence it has in flight as `after`, and 0 after a failure or
    /// when it finds nothing.)
    fn claim<'a>(
        &'a self,
        owner: &'a str,
        partition: &'a str,
        after: u64,
        limit: usize,
        lease: Duration,
    ) -> StoreFuture<'a, Vec<Row>>;

    /// Removes the entries of these sequences: the broker has them. The events stay in the
    /// store's history.
    fn forwarded(&self, sequences: Vec<u64>) -> StoreFuture<'_, ()>;

    /// How many entries wait, and since when the oldest does.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn backlog(&self) -> Result<Backlog, StoreError>;
}

/// Why an application's transaction with events in it ([`Staged`](crate::Staged)) did not
/// commit: nothing of it was stored or published either way.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransactionError<E> {
    /// The application's code returned this error: the transaction was rolled back.
    #[error("the transaction was rolled back: {0}")]
    RolledBack(E),
    /// The store could not write or commit it.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A store that keeps an inbox: the deliveries `#[handler(inbox)]` handlers recorded in
/// their own transactions ([`EventStore::inbox`](super::EventStore::inbox)). The bus asks
/// it before handing such a handler a delivery; the store's own functions (`record_inbox`)
/// write the records, in the application's transaction.
pub trait Inbox: Send + Sync {
    /// Whether `key` is recorded.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn seen(&self, key: &InboxKey) -> Result<bool, StoreError>;
}
