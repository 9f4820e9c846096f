//! The seam between the bus and a message broker: [`Transport`].
//!
//! A bus built with [`BusBuilder::transport`](crate::BusBuilder::transport) hands every
//! event that is not local to the transport ([`Transport::send`], resolving on the broker's
//! acknowledgement), and [`Bus::consume`](crate::Bus::consume) opens one
//! [`Consumer`] per `#[handler]`, shared by every process that runs that handler. What a
//! consumer yields is a [`Delivery`]: the received bytes, which the bus reads through its
//! ingest path (limits, JSON Schema, upcasting) exactly as it reads outside JSON, and one
//! [`Settle`] at the end: acknowledged, retried after a delay, or terminated with a reason.
//! The decision is the bus's, made in one place for the in-process path and every transport
//! ([`retry::fate`](crate::retry::fate)); a transport only carries it out.
//!
//! Two transports ship: NATS JetStream (`events::nats`, feature `nats`) and
//! [`Loopback`], an in-memory broker for tests. A new one passes the same conformance suite
//! by calling one macro, [`transport_conformance!`](crate::transport_conformance) (see
//! [`testing::transport`](crate::testing::transport)).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::envelope::Meta;
use crate::event::AnyEvent;

mod loopback;

pub use loopback::{Loopback, LoopbackDeadLetter, LoopbackOptions};

/// A boxed, `Send` future: what the object-safe traits of this module return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A message broker the bus sends events through and consumes them from.
///
/// Implementations are cheap handles (`Arc` inside); the bus keeps one. Every method is
/// called from the tokio runtime.
pub trait Transport: Send + Sync + 'static {
    /// Whether events named `name` stay in this process (published and handled here, never
    /// sent). Local events cost a transport nothing.
    fn is_local(&self, name: &str) -> bool;

    /// Sends one event and resolves once the broker has it, with the broker's sequence
    /// number for it. A second send of the same event id is stored once by a broker that
    /// deduplicates ([`Outgoing::id`] is the dedup key).
    ///
    /// # Errors
    /// [`SendError::NotSent`] when the event certainly did not reach the broker;
    /// [`SendError::Unconfirmed`] when it may have (no answer in time): the bus reports that
    /// as unknown, never as failed.
    fn send<'a>(&'a self, message: Outgoing<'a>) -> BoxFuture<'a, Result<Sent, SendError>>;

    /// Sends several events, in order, and resolves with each one's result in the same
    /// order: what [`Bus::publish_batch`](crate::Bus::publish_batch) and the outbox's
    /// forwarder call. The default sends them one after the other and stops at the first
    /// failure (the rest are [`SendError::NotSent`]), so that no event reaches the broker
    /// before an earlier one that did not; a transport whose broker pipelines (NATS: every
    /// message written before the first ack is awaited) overrides it, and stops writing at
    /// the first message the client does not take.
    fn send_batch<'a>(
        &'a self,
        messages: Vec<Outgoing<'a>>,
    ) -> BoxFuture<'a, Vec<Result<Sent, SendError>>> {
        Box::pin(async move {
            let mut results = Vec::with_capacity(messages.len());
            let mut failed = false;
            for message in messages {
                if failed {
                    results.push(Err(SendError::after_failure()));
                    continue;
                }
                let result = self.send(message).await;
                failed = result.is_err();
                results.push(result);
            }
            results
        })
    }

    /// Opens (or joins) the durable consumer of one handler: every process that opens the
    /// consumer of the same handler shares its messages (competing consumers), and
    /// different handlers each get every message they select (fan-out). Messages neither
    /// settled nor dropped with their consumer come again ([`Delivery::attempt`] counts).
    ///
    /// # Errors
    /// [`TransportError`] when the broker refuses the consumer.
    fn consumer<'a>(
        &'a self,
        spec: ConsumerSpec,
    ) -> BoxFuture<'a, Result<Box<dyn Consumer>, TransportError>>;

    /// Where events named `name` travel (a subject, a topic): for messages and documents.
    fn address(&self, name: &str) -> String;

    /// The broker's name for the consumer of `handler` (defaults to the handler's name).
    fn consumer_name(&self, handler: &str) -> String {
        handler.to_owned()
    }

    /// A task the bus runs beside the consumers while they run, and stops with them (NATS
    /// uses it to report subjects that no consumer takes). Defaults to none.
    fn watch(&self) -> Option<BoxFuture<'static, ()>> {
        None
    }

    /// What the generated AsyncAPI document says of the wire, if anything.
    fn wire(&self) -> Option<Wire> {
        None
    }
}

