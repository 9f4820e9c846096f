//! The event store: appends before dispatch, queries, durable handlers' delivery records,
//! recovery and catch-up, replay, durable dead letters, the memory store's budget, and the
//! SQLite file's schema.

#![allow(unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use events::store::{EventStore, MemoryStore, SqliteStore, StoreError, StoreQuery};
use events::{Bus, DeadLetterFilter, Event, EventKind, PublishError, PublishOptions};

#[derive(Event, Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "shop.order.placed")]
pub struct OrderPlaced {
    pub order: u64,
}

#[derive(Event, Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "shop.order.shipped", kind = "command")]
pub struct ShipOrder {
    pub order: u64,
}

/// Calls of each handler: (handler, order, replayed).
static CALLS: Mutex<Vec<(&'static str, u64, bool)>> = Mutex::new(Vec::new());
/// Serializes the tests: they share `CALLS`.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn calls(handler: &str) -> Vec<u64> {
    CALLS
        .lock()
        .unwrap()
        .iter()
        .filter(|(h, _, _)| *h == handler)
        .map(|(_, o, _)| *o)
        .collect()
}

/// The handlers a service starts with.
mod first {
    use super::*;

    #[events::handler(durable)]
    fn bill(ev: &OrderPlaced, ctx: &events::Context) {
        CALLS
            .lock()
            .unwrap()
            .push(("bill", ev.order, ctx.is_replay()));
    }

    #[events::handler(replay = false)]
    fn send_mail(ev: &OrderPlaced, ctx: &events::Context) {
        CALLS
            .lock()
            .unwrap()
            .push(("mail", ev.order, ctx.is_replay()));
    }
}

/// A durable handler added in a later release.
mod later {
    use super::*;

    #[events::handler(durable)]
    fn analytics(ev: &OrderPlaced) {
        CALLS.lock().unwrap().push(("analytics", ev.order, false));
    }
}

/// A durable handler that fails for good while `BROKEN`.
mod flaky {
    use super::*;

    pub static BROKEN: AtomicBool = AtomicBool::new(true);

    #[events::handler(durable)]
    fn ship(ev: &ShipOrder) -> Result<(), events::HandlerError> {
        if BROKEN.load(Ordering::SeqCst) {
            return Err(events::HandlerError::permanent("carrier refused"));
        }
        CALLS.lock().unwrap().push(("ship", ev.order, false));
        Ok(())
    }
}

fn bus_on(store: impl EventStore, scopes: &[&'static str]) -> Bus {
    let mut b = Bus::builder().source("store-test").store(store);
    for s in scopes {
        b = b.scope(*s);
    }
    b.build().unwrap()
}

fn reset() {
    CALLS.lock().unwrap().clear();
}

#[tokio::test]
async fn publish_stores_the_event_before_its_handlers_and_queries_find_it() {
    let _g = SERIAL.lock().await;
    reset();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("events.db")).unwrap());
    let bus = bus_on(Arc::clone(&store), &["store::first"]);

    let before = SystemTime::now();
    let r1 = bus.publish(OrderPlaced { order: 1 }).await.unwrap();
    let r2 = bus
        .publish_with(
            OrderPlaced { order: 2 },
            PublishOptions::new()
                .source("checkout")
                .target("billing")
                .metadata("tenant", "acme"),
        )
        .await
        .unwrap();
    let r3 = bus.publish_blocking(ShipOrder { order: 3 }).unwrap();
    assert_eq!(
        (r1.sequence(), r2.sequence(), r3.sequence()),
        (Some(1), Some(2), Some(3))
    );

    let all = store.query(&StoreQuery::all()).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].id, r1.event_id());
    assert_eq!(all[0].name, "shop.order.placed");
    assert_eq!(
        all[0].payload_json().unwrap(),
        serde_json::json!({"order": 1})
    );
    assert_eq!(all[0].source, "store-test");
    assert!(all[0].time() >= before - Duration::from_secs(1));
    assert_eq!(all[1].source, "checkout");
    assert_eq!(all[1].target.as_deref(), Some("billing"));
    assert_eq!(all[1].metadata["tenant"], "acme");
    assert_eq!(all[2].kind, "command");

    let seqs = |q: StoreQuery| -> Vec<u64> {
        store
            .query(&q)
            .unwrap()
            .iter()
            .map(|e| e.sequence)
            .collect()
    };
    assert_eq!(seqs(StoreQuery::all().id(r2.event_id())), [2]);
    assert_eq!(
        seqs(StoreQuery::all().name("shop.order.placed").unwrap()),
        [1, 2]
    );
    assert_eq!(
        seqs(StoreQuery::all().name("shop.order.*").unwrap()),
        [1, 2, 3]
    );
    assert_eq!(seqs(StoreQuery::all().name("shop.>").unwrap()), [1, 2, 3]);
    assert_eq!(
        seqs(StoreQuery::all().name("billing.*").unwrap()),
        Vec::<u64>::new()
    );
    assert_eq!(seqs(StoreQuery::all().kind(EventKind::Command)), [3]);
    assert_eq!(seqs(StoreQuery::all().source("checkout")), [2]);
    assert_eq!(seqs(StoreQuery::all().target("billing")), [2]);
    assert_eq!(
        seqs(StoreQuery::all().correlation_id(r1.event_id())),
        [1],
        "a root event's correlation id is its own id"
    );
    assert_eq!(
        seqs(StoreQuery::all().from_sequence(2).to_sequence(3)),
        [2, 3]
    );
    assert_eq!(seqs(StoreQuery::all().newest_first().limit(2)), [3, 2]);
    assert_eq!(
        seqs(StoreQuery::all().name("shop.>").unwrap().limit(1)),
        [1]
    );
    assert_eq!(seqs(StoreQuery::all().since(before)), [1, 2, 3]);
    assert_eq!(seqs(StoreQuery::all().until(before)), Vec::<u64>::new());
    assert!(StoreQuery::all().name("Bad Name").is_err());

    // The handlers ran after the append.
    assert_eq!(calls("bill"), [1, 2]);
}

