//! Retention on a real SQLite file: events past their rule's age or count are deleted, but
//! never those a durable handler has not finished (until it has), never a stream's, never
//! the newest; dead letters by their own rule; each run is an audit record.

#![allow(unreachable_pub)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use events::retention::{Keep, Retention};
use events::store::{EventStore, SqliteStore, StoreQuery};
use events::{Bus, DeadLetterFilter, Event, handler};

#[derive(Debug, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "ret.log")]
pub struct Log {
    pub n: u64,
}

#[derive(Debug, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "ret.job")]
pub struct Job {
    pub n: u64,
}

#[derive(Debug, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "ret.fail")]
pub struct Fail {
    pub n: u64,
}

static JOBS: AtomicU64 = AtomicU64::new(0);

mod worker {
    use super::*;

    #[handler(durable)]
    fn job_worker(_: &Job) {
        JOBS.fetch_add(1, Ordering::SeqCst);
    }

    #[handler]
    fn failing(_: &Fail) -> Result<(), events::HandlerError> {
        Err(events::HandlerError::permanent("no"))
    }
}

/// A CloudEvent published at `time`.
fn at(kind: &str, n: u64, time: &str) -> Vec<u8> {
    format!(
        r#"{{"specversion":"1.0","id":"{kind}-{n}-{time}","source":"/t","type":"{kind}","time":"{time}","data":{{"n":{n}}}}}"#
    )
    .into_bytes()
}

fn names(store: &dyn EventStore, pattern: &str) -> Vec<u64> {
    store
        .query(&StoreQuery::all().name(pattern).unwrap())
        .unwrap()
        .iter()
        .map(|e| e.payload_json().unwrap()["n"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_delete_what_is_past_keeping_and_nothing_still_needed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("retention.db");
    // Published by a process without the durable handler: it has finished none of them.
    {
        let bus = Bus::builder()
            .no_handlers()
            .store(SqliteStore::open(&path).unwrap())
            .build()
            .unwrap();
        for n in 0..5 {
            bus.ingest_cloudevent(&at("ret.log", n, "2020-01-01T00:00:00Z"))
                .await
                .unwrap();
            bus.ingest_cloudevent(&at("ret.job", n, "2020-01-01T00:00:00Z"))
                .await
                .unwrap();
        }
        bus.ingest_cloudevent(&at("ret.log", 5, "2099-01-01T00:00:00Z"))
            .await
            .unwrap();
        bus.store().unwrap().flush().await.unwrap();
    }
    let year = Duration::from_secs(365 * 86_400);
    let bus = Bus::builder()
        .scope("retention::worker")
        .store(SqliteStore::open(&path).unwrap())
        .retention(
            Retention::new()
                .keep("ret.log", Keep::age(year))
                .keep("ret.job", Keep::age(year))
                .keep("ret.fail", Keep::count(2))
                .dead_letters(Keep::count(1)),
        )
        .audit(true)
        .build()
        .unwrap();
    for n in 0..4 {
        bus.publish(Fail { n }).await.unwrap();
    }
    assert_eq!(bus.dead_letters().list(&DeadLetterFilter::all()).len(), 4);

    let report = bus.enforce_retention().await.unwrap();
    let store = bus.store().unwrap();
    assert_eq!(
        names(store, "ret.log"),
        [5],
        "the old logs went, the young one stayed"
    );
    assert_eq!(
        names(store, "ret.job"),
        [0, 1, 2, 3, 4],
        "the durable handler has not finished them: kept"
    );
    assert_eq!(names(store, "ret.fail"), [2, 3], "the newest two");
    assert!(report.held_back);
    assert_eq!(
        report.deleted,
        [
            ("ret.log".to_owned(), 5),
            ("ret.job".to_owned(), 0),
            ("ret.fail".to_owned(), 2)
        ]
    );
    assert_eq!(report.dead_letters, 3);
    let letters = bus.dead_letters().list(&DeadLetterFilter::all());
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].payload["n"], 3, "the newest letter stays");

    // Once the handler has them, they go.
    bus.recover().await.unwrap();
    assert_eq!(JOBS.load(Ordering::SeqCst), 5);
    let report = bus.enforce_retention().await.unwrap();
    assert_eq!(report.deleted[1], ("ret.job".to_owned(), 5));
    assert!(names(store, "ret.job").is_empty());
    assert!(!report.held_back);

    // Each run is an audit record; the store reopens (its high-water mark holds: the newest
    // event is never deleted).
    let runs = store
        .query(&StoreQuery::all().name("events.audit.retention").unwrap())
        .unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].payload_json().unwrap()["dead_letters"], 3);
    store.flush().await.unwrap();
    drop(bus);
    let reopened = SqliteStore::open(&path).unwrap();
    assert_eq!(names(&reopened, "ret.log"), [5]);
}

