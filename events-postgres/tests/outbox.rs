//! Two processes forward one PostgreSQL outbox: in normal operation each event is sent
//! once (no duplicate reaches the broker's deduplication), and the entries of a process that
//! died while holding its claim are forwarded by the other once the claim's lease runs out.

use std::time::Duration;

use events::outbox::OutboxOptions;
use events::transport::Loopback;
use events::{Bus, Event};
use events_postgres::{PostgresOptions, PostgresStore};

#[derive(Event, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "pg.shipped")]
struct Shipped {
    from: String,
    n: u64,
}

fn config() -> String {
    std::env::var("EVENTS_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned())
}

fn store(schema: &str, temporary: bool) -> PostgresStore {
    let options = PostgresOptions::new().schema(schema);
    let options = if temporary {
        options.temporary()
    } else {
        options
    };
    PostgresStore::connect(&config(), options).unwrap()
}

/// One "process": its own connections to the shared schema, and its own partition.
fn instance(schema: &str, name: &str, broker: &Loopback, temporary: bool) -> Bus {
    Bus::builder()
        .no_handlers()
        .source(name.to_owned())
        .store(store(schema, temporary))
        .transport(broker.clone())
        .outbox(
            OutboxOptions::new()
                .batch(64)
                .lease(Duration::from_millis(400))
                .poll(Duration::from_millis(20))
                .backoff(Duration::from_millis(5), Duration::from_millis(50)),
        )
        .build()
        .unwrap()
}

/// `(from, n)` of every message the broker holds.
fn sent(broker: &Loopback) -> Vec<(String, u64)> {
    broker
        .messages()
        .iter()
        .map(|m| {
            (
                m["data"]["from"].as_str().unwrap().to_owned(),
                m["data"]["n"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_forward_without_sending_twice_or_losing_a_dead_ones_claim() {
    let schema = format!("events_outbox_{}", std::process::id());
    let broker = Loopback::new();
    let a = instance(&schema, "a", &broker, false);
    let b = instance(&schema, "b", &broker, true);
    let publish = |bus: Bus, from: &'static str| async move {
        for n in 1..=300 {
            let event = Shipped {
                from: from.to_owned(),
                n,
            };
            bus.publish(event).await.unwrap();
        }
    };
    tokio::join!(publish(a.clone(), "a"), publish(b.clone(), "b"));
    a.drain_outbox(Duration::from_millis(10)).await.unwrap();
    b.drain_outbox(Duration::from_millis(10)).await.unwrap();
    let got = sent(&broker);
    assert_eq!(got.len(), 600);
    // Each partition in its commit order.
    for from in ["a", "b"] {
        let order: Vec<u64> = got.iter().filter(|m| m.0 == from).map(|m| m.1).collect();
        assert_eq!(order, (1..=300).collect::<Vec<_>>(), "partition {from}");
    }
    let (sa, sb) = (a.outbox().unwrap().unwrap(), b.outbox().unwrap().unwrap());
    assert_eq!(sa.duplicates + sb.duplicates, 0, "nothing sent twice");
    assert_eq!(sa.forwarded + sb.forwarded, 600);

    // `a` dies holding its claim: its broker is gone, its forwarder holds the lease of its
    // partition while backing off, and then the process is gone (the lease stays).
    drop(a);
    let offline = Loopback::new();
    offline.set_offline(true);
    let a = instance(&schema, "a2", &offline, false);
    for n in 1..=100 {
        let event = Shipped {
            from: "a2".to_owned(),
            n,
        };
        a.publish(event).await.unwrap();
    }
    events_tests_until(|| a.outbox().unwrap().unwrap().failed_sends > 0).await;
    drop(a);
    // `b` adopts the partition once the lease has run out, and sends every entry.
    b.drain_outbox(Duration::from_millis(10)).await.unwrap();
    let late: Vec<u64> = sent(&broker)
        .iter()
        .filter(|m| m.0 == "a2")
        .map(|m| m.1)
        .collect();
    assert_eq!(late, (1..=100).collect::<Vec<_>>());
    assert_eq!(b.outbox().unwrap().unwrap().backlog.events, 0);
}

/// Waits (up to 10 s) for `done`.
async fn events_tests_until(mut done: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out");
}

#[derive(Event, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "pg.note")]
struct Note {
    n: u64,
}

static NOTES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[events::handler]
fn on_note(ev: &Note) {
    NOTES.fetch_add(ev.n, std::sync::atomic::Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_publishes_nothing_and_a_commit_everything_in_the_applications_transaction() {
    use events::store::EventStore;
    use events::transport::LoopbackOptions;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    let schema = format!("events_tx_{}", std::process::id());
    let store = Arc::new(store(&schema, true));
    let broker = Loopback::with_options(LoopbackOptions::new().local(Note::NAME));
    let bus = Bus::builder()
        .handler("outbox::on_note")
        .store(Arc::clone(&store))
        .transport(broker.clone())
        .outbox(OutboxOptions::new().poll(Duration::from_millis(20)))
        .build()
        .unwrap();
    // The application's own connection and table, in the store's schema.
    let (mut client, connection) =
        events_postgres::tokio_postgres::connect(&config(), events_postgres::tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "SET search_path TO \"{schema}\"; CREATE TABLE orders (id BIGINT PRIMARY KEY)"
        ))
        .await
        .unwrap();

    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO orders (id) VALUES (1)", &[])
        .await
        .unwrap();
    let mut staged = bus.stage();
    staged
        .publish(Shipped {
            from: "tx".into(),
            n: 1,
        })
        .unwrap();
    staged.publish(Note { n: 1 }).unwrap();
    tx.rollback().await.unwrap();
    drop(staged);
    assert_eq!(orders(&client).await, 0);
    assert_eq!(store.count(&Default::default()).unwrap(), 0);
    assert_eq!(bus.outbox().unwrap().unwrap().backlog.events, 0);

    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO orders (id) VALUES (2)", &[])
        .await
        .unwrap();
    let mut staged = bus.stage();
    staged
        .publish(Shipped {
            from: "tx".into(),
            n: 2,
        })
        .unwrap();
    staged.publish(Note { n: 5 }).unwrap();
    let receipts = store.commit(tx, staged).await.unwrap();
    assert_eq!(orders(&client).await, 1);
    assert_eq!(receipts.len(), 2);
    assert_eq!(receipts[1].delivered(), 1, "the local event's handler ran");
    assert_eq!(NOTES.load(Ordering::SeqCst), 5);
    assert_eq!(store.count(&Default::default()).unwrap(), 2);
    bus.drain_outbox(Duration::from_millis(10)).await.unwrap();
    assert_eq!(sent(&broker), [("tx".to_owned(), 2)]);
}

async fn orders(client: &events_postgres::tokio_postgres::Client) -> i64 {
    client
        .query_one("SELECT COUNT(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0)
}
