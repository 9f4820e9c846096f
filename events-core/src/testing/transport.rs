//! The transport conformance suite: what every [`Transport`] must do, run against any
//! implementation with one macro, [`transport_conformance!`](crate::transport_conformance).
//!
//! ```no_run,standalone_crate
//! // In a transport crate's `tests/conformance.rs`: one `#[test]` per case, each on a fresh
//! // broker made by the closure (the setup names the event that must stay local).
//! use events::transport::{Loopback, LoopbackOptions};
//! events::transport_conformance!(|setup: events::testing::transport::Setup| async move {
//!     Loopback::with_options(LoopbackOptions::new().local(setup.local))
//! });
//! # fn main() {}
//! ```
//!
//! The cases talk to the transport as the bus does ([`Transport::send`] an [`Outgoing`],
//! [`Transport::consumer`], [`Delivery::settle`]) and read what arrives as the bus reads it
//! (structured or binary CloudEvents). Two clones of one transport stand for two processes
//! sharing a broker. A transport whose unsettled messages come back only after an ack wait
//! (NATS) should be made with a short one: the suite waits up to 20 seconds for a
//! redelivery.

// A test suite: a failing case is a panic, by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use crate::bus::Bus;
use crate::envelope::{Meta, NoOptions};
use crate::event::{EventInfo, EventKind};
use crate::transport::{Consumer, ConsumerSpec, Delivery, Outgoing, Selects, Settle, Transport};

/// Every case's name, in the order the macro declares them.
pub const CASES: &[&str] = &[
    "sent_events_arrive_whole_and_in_order",
    "every_handler_gets_every_event",
    "members_of_one_consumer_share_its_messages",
    "a_nak_delivers_again_with_the_next_attempt",
    "acknowledged_and_terminated_messages_never_come_again",
    "an_unsettled_message_is_delivered_again",
    "a_restarted_consumer_resumes_where_it_stopped",
    "an_event_id_sent_twice_is_delivered_once",
    "max_deliver_ends_redelivery",
    "a_pattern_consumer_takes_every_matching_name",
    "local_events_are_not_carried",
];

/// What a case asks of the broker it is given.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Setup {
    /// An event name the transport must report as local ([`Transport::is_local`]).
    pub local: &'static str,
}

/// Runs one case on a fresh transport from `make`, on a runtime of its own, within 120
/// seconds: the macro's test body.
///
/// # Panics
/// When the case fails (an assertion), times out, or no runtime can be made.
pub fn run<T, M, MF, C, CF>(make: M, case: C)
where
    M: FnOnce(Setup) -> MF,
    MF: Future<Output = T>,
    C: FnOnce(T) -> CF,
    CF: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("transport conformance: no tokio runtime: {e}"));
    runtime.block_on(async {
        let transport = make(Setup { local: LOCAL }).await;
        tokio::time::timeout(Duration::from_secs(120), case(transport))
            .await
            .expect("the case did not finish within 120 s");
    });
}

/// The name [`Setup::local`] gives.
const LOCAL: &str = "conformance.local";

macro_rules! probe {
    ($ty:ident, $name:literal) => {
        /// A payload of the suite: a [`Payload`](crate::Payload) and nothing else (not an
        /// `Event`, not `Serialize`), so that no user's compile error lists it among the
        /// types implementing those, and it is in no catalog.
        #[derive(Debug)]
        struct $ty {
            n: u64,
            note: String,
        }

        impl $ty {
            fn info() -> &'static EventInfo {
                static INFO: EventInfo = EventInfo {
                    name: $name,
                    version: 1,
                    kind: EventKind::Notification,
                    priority: 0,
                    type_name: stringify!($ty),
                    description: None,
                    type_id: std::any::TypeId::of::<$ty>,
                    schema: $ty::schema,
                    response: None,
                    decode: $ty::decode,
                    validator: std::sync::OnceLock::new(),
                    upcast: None,
                    redacted: &[],
                    personal: false,
                    secrets: std::sync::OnceLock::new(),
                    subscribed: std::sync::atomic::AtomicU32::new(0),
                    publish_value: $ty::publish_value,
                };
                &INFO
            }

            fn schema() -> &'static schemars::Schema {
                static SCHEMA: OnceLock<schemars::Schema> = OnceLock::new();
                SCHEMA.get_or_init(|| schemars::json_schema!({ "type": "object" }))
            }

            fn publish_value(
                _: &dyn std::any::Any,
                _: Value,
                _: bool,
                _: Option<crate::PublishOptions>,
                _: &mut dyn std::any::Any,
            ) -> Result<(), crate::error::IngestError> {
                Err(crate::error::IngestError::Publish(
                    crate::error::PublishError::Transport {
                        name: $name,
                        reason: "the conformance suite's payloads are never published".into(),
                    },
                ))
            }

            fn decode(
                value: Value,
                _: bool,
            ) -> Result<Box<crate::AnyEvent>, crate::error::IngestError> {
                Ok(Box::new($ty {
                    n: value["n"].as_u64().unwrap_or_default(),
                    note: value["note"].as_str().unwrap_or_default().to_owned(),
                }))
            }
        }

        impl crate::Payload for $ty {
            fn info(&self) -> &'static EventInfo {
                $ty::info()
            }
            fn to_json(&self) -> Result<Value, serde_json::Error> {
                Ok(serde_json::json!({ "n": self.n, "note": self.note }))
            }
            fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
                self
            }
            fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send + Sync> {
                self
            }
        }
    };
}

