//! The outbox: with a store and a transport, `publish` resolves on the local commit while
//! the broker is away, and the forwarder sends every committed event, in commit order, when
//! it is back; a restarted process resumes where the last one stopped. On the in-memory
//! [`Loopback`] switched offline, on a real SQLite file, and on a real `nats-server` that is
//! stopped and started again.

#![allow(unreachable_pub)]

use std::time::Duration;

use events::outbox::{Ack, ForwarderState, OutboxOptions};
use events::store::{EventStore, SqliteStore};
use events::transport::Loopback;
use events::{Bus, Event, Problem, PublishError, PublishOptions};
use events_tests::until;

#[derive(Event, Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "outbox.order")]
pub struct Order {
    pub n: u64,
}

/// What the forwarder's test options are: quick back-off and polling.
fn options() -> OutboxOptions {
    OutboxOptions::new()
        .backoff(Duration::from_millis(5), Duration::from_millis(50))
        .poll(Duration::from_millis(20))
}

fn bus(store: impl EventStore, broker: &Loopback) -> Bus {
    Bus::builder()
        .no_handlers()
        .store(store)
        .transport(broker.clone())
        .outbox(options())
        .build()
        .unwrap()
}

/// The `n` of each message on the loopback, in the broker's order.
fn sent(broker: &Loopback) -> Vec<u64> {
    broker
        .messages()
        .iter()
        .map(|m| m["data"]["n"].as_u64().unwrap())
        .collect()
}