#[tokio::test]
async fn a_duplicate_event_id_is_refused_and_dispatched_to_nobody() {
    let _g = SERIAL.lock().await;
    reset();
    let bus = bus_on(MemoryStore::new(), &["store::first"]);
    let id = events::EventId::new();
    bus.publish_with(OrderPlaced { order: 1 }, PublishOptions::new().id(id))
        .await
        .unwrap();
    let err = bus
        .publish_with(OrderPlaced { order: 1 }, PublishOptions::new().id(id))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            PublishError::Store {
                source: StoreError::Duplicate { sequence: 1, .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("already in the store"), "{err}");
    assert_eq!(calls("bill"), [1], "the duplicate reached no handler");
}

#[tokio::test]
async fn a_durable_handler_added_later_catches_up_from_the_beginning_and_only_once() {
    let _g = SERIAL.lock().await;
    reset();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    {
        let bus = bus_on(SqliteStore::open(&path).unwrap(), &["store::first"]);
        for order in 1..=5 {
            bus.publish(OrderPlaced { order }).await.unwrap();
        }
        // Everything the first release's durable handler had to do, it did.
        let r = bus.recover().await.unwrap();
        assert_eq!((r.events, r.deliveries), (0, 0));
    }
    // The next release adds `analytics`: recovery delivers the whole history to it, and
    // to nobody else.
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let bus = bus_on(Arc::clone(&store), &["store::first", "store::later"]);
    let r = bus.recover().await.unwrap();
    assert_eq!((r.events, r.deliveries, r.unreadable), (5, 5, 0));
    assert_eq!(calls("analytics"), [1, 2, 3, 4, 5]);
    assert_eq!(calls("bill"), [1, 2, 3, 4, 5], "bill was not called again");
    assert_eq!(calls("mail"), [1, 2, 3, 4, 5], "mail was not called again");

    // New events are delivered as they happen and recorded; nothing is left to recover.
    bus.publish(OrderPlaced { order: 6 }).await.unwrap();
    let r = bus.recover().await.unwrap();
    assert_eq!(r.deliveries, 0);
    assert_eq!(calls("analytics"), [1, 2, 3, 4, 5, 6]);
    assert!(
        store
            .undelivered("store::later::analytics", "shop.order.placed", 0, 10)
            .unwrap()
            .is_empty()
    );
    // The checkpoint moved past everything: recovery compacted the records.
    assert_eq!(
        store
            .checkpoint("store::later::analytics", "shop.order.placed")
            .await
            .unwrap(),
        6
    );
}

/// A bus on a SQLite store that was given orders 1..=n by a bus now gone, with the async
/// durable `audit` pending for each: `publish_blocking` cannot run async handlers, as if the
/// process had died while they ran.
fn restarted_with_pending_audits(n: u64) -> (Bus, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let scopes = ["store::first", "store::pending"];
    {
        let bus = bus_on(SqliteStore::open(&path).unwrap(), &scopes);
        for order in 1..=n {
            let receipt = bus.publish_blocking(OrderPlaced { order }).unwrap();
            assert!(matches!(
                receipt.outcome("store::pending::audit"),
                Some(events::Outcome::SkippedAsync)
            ));
        }
    }
    (bus_on(SqliteStore::open(&path).unwrap(), &scopes), dir)
}

#[tokio::test]
async fn deliveries_not_recorded_before_a_crash_are_made_by_recover() {
    let _g = SERIAL.lock().await;
    reset();
    let (bus, _dir) = restarted_with_pending_audits(3);
    let r = bus.recover().await.unwrap();
    assert_eq!((r.events, r.deliveries), (3, 3));
    assert_eq!(calls("audit"), [1, 2, 3]);
    assert_eq!(
        calls("bill"),
        [1, 2, 3],
        "bill had finished: not delivered again"
    );
    assert_eq!(bus.recover().await.unwrap().deliveries, 0);
}

/// Issue 16: a replay delivers to durable handlers with `is_replay() == true`, so it must
/// not count as their delivery: a handler that skips side effects on replay would never do
/// its pending work.
#[tokio::test]
async fn a_replay_does_not_mark_pending_durable_deliveries_done() {
    let _g = SERIAL.lock().await;
    reset();
    let (bus, _dir) = restarted_with_pending_audits(10);
    let replayed = bus.replay(StoreQuery::all()).await.unwrap();
    assert_eq!(replayed.events, 10);
    assert_eq!(calls("audit"), (1..=10).collect::<Vec<_>>(), "replayed");
    reset();
    let r = bus.recover().await.unwrap();
    assert_eq!(
        (r.events, r.deliveries),
        (10, 10),
        "the replay counted as the pending deliveries"
    );
    assert_eq!(calls("audit"), (1..=10).collect::<Vec<_>>());
    assert!(
        calls("bill").is_empty(),
        "bill had finished before the replay"
    );
}

mod pending {
    use super::*;

    #[events::handler(durable)]
    async fn audit(ev: &OrderPlaced) {
        CALLS.lock().unwrap().push(("audit", ev.order, false));
    }
}

#[tokio::test]
async fn replay_skips_replay_false_handlers_by_construction_and_reports_progress() {
    let _g = SERIAL.lock().await;
    reset();
    let bus = bus_on(MemoryStore::new(), &["store::first"]);
    for order in 1..=4 {
        bus.publish(OrderPlaced { order }).await.unwrap();
    }
    reset();

    let progress = Mutex::new(Vec::new());
    let report = bus
        .replay(StoreQuery::all().from_sequence(2))
        .on_progress(|p| progress.lock().unwrap().push((p.done, p.total, p.sequence)))
        .await
        .unwrap();
    assert_eq!(
        (
            report.events,
            report.deliveries,
            report.skipped,
            report.failures
        ),
        (3, 3, 0, 0)
    );
    assert_eq!(
        progress.into_inner().unwrap(),
        [(1, 3, 2), (2, 3, 3), (3, 3, 4)]
    );
    let calls = CALLS.lock().unwrap().clone();
    assert_eq!(
        calls,
        [("bill", 2, true), ("bill", 3, true), ("bill", 4, true)],
        "the mail handler never runs in a replay; the others see `is_replay`"
    );

    let err = bus
        .replay(StoreQuery::all())
        .only(["store::first::send_mail"])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, events::ReplayError::NotReplayable(h) if h == "store::first::send_mail"),
        "{err}"
    );
    let err = bus
        .replay(StoreQuery::all())
        .only(["nobody"])
        .await
        .unwrap_err();
    assert!(
        matches!(err, events::ReplayError::UnknownHandler(_)),
        "{err}"
    );

    let no_store = Bus::builder().scope("store::first").build().unwrap();
    assert!(matches!(
        no_store.replay(StoreQuery::all()).await,
        Err(events::ReplayError::NoStore)
    ));
}