// Not registered with `inventory`: the suite's events are in no user's catalog.
probe!(Probe, "conformance.probe");
probe!(Other, "conformance.other");

const PROBE: &str = "conformance.probe";
const OTHER: &str = "conformance.other";

/// A bus that makes the envelopes (no handlers, no transport).
fn bus() -> Bus {
    Bus::builder()
        .no_handlers()
        .build()
        .expect("an empty bus builds")
}

/// An event with its envelope.
fn made(bus: &Bus, event: impl crate::Payload) -> (Box<crate::AnyEvent>, Meta) {
    let meta = bus
        .try_meta_of(event.info(), None, NoOptions)
        .expect("an envelope");
    (Box::new(event), meta)
}

fn probe(n: u64) -> Probe {
    Probe {
        n,
        note: format!("line\nbreak \"{n}\" é ✓"),
    }
}

/// Sends every event, in order; their sequences.
async fn send_all(transport: &impl Transport, events: &[(Box<crate::AnyEvent>, Meta)]) -> Vec<u64> {
    let mut sequences = Vec::new();
    for (event, meta) in events {
        let seq = transport
            .send(Outgoing::new(&**event, meta))
            .await
            .expect("the transport takes the event");
        sequences.push(seq.sequence);
    }
    sequences
}

/// `n` probes with their envelopes.
fn probes(bus: &Bus, n: u64) -> Vec<(Box<crate::AnyEvent>, Meta)> {
    (1..=n).map(|i| made(bus, probe(i))).collect()
}

async fn consumer(transport: &impl Transport, spec: ConsumerSpec) -> Box<dyn Consumer> {
    transport
        .consumer(spec)
        .await
        .expect("the transport opens the consumer")
}

fn of_probe(handler: &'static str) -> ConsumerSpec {
    ConsumerSpec::new(handler, Selects::Event(PROBE))
}

/// The next delivery within `wait`.
async fn next_within(
    consumer: &mut Box<dyn Consumer>,
    wait: Duration,
) -> Option<Box<dyn Delivery>> {
    tokio::time::timeout(wait, consumer.next())
        .await
        .ok()
        .flatten()
}

/// The next delivery; fails the case after 20 s.
async fn next(consumer: &mut Box<dyn Consumer>) -> Box<dyn Delivery> {
    next_within(consumer, Duration::from_secs(20))
        .await
        .expect("a message arrives within 20 s")
}

/// Nothing arrives for a while.
async fn quiet(consumer: &mut Box<dyn Consumer>, what: &str) {
    if let Some(d) = next_within(consumer, Duration::from_millis(1500)).await {
        panic!(
            "{what}, but `{}` arrived (attempt {})",
            read(&*d).0,
            d.attempt()
        );
    }
}

/// A delivery as the bus reads it: its CloudEvents `id`, `type` and `data`.
fn read(delivery: &dyn Delivery) -> (String, String, Value) {
    let body: Value = serde_json::from_slice(delivery.body()).expect("the body is JSON");
    match delivery.attributes().expect("the attributes can be read") {
        None => (
            body["id"].as_str().expect("an id").to_owned(),
            body["type"].as_str().expect("a type").to_owned(),
            body["data"].clone(),
        ),
        Some(attributes) => (
            attributes["id"].as_str().expect("an id").to_owned(),
            attributes["type"].as_str().expect("a type").to_owned(),
            body,
        ),
    }
}

async fn settle(delivery: Box<dyn Delivery>, how: Settle) {
    delivery
        .settle(how)
        .await
        .expect("the broker takes the settlement");
}

/// Events sent arrive once each, in the order sent, with their id, type and data intact
/// (text with a line break, quotes and non-ASCII), on their own address, at attempt 1; the
/// broker's sequences grow.
pub async fn sent_events_arrive_whole_and_in_order(transport: impl Transport) {
    let bus = bus();
    let events = probes(&bus, 5);
    let mut c = consumer(&transport, of_probe("conformance.whole")).await;
    let sequences = send_all(&transport, &events).await;
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    for (i, (_, meta)) in events.iter().enumerate() {
        let d = next(&mut c).await;
        let (id, ty, data) = read(&*d);
        assert_eq!(id, meta.id().to_string(), "message {i} out of order");
        assert_eq!(ty, PROBE);
        assert_eq!(data, crate::Payload::to_json(&probe(i as u64 + 1)).unwrap());
        assert_eq!(d.attempt(), 1);
        assert_eq!(d.routed_name(), Some(PROBE));
        assert_eq!(d.address(), transport.address(PROBE));
        settle(d, Settle::Ack).await;
    }
    quiet(&mut c, "every event was acknowledged").await;
}

