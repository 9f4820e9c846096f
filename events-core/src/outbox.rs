//! The outbox's and the inbox's vocabulary: when a publish resolves ([`Ack`]), how the
//! forwarder works ([`OutboxOptions`]), what it reports ([`OutboxStatus`]), and what an
//! inbox records ([`InboxKey`]). The forwarder itself runs in
//! the bus ([`BusBuilder::outbox`](crate::BusBuilder::outbox)); a store keeps the entries
//! ([`store::Outbox`](crate::store::Outbox)).

use std::time::{Duration, SystemTime};

/// When [`Bus::publish`](crate::Bus::publish) resolves for an event that leaves the process: chosen per bus
/// ([`OutboxOptions::ack`]) and per publish ([`PublishOptions::ack`](crate::PublishOptions::ack)).
///
/// Without [`BusBuilder::outbox`](crate::BusBuilder::outbox) the only choice is
/// [`Broker`](Ack::Broker); with it, the bus's default is [`Local`](Ack::Local).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Ack {
    /// On the broker's acknowledgement: `publish` fails when the broker is unreachable
    /// (or reports [`PublishError::Unconfirmed`](crate::PublishError::Unconfirmed) when it
    /// did not answer in time).
    #[default]
    Broker,
    /// On the local commit of the event and its outbox entry: `publish` succeeds while the
    /// broker is away, and the forwarder sends the event when it is back.
    Local,
}

/// How the outbox forwards: [`BusBuilder::outbox`](crate::BusBuilder::outbox).
///
/// ```
/// use std::time::Duration;
/// use events::outbox::{Ack, OutboxOptions};
/// let options = OutboxOptions::new()
///     .partition("billing-1")
///     .batch(1000)
///     .lease(Duration::from_secs(30))
///     .ack(Ack::Local);
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct OutboxOptions {
    pub(crate) partition: Option<String>,
    pub(crate) batch: usize,
    pub(crate) lease: Duration,
    pub(crate) poll: Duration,
    pub(crate) min_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) ack: Ack,
}

impl Default for OutboxOptions {
    fn default() -> Self {
        OutboxOptions {
            partition: None,
            batch: 512,
            lease: Duration::from_secs(10),
            poll: Duration::from_millis(500),
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            ack: Ack::Local,
        }
    }
}

impl OutboxOptions {
    /// The defaults: the bus's source as the partition, 512 events a round, a 10 s lease,
    /// a look every 500 ms when idle, back-off from 50 ms to 5 s, [`Ack::Local`].
    pub fn new() -> OutboxOptions {
        OutboxOptions::default()
    }

    /// The partition this bus's events go to (default: the bus's
    /// [source](crate::BusBuilder::source)). Each partition reaches the broker in commit
    /// order, forwarded by one process at a time.
    pub fn partition(mut self, name: impl Into<String>) -> OutboxOptions {
        self.partition = Some(name.into());
        self
    }

    /// How many events a round claims and sends, pipelined (at least 1; default 512).
    pub fn batch(mut self, events: usize) -> OutboxOptions {
        self.batch = events.max(1);
        self
    }

    /// How long a claim holds a partition without being renewed (default 10 s): after a
    /// process dies, its partition waits this long before another process forwards it.
    /// Keep it well under the broker's deduplication window (NATS: 2 minutes by default),
    /// so that what the dead process sent but had not recorded is dropped as a duplicate.
    pub fn lease(mut self, lease: Duration) -> OutboxOptions {
        self.lease = lease.max(Duration::from_millis(10));
        self
    }

    /// How often an idle forwarder looks for entries it was not told about: other
    /// processes' partitions whose lease ran out (default 500 ms). Its own publishes wake
    /// it at once.
    pub fn poll(mut self, every: Duration) -> OutboxOptions {
        self.poll = every.max(Duration::from_millis(1));
        self
    }

    /// The back-off between rounds while the broker (or the store) fails: from `min`,
    /// doubling, up to `max` (defaults 50 ms and 5 s), with jitter. The forwarder retries
    /// for as long as it runs.
    pub fn backoff(mut self, min: Duration, max: Duration) -> OutboxOptions {
        self.min_backoff = min.max(Duration::from_millis(1));
        self.max_backoff = max.max(self.min_backoff);
        self
    }

    /// When `publish` resolves unless a publish says otherwise (default [`Ack::Local`]).
    pub fn ack(mut self, ack: Ack) -> OutboxOptions {
        self.ack = ack;
        self
    }
}

/// What the forwarder is doing: [`OutboxStatus::state`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwarderState {
    /// Started, nothing sent yet.
    Starting,
    /// The broker took the last round.
    Connected,
    /// The broker did not take the last round; the forwarder waits before the next.
    BackingOff {
        /// Why the last send failed (clipped).
        reason: String,
        /// The wait before the next round.
        retry_in: Duration,
    },
    /// The store could not be read or written; the forwarder waits before the next round.
    Error {
        /// What the store said.
        reason: String,
        /// The wait before the next round.
        retry_in: Duration,
    },
}

/// The outbox as a bus sees it: [`Bus::outbox`](crate::Bus::outbox).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxStatus {
    /// What waits in the store (all partitions).
    pub backlog: Backlog,
    /// What this bus's forwarder is doing.
    pub state: ForwarderState,
    /// Events this forwarder sent and the broker acknowledged.
    pub forwarded: u64,
    /// Of those, the ones the broker already had (sent again after a crash or an
    /// unconfirmed round; dropped by its deduplication).
    pub duplicates: u64,
    /// Sends that failed (each is retried).
    pub failed_sends: u64,
    /// Entries that cannot be sent by this bus (a row that cannot be read, an event type
    /// it does not know): logged, and left for a process that can.
    pub stuck: u64,
}

/// What waits in an outbox: [`Outbox::backlog`](crate::store::Outbox::backlog).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backlog {
    /// Entries not yet acknowledged by the broker.
    pub events: u64,
    /// When the oldest of them was published, in nanoseconds since the Unix epoch (`None`
    /// when none waits).
    pub oldest: Option<u64>,
}

impl Backlog {
    /// `events` entries, the oldest published at `oldest` (nanoseconds since the epoch).
    pub fn new(events: u64, oldest: Option<u64>) -> Backlog {
        Backlog { events, oldest }
    }

    /// How long the oldest entry has waited (zero when none waits, or its time is ahead of
    /// this machine's clock).
    pub fn age(&self) -> Duration {
        self.oldest.map_or(Duration::ZERO, |t| {
            SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH + Duration::from_nanos(t))
                .unwrap_or_default()
        })
    }
}

/// What an inbox records of one delivery to one handler: the handler and the event's
/// CloudEvents identity (`source` and `id`), which every delivery of one event shares.
///
/// An `#[handler(inbox)]` handler takes one as a parameter and records it in the same
/// database transaction as its writes (`SqliteStore::record_inbox`,
/// `PostgresStore::record_inbox`); a delivery whose key is recorded is not handed to it
/// again. See the crate docs on "exactly once".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct InboxKey {
    /// The handler's name.
    pub handler: String,
    /// The event's CloudEvents `source`.
    pub source: String,
    /// The event's CloudEvents `id`.
    pub id: String,
}

impl InboxKey {
    /// The key of event `source`/`id` for `handler`.
    pub fn new(
        handler: impl Into<String>,
        source: impl Into<String>,
        id: impl Into<String>,
    ) -> InboxKey {
        InboxKey {
            handler: handler.into(),
            source: source.into(),
            id: id.into(),
        }
    }
}