#[tokio::test]
async fn dead_letters_survive_a_restart_and_a_retry_removes_them_from_the_store() {
    let _g = SERIAL.lock().await;
    reset();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    flaky::BROKEN.store(true, Ordering::SeqCst);
    {
        let bus = bus_on(SqliteStore::open(&path).unwrap(), &["store::flaky"]);
        bus.publish(ShipOrder { order: 7 }).await.unwrap();
        assert_eq!(bus.dead_letters().list(&DeadLetterFilter::all()).len(), 1);
        // A dead letter is a finished delivery: recovery does not retry it.
        assert_eq!(bus.recover().await.unwrap().deliveries, 0);
    }
    let id = {
        let bus = bus_on(SqliteStore::open(&path).unwrap(), &["store::flaky"]);
        let letters = bus.dead_letters().list(&DeadLetterFilter::all());
        assert_eq!(
            letters.len(),
            1,
            "the dead letter was kept across the restart"
        );
        let letter = &letters[0];
        assert_eq!(letter.handler, "store::flaky::ship");
        assert_eq!(letter.error, "carrier refused");
        assert!(letter.permanent);
        assert_eq!(letter.sequence, Some(1));
        assert_eq!(letter.payload, serde_json::json!({"order": 7}));

        flaky::BROKEN.store(false, Ordering::SeqCst);
        assert!(bus.dead_letters().retry(letter.id).await);
        assert_eq!(calls("ship"), [7]);
        assert!(bus.dead_letters().list(&DeadLetterFilter::all()).is_empty());
        letter.id
    };
    let bus = bus_on(SqliteStore::open(&path).unwrap(), &["store::flaky"]);
    assert!(
        bus.dead_letters().list(&DeadLetterFilter::all()).is_empty(),
        "retried letter {id} is gone from the store too"
    );
    // New letters are numbered after the ones the store has seen.
    flaky::BROKEN.store(true, Ordering::SeqCst);
    bus.publish(ShipOrder { order: 8 }).await.unwrap();
    let letters = bus.dead_letters().list(&DeadLetterFilter::all());
    assert!(letters[0].id > id, "{} > {id}", letters[0].id);
    flaky::BROKEN.store(false, Ordering::SeqCst);
}