/// Two handlers' consumers each get every event (fan-out).
pub async fn every_handler_gets_every_event(transport: impl Transport) {
    let bus = bus();
    let events = probes(&bus, 4);
    let mut a = consumer(&transport, of_probe("conformance.fan_a")).await;
    let mut b = consumer(&transport, of_probe("conformance.fan_b")).await;
    send_all(&transport, &events).await;
    let want: BTreeSet<String> = events.iter().map(|(_, m)| m.id().to_string()).collect();
    for c in [&mut a, &mut b] {
        let mut got = BTreeSet::new();
        for _ in 0..events.len() {
            let d = next(c).await;
            got.insert(read(&*d).0);
            settle(d, Settle::Ack).await;
        }
        assert_eq!(got, want);
    }
}

/// Two processes opening the consumer of one handler share its messages: each message
/// reaches exactly one of them.
pub async fn members_of_one_consumer_share_its_messages<T: Transport + Clone>(transport: T) {
    let bus = bus();
    let events = probes(&bus, 20);
    let other = transport.clone();
    let one = consumer(&transport, of_probe("conformance.shared")).await;
    let two = consumer(&other, of_probe("conformance.shared")).await;
    send_all(&transport, &events).await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let take = |mut c: Box<dyn Consumer>, seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>| async move {
        while let Some(d) = next_within(&mut c, Duration::from_secs(3)).await {
            seen.lock().unwrap().push(read(&*d).0);
            settle(d, Settle::Ack).await;
        }
    };
    let other_process = tokio::spawn(take(two, seen.clone()));
    take(one, seen.clone()).await;
    other_process.await.expect("the second member ran");
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    let mut want: Vec<String> = events.iter().map(|(_, m)| m.id().to_string()).collect();
    want.sort();
    assert_eq!(seen, want, "each message once, across both members");
}

/// A nak delivers the message again, after its delay, with the next attempt number.
pub async fn a_nak_delivers_again_with_the_next_attempt(transport: impl Transport) {
    let bus = bus();
    let events = probes(&bus, 1);
    let mut c = consumer(&transport, of_probe("conformance.nak")).await;
    send_all(&transport, &events).await;
    let first = next(&mut c).await;
    let id = read(&*first).0;
    assert_eq!(first.attempt(), 1);
    settle(
        first,
        Settle::Nak {
            after: Duration::from_millis(200),
        },
    )
    .await;
    let again = next(&mut c).await;
    assert_eq!(read(&*again).0, id);
    assert_eq!(again.attempt(), 2);
    settle(again, Settle::Ack).await;
    quiet(&mut c, "the retry was acknowledged").await;
}

/// An acknowledged or terminated message is never delivered again.
pub async fn acknowledged_and_terminated_messages_never_come_again(transport: impl Transport) {
    let bus = bus();
    let events = probes(&bus, 2);
    let mut c = consumer(&transport, of_probe("conformance.settled")).await;
    send_all(&transport, &events).await;
    let d = next(&mut c).await;
    settle(d, Settle::Ack).await;
    let d = next(&mut c).await;
    settle(
        d,
        Settle::Terminate {
            handler: "conformance.settled".into(),
            reason: "a permanent failure".into(),
        },
    )
    .await;
    quiet(
        &mut c,
        "one message was acknowledged and the other terminated",
    )
    .await;
}

/// A message whose delivery is dropped unsettled (its process stopped mid-handler) is
/// delivered again, to the consumer opened next, at a later attempt.
pub async fn an_unsettled_message_is_delivered_again(transport: impl Transport) {
    let bus = bus();
    let events = probes(&bus, 1);
    let mut c = consumer(&transport, of_probe("conformance.unsettled")).await;
    send_all(&transport, &events).await;
    let d = next(&mut c).await;
    let id = read(&*d).0;
    drop(d);
    drop(c);
    let mut c = consumer(&transport, of_probe("conformance.unsettled")).await;
    let again = next(&mut c).await;
    assert_eq!(read(&*again).0, id);
    assert!(again.attempt() >= 2, "attempt {}", again.attempt());
    settle(again, Settle::Ack).await;
}