/// What a consumer is asked for: [`Transport::consumer`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerSpec {
    /// The handler's name (`module.function`): the consumer's identity.
    pub handler: &'static str,
    /// Which events it takes.
    pub selects: Selects,
    /// How many times a message is delivered at most (`None`: without limit); past it the
    /// broker drops it (the bus has dead-lettered it by then).
    pub max_deliver: Option<u32>,
}

impl ConsumerSpec {
    /// A consumer of `handler` for `selects`, delivering without limit.
    pub fn new(handler: &'static str, selects: Selects) -> ConsumerSpec {
        ConsumerSpec {
            handler,
            selects,
            max_deliver: None,
        }
    }

    /// At most `times` deliveries of a message.
    #[must_use]
    pub fn max_deliver(mut self, times: u32) -> ConsumerSpec {
        self.max_deliver = Some(times);
        self
    }

    /// Whether the consumer takes events named `name`.
    pub fn takes(&self, name: &str) -> bool {
        match &self.selects {
            Selects::Event(n) => *n == name,
            Selects::Pattern(p) => crate::pattern::matches(p, name),
        }
    }
}

/// The events a consumer takes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Selects {
    /// Events with this name (every version).
    Event(&'static str),
    /// Events whose names match this pattern (`order.*`, `>`; see the crate docs on
    /// wildcard handlers).
    Pattern(String),
}

/// What the broker said of a sent event: [`Transport::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sent {
    /// The broker's sequence number for the event.
    pub sequence: u64,
    /// Whether the broker already had an event with this id (inside its deduplication
    /// window) and stored nothing new: a send repeated after a crash or an unconfirmed
    /// send.
    pub duplicate: bool,
}

impl Sent {
    /// Stored at `sequence`, for the first time.
    pub fn new(sequence: u64) -> Sent {
        Sent {
            sequence,
            duplicate: false,
        }
    }

    /// Already stored at `sequence`: a duplicate the broker dropped.
    pub fn duplicate(sequence: u64) -> Sent {
        Sent {
            sequence,
            duplicate: true,
        }
    }
}

/// An event the bus hands to [`Transport::send`]: its payload and envelope, with the
/// CloudEvents encodings ready to put on the wire. The payload is a value (a publish) or
/// JSON text already (an event the outbox forwards from the store).
#[derive(Clone, Copy)]
pub struct Outgoing<'a> {
    body: Body<'a>,
    meta: &'a Meta,
    /// Seals its personal data (`None`: it has none, or nothing to seal it with).
    seal: Option<crate::personal::DataKey>,
}

#[derive(Clone, Copy)]
enum Body<'a> {
    Event(&'a AnyEvent),
    Json(&'a str),
}

impl std::fmt::Debug for Outgoing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing")
            .field("name", &self.meta.name())
            .field("id", &self.meta.id())
            .finish_non_exhaustive()
    }
}