#[tokio::test]
async fn the_memory_store_keeps_the_newest_events_within_its_byte_budget() {
    let _g = SERIAL.lock().await;
    reset();
    let store = Arc::new(MemoryStore::with_budget(8 * 1024));
    // `bill` is durable: its delivery records must not outgrow the budget either.
    let bus = bus_on(Arc::clone(&store), &["store::first"]);
    for order in 1..=1000 {
        bus.publish(OrderPlaced { order }).await.unwrap();
    }
    assert!(store.bytes() <= 8 * 1024, "{} bytes", store.bytes());
    assert!(
        store.delivery_records() <= store.len(),
        "{} delivery records for {} kept events",
        store.delivery_records(),
        store.len()
    );
    assert!(store.len() > 10, "kept {}", store.len());
    assert_eq!(store.evicted() as usize + store.len(), 1000);
    let kept = store.query(&StoreQuery::all()).unwrap();
    let orders: Vec<u64> = kept
        .iter()
        .map(|e| e.payload_json().unwrap()["order"].as_u64().unwrap())
        .collect();
    let newest: Vec<u64> = (1000 - orders.len() as u64 + 1..=1000).collect();
    assert_eq!(orders, newest, "the oldest were evicted first");
    assert_eq!(kept.last().unwrap().sequence, 1000);
}

#[tokio::test]
async fn the_sqlite_file_is_migrated_once_and_a_newer_schema_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    drop(SqliteStore::open(&path).unwrap());
    drop(SqliteStore::open(&path).unwrap()); // a second open runs no migration again
    let conn = rusqlite_version(&path);
    assert_eq!(conn, SqliteStore::SCHEMA_VERSION);

    set_user_version(&path, SqliteStore::SCHEMA_VERSION + 1);
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
    assert!(err.to_string().contains("upgrade `events`"), "{err}");
    assert_eq!(rusqlite_version(&path), SqliteStore::SCHEMA_VERSION + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_rolls_back_its_group_commit_fails_every_publish_in_it_and_stores_none() {
    let _g = SERIAL.lock().await;
    reset();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    drop(SqliteStore::open(&path).unwrap());
    // A stand-in for a full disk or an I/O error: SQLite rolls the whole transaction back
    // while order 13 is written, whatever else its group commit holds.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            r#"CREATE TRIGGER poison BEFORE INSERT ON events
               WHEN NEW.payload LIKE '%"order":13}%'
               BEGIN SELECT RAISE(ROLLBACK, 'disk full (simulated)'); END;"#,
        )
        .unwrap();
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let bus = bus_on(Arc::clone(&store), &["store::first"]);

    // Concurrent publishers, so that order 13 shares its group commit with others.
    let tasks: Vec<_> = (1..=300)
        .map(|order| {
            let bus = bus.clone();
            tokio::spawn(async move { (order, bus.publish(OrderPlaced { order }).await) })
        })
        .collect();
    let (mut acknowledged, mut refused) = (Vec::new(), Vec::new());
    for task in tasks {
        match task.await.unwrap() {
            (order, Ok(_)) => acknowledged.push(order),
            (order, Err(e)) => {
                assert!(e.to_string().contains("disk full (simulated)"), "{e}");
                refused.push(order);
            }
        }
    }
    assert!(refused.contains(&13), "{refused:?}");
    eprintln!("{} refused with order 13", refused.len());

    let stored: Vec<u64> = store
        .query(&StoreQuery::all())
        .unwrap()
        .iter()
        .map(|e| {
            serde_json::from_str::<OrderPlaced>(&e.payload)
                .unwrap()
                .order
        })
        .collect();
    let mut stored_sorted = stored.clone();
    stored_sorted.sort_unstable();
    assert_eq!(
        stored_sorted, acknowledged,
        "stored: exactly the acknowledged events, none of those told they failed"
    );
    let mut billed = calls("bill");
    billed.sort_unstable();
    assert_eq!(billed, acknowledged, "a refused event reached no handler");
}