/// A consumer stopped and opened again (a restart) gets what it had not acknowledged,
/// including what was sent while it was away, and nothing it had.
pub async fn a_restarted_consumer_resumes_where_it_stopped(transport: impl Transport) {
    let bus = bus();
    let before = probes(&bus, 3);
    let mut c = consumer(&transport, of_probe("conformance.restart")).await;
    send_all(&transport, &before).await;
    for _ in 0..2 {
        let d = next(&mut c).await;
        settle(d, Settle::Ack).await;
    }
    drop(c);
    let during = probes(&bus, 2);
    send_all(&transport, &during).await;
    let mut c = consumer(&transport, of_probe("conformance.restart")).await;
    let want: BTreeSet<String> = before[2..]
        .iter()
        .chain(&during)
        .map(|(_, m)| m.id().to_string())
        .collect();
    let mut got = BTreeSet::new();
    while got.len() < want.len() {
        let d = next(&mut c).await;
        got.insert(read(&*d).0);
        settle(d, Settle::Ack).await;
    }
    assert_eq!(got, want);
    quiet(&mut c, "everything was acknowledged").await;
}

/// An event sent twice with one id (a publish retried after an unknown outcome) is stored
/// and delivered once, and both sends report its sequence.
pub async fn an_event_id_sent_twice_is_delivered_once(transport: impl Transport) {
    let bus = bus();
    let events = probes(&bus, 1);
    let mut c = consumer(&transport, of_probe("conformance.dedup")).await;
    let first = send_all(&transport, &events).await;
    let second = send_all(&transport, &events).await;
    assert_eq!(first, second, "the second send is the first one's message");
    let d = next(&mut c).await;
    settle(d, Settle::Ack).await;
    quiet(&mut c, "one event id was sent twice").await;
}

/// With `max_deliver`, a message nakked that many times is not delivered again.
pub async fn max_deliver_ends_redelivery(transport: impl Transport) {
    let bus = bus();
    let events = probes(&bus, 1);
    let mut c = consumer(&transport, of_probe("conformance.max").max_deliver(2)).await;
    send_all(&transport, &events).await;
    for attempt in 1..=2 {
        let d = next(&mut c).await;
        assert_eq!(d.attempt(), attempt);
        settle(
            d,
            Settle::Nak {
                after: Duration::ZERO,
            },
        )
        .await;
    }
    quiet(&mut c, "the message was delivered its maximum of 2 times").await;
}

/// A pattern consumer takes every name it matches; a consumer of one name takes only it.
pub async fn a_pattern_consumer_takes_every_matching_name(transport: impl Transport) {
    let bus = bus();
    let events = vec![
        made(&bus, probe(1)),
        made(
            &bus,
            Other {
                n: 2,
                note: String::new(),
            },
        ),
    ];
    let mut any = consumer(
        &transport,
        ConsumerSpec::new("conformance.any", Selects::Pattern("conformance.*".into())),
    )
    .await;
    let mut one = consumer(&transport, of_probe("conformance.one")).await;
    send_all(&transport, &events).await;
    let mut types = BTreeSet::new();
    for _ in 0..2 {
        let d = next(&mut any).await;
        types.insert(read(&*d).1);
        settle(d, Settle::Ack).await;
    }
    assert_eq!(types, BTreeSet::from([PROBE.to_owned(), OTHER.to_owned()]));
    let d = next(&mut one).await;
    assert_eq!(read(&*d).1, PROBE);
    settle(d, Settle::Ack).await;
    quiet(&mut one, "the only `conformance.probe` was acknowledged").await;
}

/// The event the setup names is local; others are carried.
pub async fn local_events_are_not_carried(transport: impl Transport) {
    assert!(transport.is_local(LOCAL));
    assert!(!transport.is_local(PROBE));
}

/// One `#[test]` per case of the [transport conformance suite](crate::testing::transport),
/// each on a fresh transport made by `$make`: a closure taking a
/// [`Setup`](crate::testing::transport::Setup) and returning a future of the transport
/// (which must be `Clone`: two clones stand for two processes).
///
/// ```no_run,standalone_crate
/// events::transport_conformance!(|_setup| async { events::transport::Loopback::new() });
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! transport_conformance {
    ($make:expr $(,)?) => {
        $crate::transport_conformance!(@cases $make;
            sent_events_arrive_whole_and_in_order,
            every_handler_gets_every_event,
            members_of_one_consumer_share_its_messages,
            a_nak_delivers_again_with_the_next_attempt,
            acknowledged_and_terminated_messages_never_come_again,
            an_unsettled_message_is_delivered_again,
            a_restarted_consumer_resumes_where_it_stopped,
            an_event_id_sent_twice_is_delivered_once,
            max_deliver_ends_redelivery,
            a_pattern_consumer_takes_every_matching_name,
            local_events_are_not_carried,
        );
    };
    (@cases $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::testing::transport::run($make, $crate::testing::transport::$case);
            }
        )+
    };
}