#[tokio::test(start_paused = true)]
async fn the_background_task_enforces_the_rules_on_its_timer() {
    let bus = Bus::builder()
        .no_handlers()
        .store(events::store::MemoryStore::new())
        .retention(
            Retention::new()
                .keep("ret.log", Keep::count(1))
                .every(Duration::from_secs(60)),
        )
        .build()
        .unwrap();
    for n in 0..3 {
        bus.publish(Log { n }).await.unwrap();
    }
    // A marker after them: the newest event of the log is never deleted.
    bus.publish(Job { n: 9 }).await.unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(names(bus.store().unwrap(), "ret.log"), [0, 1, 2], "not yet");
    tokio::time::sleep(Duration::from_secs(31)).await;
    events_tests::until("the run", || names(bus.store().unwrap(), "ret.log") == [2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_deletes_by_count_and_keeps_the_newest() {
    use events::postgres::{PostgresOptions, PostgresStore};
    let config = std::env::var("EVENTS_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned());
    let schema = format!("events_retention_{}", std::process::id());
    let store = PostgresStore::connect(&config, PostgresOptions::new().schema(&schema).temporary())
        .unwrap();
    let bus = Bus::builder()
        .no_handlers()
        .store(store)
        .retention(Retention::new().keep("ret.log", Keep::count(2)))
        .build()
        .unwrap();
    for n in 0..5 {
        bus.publish(Log { n }).await.unwrap();
    }
    bus.publish(Job { n: 9 }).await.unwrap();
    let report = bus.enforce_retention().await.unwrap();
    assert_eq!(report.deleted, [("ret.log".to_owned(), 3)]);
    assert_eq!(names(bus.store().unwrap(), "ret.log"), [3, 4]);
    // The newest event of the log stays whatever the rule.
    let bus2 = Bus::builder()
        .no_handlers()
        .store(PostgresStore::connect(&config, PostgresOptions::new().schema(&schema)).unwrap())
        .retention(Retention::new().keep("ret.job", Keep::count(0)))
        .build()
        .unwrap();
    bus2.enforce_retention().await.unwrap();
    assert_eq!(names(bus2.store().unwrap(), "ret.job"), [9]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_waiting_in_the_outbox_are_kept() {
    use events::transport::Loopback;
    let dir = tempfile::tempdir().unwrap();
    let broker = Loopback::new();
    broker.set_offline(true);
    let bus = Bus::builder()
        .no_handlers()
        .store(SqliteStore::open(dir.path().join("outbox.db")).unwrap())
        .transport(broker.clone())
        .outbox(events::outbox::OutboxOptions::new())
        .retention(Retention::new().keep("ret.log", Keep::count(0)))
        .build()
        .unwrap();
    for n in 0..3 {
        bus.publish(Log { n }).await.unwrap();
    }
    bus.publish(Job { n: 9 }).await.unwrap();
    let report = bus.enforce_retention().await.unwrap();
    assert_eq!(
        report.deleted,
        [("ret.log".to_owned(), 0)],
        "the broker has none yet"
    );
    assert!(report.held_back);
    broker.set_offline(false);
    events_tests::until("the outbox drained", || broker.len() == 4).await;
    events_tests::until("the backlog gone", || {
        bus.outbox().unwrap().unwrap().backlog.events == 0
    })
    .await;
    let report = bus.enforce_retention().await.unwrap();
    assert_eq!(report.deleted, [("ret.log".to_owned(), 3)]);
}