#[test]
fn a_file_that_is_not_a_store_is_refused_with_its_path_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let text = "not a database, just somebody's notes\n".repeat(200);
    std::fs::write(&path, &text).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("notes.txt"), "{message}");
    assert!(message.contains("not a database"), "{message}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        text,
        "the file was changed"
    );

    let missing = dir.path().join("no-such-dir").join("events.db");
    let err = SqliteStore::open(&missing).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(err.to_string().contains("no-such-dir"), "{err}");
}

/// `PRAGMA user_version`, read with the sqlite3 shell's format through a bus-less store.
fn rusqlite_version(path: &std::path::Path) -> i64 {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('PRAGMA user_version').fetchone()[0])",
        ])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn set_user_version(path: &std::path::Path, v: i64) {
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA user_version=%d' % int(sys.argv[2])); c.commit()",
        ])
        .arg(path)
        .arg(v.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn emitted_events_are_stored_before_emit_returns() {
    let _g = SERIAL.lock().await;
    reset();
    let store = Arc::new(MemoryStore::new());
    let bus = Bus::builder()
        .scope("store::first")
        .store(Arc::clone(&store))
        .build()
        .unwrap();
    let id = bus.emit(OrderPlaced { order: 42 }).await.unwrap();
    let stored = store.query(&StoreQuery::all().id(id)).unwrap();
    assert_eq!(
        stored.len(),
        1,
        "stored when emit returned, before a worker ran"
    );
    let id2 = bus.try_emit(OrderPlaced { order: 43 }).unwrap();
    assert_eq!(store.query(&StoreQuery::all().id(id2)).unwrap().len(), 1);
    let report = bus.shutdown(Duration::from_secs(5)).await;
    assert!(report.unprocessed.is_empty());
    let mut seen = BTreeMap::new();
    for o in calls("bill") {
        *seen.entry(o).or_insert(0) += 1;
    }
    assert_eq!(seen, BTreeMap::from([(42, 1), (43, 1)]));
}

#[tokio::test]
async fn the_memory_store_supports_catch_up_and_checkpoints_too() {
    let _g = SERIAL.lock().await;
    reset();
    let store = Arc::new(MemoryStore::new());
    let bus = bus_on(Arc::clone(&store), &["store::first"]);
    for order in 1..=3 {
        bus.publish(OrderPlaced { order }).await.unwrap();
    }
    let bus = bus_on(Arc::clone(&store), &["store::first", "store::later"]);
    let r = bus.recover().await.unwrap();
    assert_eq!((r.events, r.deliveries), (3, 3));
    assert_eq!(calls("analytics"), [1, 2, 3]);
    assert_eq!(calls("bill"), [1, 2, 3]);
    assert_eq!(bus.recover().await.unwrap().deliveries, 0);
    assert_eq!(
        store
            .checkpoint("store::later::analytics", "shop.order.placed")
            .await
            .unwrap(),
        3
    );
}

/// Issue 17: an event with no handler that the store keeps is not "unhandled" (replay and
/// recovery can still deliver it); without the store it is.
#[tokio::test]
async fn a_stored_event_without_handlers_is_not_unhandled() {
    let stored = Bus::builder()
        .no_handlers()
        .store(MemoryStore::new())
        .build()
        .unwrap();
    let receipt = stored.publish(ShipOrder { order: 1 }).await.unwrap();
    assert_eq!(receipt.handler_count(), 0);
    assert!(!receipt.is_unhandled() && receipt.is_ok(), "{receipt}");
    assert!(
        receipt.to_string().contains("no local handler"),
        "{receipt}"
    );

    let plain = Bus::builder().no_handlers().build().unwrap();
    let receipt = plain.publish(ShipOrder { order: 1 }).await.unwrap();
    assert!(receipt.is_unhandled() && !receipt.is_ok(), "{receipt}");
}