impl<'a> Outgoing<'a> {
    /// An event with its envelope.
    pub fn new(event: &'a AnyEvent, meta: &'a Meta) -> Outgoing<'a> {
        Outgoing {
            body: Body::Event(event),
            meta,
            seal: None,
        }
    }

    /// The key its personal data is sealed with on the wire.
    pub(crate) fn sealed_with(mut self, key: Option<crate::personal::DataKey>) -> Outgoing<'a> {
        self.seal = key;
        self
    }

    /// The payload as JSON, its personal data sealed.
    fn payload(&self, event: &AnyEvent) -> Result<Value, serde_json::Error> {
        crate::personal::at_rest(self.seal, crate::personal::NO_KEY, || event.to_json())
    }

    /// A stored event: its envelope and its payload as JSON text (as the store keeps it;
    /// it is sent as it is).
    pub fn stored(meta: &'a Meta, payload: &'a str) -> Outgoing<'a> {
        Outgoing {
            body: Body::Json(payload),
            meta,
            seal: None,
        }
    }

    /// The payload as a value, unless the event comes from the store (then its JSON text
    /// is all there is: [`data`](Self::data)).
    pub fn event(&self) -> Option<&'a AnyEvent> {
        match self.body {
            Body::Event(event) => Some(event),
            Body::Json(_) => None,
        }
    }

    /// The envelope.
    pub fn meta(&self) -> &'a Meta {
        self.meta
    }

    /// The event's name.
    pub fn name(&self) -> &'static str {
        self.meta.name()
    }

    /// The event id as text: the broker's deduplication key.
    pub fn id(&self) -> String {
        self.meta.id().to_string()
    }

    /// The whole event as a CloudEvents JSON document (structured mode), as bytes.
    ///
    /// # Errors
    /// When the payload's `Serialize` implementation fails.
    pub fn structured(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut ce = crate::wire::attributes(self.meta);
        match self.body {
            Body::Event(event) => {
                ce.insert("data".into(), self.payload(event)?);
                serde_json::to_vec(&Value::Object(ce))
            }
            Body::Json(text) => {
                // The stored payload is JSON the bus wrote: spliced in as it is, not parsed
                // and written again. (Checked: a damaged row must not reach the wire.)
                let data: &serde_json::value::RawValue = serde_json::from_str(text)?;
                let mut out = serde_json::to_vec(&Value::Object(ce))?;
                out.pop(); // the closing `}` (the attributes are never empty)
                out.extend_from_slice(b",\"data\":");
                out.extend_from_slice(data.get().as_bytes());
                out.push(b'}');
                Ok(out)
            }
        }
    }

    /// The payload alone as JSON bytes (binary mode's body).
    ///
    /// # Errors
    /// When the payload's `Serialize` implementation fails.
    pub fn data(&self) -> Result<Vec<u8>, serde_json::Error> {
        match self.body {
            Body::Event(event) => serde_json::to_vec(&self.payload(event)?),
            Body::Json(text) => Ok(text.as_bytes().to_vec()),
        }
    }

    /// Every CloudEvents attribute but `data`, as binary mode sends them (values that are
    /// not strings as their JSON text). Values come from outside (`source`, metadata): a
    /// transport that puts them in headers encodes them
    /// ([`text::header_value`](crate::text::header_value)).
    pub fn attributes(&self) -> impl Iterator<Item = (String, String)> + use<> {
        crate::wire::attributes(self.meta)
            .into_iter()
            .map(|(name, value)| match value {
                Value::String(s) => (name, s),
                other => (name, other.to_string()),
            })
    }

    /// The W3C `traceparent` to send: the event's own if it is valid trace context, else one
    /// made from the envelope (trace id = the correlation id, so a whole flow is one trace
    /// across processes; parent id = the random half of the event id).
    pub fn traceparent(&self) -> String {
        if let Some(tp) = self
            .meta
            .metadata()
            .get("traceparent")
            .and_then(crate::MetaValue::as_str)
        {
            if crate::wire::is_traceparent(tp) {
                return tp.to_owned();
            }
        }
        let trace = self.meta.correlation_id().as_uuid().simple().to_string();
        let id = self.meta.id().as_uuid().simple().to_string();
        format!("00-{trace}-{}-01", &id[16..])
    }
}

/// Why [`Transport::send`] did not confirm an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The event did not reach the broker (it cannot be serialized, the connection is
    /// down, the broker answered with a refusal).
    #[error("{0}")]
    NotSent(String),
    /// The event may have reached the broker: no answer came. Publish it again with its id.
    #[error("{0}")]
    Unconfirmed(String),
}

impl SendError {
    /// What a batch answers for the events after its first failure: not sent, so that
    /// none reaches the broker before it.
    pub fn after_failure() -> SendError {
        SendError::NotSent("not sent: an earlier event of the batch failed".into())
    }
}

/// The broker refused to set up a consumer, or the bus has no transport.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The broker refused the operation.
    #[error("the broker refused {what}: {reason}")]
    Refused {
        /// What was asked (a consumer, a stream).
        what: String,
        /// What the broker said.
        reason: String,
    },
    /// [`Bus::consume`](crate::Bus::consume) on a bus without a transport.
    #[error("the bus has no transport: build it with `BusBuilder::transport`")]
    NoTransport,
}

/// A handler's share of the messages: [`Transport::consumer`].
pub trait Consumer: Send + 'static {
    /// The next message; waits for one. `None` when the consumer is closed for good (the
    /// bus then stops consuming for this handler). Connection trouble is the transport's
    /// to ride out (retrying, logging), not the caller's.
    fn next(&mut self) -> BoxFuture<'_, Option<Box<dyn Delivery>>>;
}