fn backlog(bus: &Bus) -> u64 {
    bus.outbox().unwrap().unwrap().backlog.events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_succeed_while_the_broker_is_away_and_arrive_in_order_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Loopback::new();
    broker.set_offline(true);
    let bus = bus(SqliteStore::open(dir.path().join("e.db")).unwrap(), &broker);
    for n in 1..=300 {
        let receipt = bus.publish(Order { n }).await.unwrap();
        assert_eq!(receipt.sequence(), Some(n), "the store's sequence");
    }
    assert_eq!(backlog(&bus), 300);
    until("the forwarder backs off", || {
        matches!(
            bus.outbox().unwrap().unwrap().state,
            ForwarderState::BackingOff { .. }
        )
    })
    .await;
    let status = bus.outbox().unwrap().unwrap();
    assert!(status.failed_sends > 0);
    assert!(status.backlog.oldest.is_some());
    assert!(broker.is_empty());

    broker.set_offline(false);
    bus.drain_outbox(Duration::from_millis(10)).await.unwrap();
    assert_eq!(sent(&broker), (1..=300).collect::<Vec<_>>());
    let status = bus.outbox().unwrap().unwrap();
    assert_eq!(status.forwarded, 300);
    assert_eq!(status.duplicates, 0);
    assert_eq!(status.backlog.events, 0);
    assert_eq!(status.backlog.oldest, None);
    assert_eq!(status.state, ForwarderState::Connected);
    // Forwarded entries are gone from the outbox; the events stay in the history.
    assert_eq!(
        bus.store().unwrap().count(&Default::default()).unwrap(),
        300
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_can_still_ask_for_the_brokers_ack() {
    let broker = Loopback::new();
    broker.set_offline(true);
    let bus = bus(events::store::MemoryStore::new(), &broker);
    let broker_ack = PublishOptions::new().ack(Ack::Broker);
    let err = bus
        .publish_with(Order { n: 1 }, broker_ack.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::Transport { .. }), "{err}");
    assert_eq!(
        backlog(&bus),
        0,
        "a refused broker-ack publish leaves no entry"
    );
    bus.publish(Order { n: 2 }).await.unwrap();
    broker.set_offline(false);
    bus.publish_with(Order { n: 3 }, broker_ack).await.unwrap();
    bus.drain_outbox(Duration::from_millis(10)).await.unwrap();
    let mut got = sent(&broker);
    got.sort_unstable();
    assert_eq!(got, [2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_outbox_a_local_ack_is_refused() {
    let broker = Loopback::new();
    let bus = Bus::builder()
        .no_handlers()
        .transport(broker.clone())
        .build()
        .unwrap();
    assert!(bus.outbox().is_none());
    let err = bus
        .publish_with(Order { n: 1 }, PublishOptions::new().ack(Ack::Local))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("BusBuilder::outbox"), "{err}");
    assert!(broker.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blocking_api_publishes_to_the_outbox() {
    let broker = Loopback::new();
    let bus = bus(events::store::MemoryStore::new(), &broker);
    let b = bus.clone();
    let receipt = tokio::task::spawn_blocking(move || b.publish_blocking(Order { n: 7 }))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        receipt.handler_count(),
        0,
        "consumers handle it, not this bus"
    );
    bus.drain_outbox(Duration::from_millis(10)).await.unwrap();
    assert_eq!(sent(&broker), [7]);
}

#[test]
fn the_outbox_needs_a_store_a_transport_and_a_runtime() {
    let problem = |builder: events::BusBuilder| match builder.outbox(OutboxOptions::new()).build() {
        Err(e) => e.problems().to_vec(),
        Ok(_) => panic!("built"),
    };
    let no_store = problem(Bus::builder().no_handlers().transport(Loopback::new()));
    assert!(
        matches!(&no_store[..], [Problem::Outbox { missing }] if missing.contains("store")),
        "{no_store:?}"
    );
    let no_transport = problem(
        Bus::builder()
            .no_handlers()
            .store(events::store::MemoryStore::new()),
    );
    assert!(
        matches!(&no_transport[..], [Problem::Outbox { missing }] if missing.contains("transport")),
        "{no_transport:?}"
    );
    let no_runtime = problem(
        Bus::builder()
            .no_handlers()
            .store(events::store::MemoryStore::new())
            .transport(Loopback::new()),
    );
    assert!(
        matches!(&no_runtime[..], [Problem::Outbox { missing }] if missing.contains("runtime")),
        "{no_runtime:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_process_forwards_what_the_last_one_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.db");
    let broker = Loopback::new();
    broker.set_offline(true);
    {
        let bus = bus(SqliteStore::open(&path).unwrap(), &broker);
        for n in 1..=50 {
            bus.publish(Order { n }).await.unwrap();
        }
    }
    broker.set_offline(false);
    let bus = bus(SqliteStore::open(&path).unwrap(), &broker);
    assert_eq!(backlog(&bus), 50);
    bus.drain_outbox(Duration::from_millis(10)).await.unwrap();
    assert_eq!(sent(&broker), (1..=50).collect::<Vec<_>>());
}

mod nats {
    use super::*;
    use events::nats::{Nats, NatsOptions};
    use events_tests::NatsServer;
    use std::sync::Mutex;

    static GOT: Mutex<Vec<u64>> = Mutex::new(Vec::new());

    #[events::handler]
    fn receive(ev: &Order) {
        GOT.lock().unwrap().push(ev.n);
    }

    /// The events received, each where it was first received.
    fn first_seen() -> Vec<u64> {
        let mut seen = std::collections::HashSet::new();
        GOT.lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|n| seen.insert(*n))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_broker_loses_nothing_and_reorders_nothing() {
        let server = NatsServer::start();
        let url = server.url();
        let nats_options = || {
            NatsOptions::new("outbox")
                .publish_timeout(Duration::from_millis(500))
                .duplicate_window(Duration::from_secs(120))
        };
        let dir = tempfile::tempdir().unwrap();
        let publisher = Bus::builder()
            .no_handlers()
            .store(SqliteStore::open(dir.path().join("e.db")).unwrap())
            .transport(Nats::connect(&url, nats_options()).await.unwrap())
            .outbox(options())
            .build()
            .unwrap();
        let consumer = Bus::builder()
            .scope("outbox::nats")
            .transport(Nats::connect(&url, nats_options()).await.unwrap())
            .build()
            .unwrap();
        let _consumers = consumer.consume().await.unwrap();
        for n in 1..=100 {
            publisher.publish(Order { n }).await.unwrap();
        }
        until("the first hundred", || GOT.lock().unwrap().len() == 100).await;

        let (port, store) = server.stop();
        for n in 101..=400 {
            // The broker is gone: every publish still succeeds, on the local commit.
            publisher.publish(Order { n }).await.unwrap();
        }
        until("the forwarder notices", || {
            !matches!(
                publisher.outbox().unwrap().unwrap().state,
                ForwarderState::Connected
            )
        })
        .await;
        assert!(publisher.outbox().unwrap().unwrap().backlog.events > 0);
        tokio::time::sleep(Duration::from_millis(600)).await;

        let _server = NatsServer::start_at(port, store);
        publisher
            .drain_outbox(Duration::from_millis(20))
            .await
            .unwrap();
        until("all four hundred", || first_seen().len() == 400).await;
        // In commit order. (A consumer may see an event again: the server was killed
        // before it wrote the consumer's acks down, which is at-least-once delivery.)
        assert_eq!(first_seen(), (1..=400).collect::<Vec<_>>());
        // And the stream holds each event once: what the forwarder sent again (the round
        // that was in flight when the broker went away) was dropped by its deduplication.
        let client = async_nats::connect(&url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream("OUTBOX").await.unwrap();
        assert_eq!(stream.info().await.unwrap().state.messages, 400);
        let status = publisher.outbox().unwrap().unwrap();
        assert_eq!(status.backlog.events, 0);
        assert_eq!(status.state, ForwarderState::Connected);
        assert!(status.forwarded >= 400, "{status:?}");
    }
}

mod tx {
    use super::*;
    use events::store::TransactionError;
    use events::transport::LoopbackOptions;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Event, Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[event(name = "outbox.note")]
    pub struct Note {
        pub n: u64,
    }

    static NOTES: AtomicU64 = AtomicU64::new(0);

    #[events::handler]
    fn on_note(ev: &Note) {
        NOTES.fetch_add(ev.n, Ordering::SeqCst);
    }

    fn orders(path: &std::path::Path) -> i64 {
        rusqlite::Connection::open(path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM orders", [], |r| r.get(0))
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rollback_publishes_nothing_and_a_commit_everything_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.db");
        let store = Arc::new(SqliteStore::open(&path).unwrap());
        let broker = Loopback::with_options(LoopbackOptions::new().local(Note::NAME));
        let bus = Bus::builder()
            .scope("outbox::tx")
            .store(Arc::clone(&store))
            .transport(broker.clone())
            .outbox(options())
            .build()
            .unwrap();
        store
            .transaction(&bus, |tx, _| {
                tx.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)", [])
            })
            .await
            .unwrap();

        let failed = store
            .transaction(&bus, |tx, staged| {
                tx.execute("INSERT INTO orders (id) VALUES (1)", [])?;
                staged.publish(Order { n: 1 }).unwrap();
                staged.publish(Note { n: 1 }).unwrap();
                Err::<(), _>(rusqlite::Error::InvalidQuery)
            })
            .await;
        assert!(matches!(failed, Err(TransactionError::RolledBack(_))));
        assert_eq!(orders(&path), 0, "the application's row is rolled back");
        assert_eq!(store.count(&Default::default()).unwrap(), 0, "no event");
        assert_eq!(backlog(&bus), 0, "no outbox entry");
        assert_eq!(NOTES.load(Ordering::SeqCst), 0, "no handler ran");

        let (value, receipts) = store
            .transaction(&bus, |tx, staged| {
                tx.execute("INSERT INTO orders (id) VALUES (2)", [])?;
                staged.publish(Order { n: 2 }).unwrap();
                staged.publish(Note { n: 5 }).unwrap();
                Ok::<_, rusqlite::Error>("done")
            })
            .await
            .unwrap();
        assert_eq!(value, "done");
        assert_eq!(orders(&path), 1);
        assert_eq!(receipts.len(), 2);
        assert_eq!(receipts[0].sequence(), Some(1));
        assert_eq!(receipts[1].sequence(), Some(2));
        assert_eq!(receipts[1].delivered(), 1, "the local event's handler ran");
        assert_eq!(NOTES.load(Ordering::SeqCst), 5);
        assert_eq!(store.count(&Default::default()).unwrap(), 2);
        bus.drain_outbox(Duration::from_millis(10)).await.unwrap();
        assert_eq!(sent(&broker), [2], "the remote event was forwarded, once");
    }
}

/// The outbox's state and the inbox's hits through the observers and the `metrics` facade.
mod visibility {
    use super::*;
    use events::observe::MetricsFacade;
    use events::outbox::InboxKey;
    use events::store::MemoryStore;
    use events::{HandlerError, State};
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Event, Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[event(name = "outbox.payment")]
    pub struct Payment {
        pub n: u64,
    }

    static PAID: AtomicU64 = AtomicU64::new(0);

    /// Records its key (a memory store's inbox has no transaction to share), then pays.
    #[events::handler(inbox)]
    fn pay(_: &Payment, key: InboxKey, store: State<Arc<MemoryStore>>) -> Result<(), HandlerError> {
        if store.record_inbox(&key) {
            PAID.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    /// What the recorder saw. Its snapshots reset what they read, so they are merged here:
    /// counters keep their highest value (the facade sets the outbox's totals absolutely;
    /// the inbox hit is one increment), gauges their values from the last snapshot taken
    /// after a report (one in which a forwarder state is 1: a report sets every gauge).
    #[derive(Default)]
    struct Seen(std::cell::RefCell<Vec<Metric>>);

    /// A metric's name, labels and value.
    type Metric = (String, Vec<(String, String)>, f64);

    fn value(
        seen: &Seen,
        snapshotter: &Snapshotter,
        name: &str,
        label: Option<(&str, &str)>,
    ) -> Option<f64> {
        let mut all = seen.0.borrow_mut();
        let snapshot = snapshotter.snapshot().into_vec();
        let reported = snapshot.iter().any(|(key, _, _, v)| {
            key.key().name() == "events_outbox_forwarder_state"
                && matches!(v, DebugValue::Gauge(g) if g.into_inner() == 1.0)
        });
        for (key, _, _, v) in snapshot {
            let labels: Vec<(String, String)> = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            let name = key.key().name().to_owned();
            let entry = match all.iter_mut().find(|(n, l, _)| *n == name && *l == labels) {
                Some(e) => e,
                None => {
                    all.push((name, labels, 0.0));
                    all.last_mut().unwrap()
                }
            };
            match v {
                DebugValue::Counter(c) => entry.2 = entry.2.max(c as f64),
                DebugValue::Gauge(g) if reported => entry.2 = g.into_inner(),
                _ => {}
            }
        }
        all.iter()
            .find(|(n, labels, _)| {
                n == name
                    && label.is_none_or(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|e| e.2)
    }

    #[test]
    fn the_forwarders_state_backlog_and_counts_reach_the_metrics_facade() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let seen = Seen::default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let broker = Loopback::new();
                broker.set_offline(true);
                let bus = Bus::builder()
                    .no_handlers()
                    .store(MemoryStore::new())
                    .transport(broker.clone())
                    .outbox(options())
                    .observer(MetricsFacade)
                    .build()
                    .unwrap();
                for n in 1..=3 {
                    bus.publish(Order { n }).await.unwrap();
                }
                until("backing off", || {
                    value(
                        &seen,
                        &snapshotter,
                        "events_outbox_forwarder_state",
                        Some(("state", "backing_off")),
                    ) == Some(1.0)
                })
                .await;
                assert_eq!(
                    value(&seen, &snapshotter, "events_outbox_backlog", None),
                    Some(3.0)
                );
                assert!(
                    value(
                        &seen,
                        &snapshotter,
                        "events_outbox_failed_sends_total",
                        None
                    ) >= Some(1.0)
                );
                broker.set_offline(false);
                until("connected", || {
                    value(
                        &seen,
                        &snapshotter,
                        "events_outbox_forwarder_state",
                        Some(("state", "connected")),
                    ) == Some(1.0)
                })
                .await;
                assert_eq!(
                    value(&seen, &snapshotter, "events_outbox_backlog", None),
                    Some(0.0)
                );
                assert_eq!(
                    value(&seen, &snapshotter, "events_outbox_forwarded_total", None),
                    Some(3.0)
                );
                assert_eq!(
                    value(
                        &seen,
                        &snapshotter,
                        "events_outbox_forwarder_state",
                        Some(("state", "backing_off"))
                    ),
                    Some(0.0)
                );
            });
        });
    }

    #[test]
    fn a_delivery_the_inbox_has_is_skipped_and_counted() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let seen = Seen::default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let broker = Loopback::new();
                let store = Arc::new(MemoryStore::new());
                let bus = Bus::builder()
                    .scope("outbox::visibility")
                    .state(Arc::clone(&store))
                    .store(Arc::clone(&store))
                    .transport(broker.clone())
                    .observer(MetricsFacade)
                    .build()
                    .unwrap();
                let _consumers = bus.consume().await.unwrap();
                // One event delivered twice (a foreign publisher sent it again after a
                // crash): the same CloudEvents source and id.
                let message = serde_json::json!({
                    "specversion": "1.0", "id": "pay-1", "source": "billing",
                    "type": "outbox.payment", "data": { "n": 1 }
                });
                for _ in 0..2 {
                    broker
                        .inject(
                            "outbox.payment",
                            None,
                            serde_json::to_vec(&message).unwrap(),
                        )
                        .unwrap();
                }
                until("the second delivery skipped", || bus.inbox_hits() == 1).await;
                assert_eq!(PAID.load(Ordering::SeqCst), 1);
                let hits = value(
                    &seen,
                    &snapshotter,
                    "events_inbox_hits_total",
                    Some(("handler", "outbox::visibility::pay")),
                );
                assert_eq!(hits, Some(1.0));
            });
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_committed_together_and_sent_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Loopback::new();
    let bus = bus(SqliteStore::open(dir.path().join("e.db")).unwrap(), &broker);
    let receipts = bus.publish_batch((1..=500).map(|n| Order { n })).await;
    let sequences: Vec<u64> = receipts
        .iter()
        .map(|r| r.as_ref().unwrap().sequence().unwrap())
        .collect();
    assert_eq!(sequences, (1..=500).collect::<Vec<_>>());
    bus.drain_outbox(Duration::from_millis(10)).await.unwrap();
    assert_eq!(sent(&broker), (1..=500).collect::<Vec<_>>());

    // Without the outbox: stored, then one pipelined send; a refused one is that event's
    // error only.
    let broker = Loopback::with_options(events::transport::LoopbackOptions::new().max_messages(3));
    let bus = Bus::builder()
        .no_handlers()
        .store(events::store::MemoryStore::new())
        .transport(broker.clone())
        .build()
        .unwrap();
    let receipts = bus.publish_batch((1..=4).map(|n| Order { n })).await;
    assert!(receipts[..3].iter().all(Result::is_ok));
    assert!(matches!(receipts[3], Err(PublishError::Transport { .. })));
    assert_eq!(sent(&broker), [1, 2, 3]);
    assert_eq!(bus.store().unwrap().count(&Default::default()).unwrap(), 4);
}

/// A broker that refuses one send (the third it sees), then takes everything: a round that
/// fails in its middle must not let later events in before the refused one.
#[derive(Clone)]
struct RefusesThird {
    inner: Loopback,
    seen: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl events::transport::Transport for RefusesThird {
    fn is_local(&self, name: &str) -> bool {
        self.inner.is_local(name)
    }
    fn send<'a>(
        &'a self,
        message: events::transport::Outgoing<'a>,
    ) -> events::transport::BoxFuture<
        'a,
        Result<events::transport::Sent, events::transport::SendError>,
    > {
        if self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 2 {
            return Box::pin(std::future::ready(Err(
                events::transport::SendError::NotSent("refused once".into()),
            )));
        }
        self.inner.send(message)
    }
    fn consumer<'a>(
        &'a self,
        spec: events::transport::ConsumerSpec,
    ) -> events::transport::BoxFuture<
        'a,
        Result<Box<dyn events::transport::Consumer>, events::transport::TransportError>,
    > {
        self.inner.consumer(spec)
    }
    fn address(&self, name: &str) -> String {
        self.inner.address(name)
    }
}

// One thread: the forwarder (spawned at build) first runs when the test awaits the drain,
// so its first round holds all ten, whatever the machine's load. (On two workers it could
// start between two appends of the memory store and split the batch, as CI once saw.)
#[tokio::test(flavor = "current_thread")]
async fn a_round_that_fails_midway_keeps_commit_order() {
    let broker = Loopback::new();
    let flaky = RefusesThird {
        inner: broker.clone(),
        seen: Default::default(),
    };
    let bus = Bus::builder()
        .no_handlers()
        .store(events::store::MemoryStore::new())
        .transport(flaky)
        .outbox(options())
        .build()
        .unwrap();
    for r in bus.publish_batch((1..=10).map(|n| Order { n })).await {
        r.unwrap();
    }
    bus.drain_outbox(Duration::from_millis(5)).await.unwrap();
    assert_eq!(sent(&broker), (1..=10).collect::<Vec<_>>());
    let status = bus.outbox().unwrap().unwrap();
    assert_eq!(
        status.failed_sends, 8,
        "the refused send and the seven after it"
    );
    assert_eq!(status.forwarded, 10);
}