/// One received message, settled exactly once.
pub trait Delivery: Send + Sync + 'static {
    /// Where it came from (a subject): for messages.
    fn address(&self) -> &str;

    /// The event name its address carries, if the address names one: a message whose
    /// CloudEvents `type` differs is refused (it would reach the wrong consumers).
    fn routed_name(&self) -> Option<&str>;

    /// 1 the first time it is delivered, then 2, 3, …
    fn attempt(&self) -> u32;

    /// `Ok(None)`: the body is a whole CloudEvents JSON document (structured mode).
    /// `Ok(Some(attributes))`: binary mode, the attributes as text (from headers, decoded)
    /// and the body is the data. `Err(reason)`: the message cannot be read (terminated).
    ///
    /// # Errors
    /// The reason, which may be logged and sent to a dead-letter channel: it quotes no
    /// more than [`clip`](crate::text::clip) lets through.
    fn attributes(&self) -> Result<Option<Map<String, Value>>, String>;

    /// The body.
    fn body(&self) -> &[u8];
    /// Who sent the message, when the transport authenticated it (a verified signature):
    /// the principal the bus checks against its [access rules](crate::security::AccessRules)
    /// and records in the envelope. `None` (the default): the anonymous principal.
    fn principal(&self) -> Option<&crate::security::Principal> {
        None
    }

    /// The sender's W3C `traceparent`, if it sent one.
    fn traceparent(&self) -> Option<&str> {
        None
    }

    /// How often the bus says "still working" ([`progress`](Self::progress)) while a
    /// handler runs; `None`: never.
    fn progress_every(&self) -> Option<Duration> {
        None
    }

    /// Tells the broker that the message is still being handled.
    fn progress(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Settles the message.
    ///
    /// # Errors
    /// The broker did not take the settlement: it will deliver the message again.
    fn settle(self: Box<Self>, how: Settle) -> BoxFuture<'static, Result<(), String>>;
}

/// This process's consumers; dropping it (or [`stop`](Self::stop)) stops them. Messages
/// being handled then are delivered again by the broker (NATS: after their ack wait).
#[derive(Debug)]
pub struct Consumers {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The transport's watch task ([`Transport::watch`]).
    watcher: Option<tokio::task::JoinHandle<()>>,
}

impl Consumers {
    pub(crate) fn new(
        tasks: Vec<tokio::task::JoinHandle<()>>,
        watcher: Option<tokio::task::JoinHandle<()>>,
    ) -> Consumers {
        Consumers { tasks, watcher }
    }

    /// How many handler consumers run (the transport's watch task is not counted).
    pub fn len(&self) -> usize {
        self.tasks.len()
    }
    /// Whether none runs (no handler takes a remote event).
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
    /// Stops them.
    pub fn stop(self) {}
}

impl Drop for Consumers {
    fn drop(&mut self) {
        for t in self.tasks.iter().chain(&self.watcher) {
            t.abort();
        }
    }
}

/// How a [`Delivery`] ends: the bus's decision, carried out by the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Settle {
    /// Handled (or filtered out): never deliver it again.
    Ack,
    /// Deliver it again after `after`.
    Nak {
        /// The retry delay.
        after: Duration,
    },
    /// Never deliver it again: it was refused or its handler failed for good. The
    /// transport keeps it where operators look (NATS: the dead-letter stream), with
    /// `reason`; the bus has dead-lettered the decoded event too, when it could decode it.
    Terminate {
        /// The handler it was delivered to.
        handler: String,
        /// Why, already clipped for a header or a log line.
        reason: String,
    },
}

/// What the AsyncAPI document says of a transport's wire ([`Transport::wire`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Wire {
    /// The AsyncAPI protocol (`nats`).
    pub protocol: &'static str,
    /// The server's `host:port`, without credentials.
    pub host: String,
    /// Events travel at `<prefix>.<event name>`; dead letters at `<prefix>-dlq.<consumer>`.
    pub prefix: String,
    /// The stream (or topic group) holding them.
    pub stream: String,
    /// Whether events are sent in binary mode (attributes in headers).
    pub binary: bool,
    /// Bodies longer than `.1` bytes are compressed with codec `.0` (`zstd`), marked with
    /// the header `Content-Encoding: <codec>`.
    pub compression: Option<(&'static str, usize)>,
}

impl Wire {
    /// A wire description.
    pub fn new(
        protocol: &'static str,
        host: impl Into<String>,
        prefix: impl Into<String>,
        stream: impl Into<String>,
        binary: bool,
    ) -> Wire {
        Wire {
            protocol,
            host: host.into(),
            prefix: prefix.into(),
            stream: stream.into(),
            binary,
            compression: None,
        }
    }

    /// Bodies longer than `above` bytes are sent compressed with `codec`.
    #[must_use]
    pub fn compressed(mut self, codec: &'static str, above: usize) -> Wire {
        self.compression = Some((codec, above));
        self
    }
}
