//! Appends from two processes at once, sixteen tasks each, while this process follows the
//! log by sequence: every read sees an unbroken run of sequences (an event that commits
//! later never has a lower sequence than one already read), and nothing is lost.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use events::EventId;
use events::store::{EventStore, StoreQuery, StoredEvent};
use events_postgres::{PostgresOptions, PostgresStore};

const PER_PROCESS: u64 = 1_500;
const TASKS: u64 = 16;

fn config() -> String {
    std::env::var("EVENTS_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned())
}

/// The child's part: run only when the parent starts this test binary with
/// `EVENTS_PG_WRITER=<schema>`.
#[test]
fn writer_child() {
    let Ok(schema) = std::env::var("EVENTS_PG_WRITER") else {
        return;
    };
    let store = std::sync::Arc::new(
        PostgresStore::connect(&config(), PostgresOptions::new().schema(schema)).unwrap(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for n in (t..PER_PROCESS).step_by(TASKS as usize) {
                    let mut e = StoredEvent::new(EventId::new(), "load.item");
                    e.payload = format!("{{\"n\":{n}}}");
                    store.append(e).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn a_reader_following_the_log_never_skips_an_event() {
    if std::env::var("EVENTS_PG_WRITER").is_ok() {
        return;
    }
    let schema = format!("events_order_{}", std::process::id());
    // Made (and migrated) first, so the writers start at once; dropped at the end.
    let reader = PostgresStore::connect(
        &config(),
        PostgresOptions::new().schema(&schema).temporary(),
    )
    .unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "writer_child", "--nocapture", "--test-threads=1"])
                .env("EVENTS_PG_WRITER", &schema)
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();

    let total = 2 * PER_PROCESS;
    let mut last = 0u64;
    let mut reads = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while last < total {
        assert!(
            Instant::now() < deadline,
            "only {last} of {total} events arrived"
        );
        let page = reader
            .query(&StoreQuery::all().from_sequence(last + 1).limit(500))
            .unwrap();
        for e in &page {
            assert_eq!(
                e.sequence,
                last + 1,
                "read {} right after {last}: an event committed out of order would be skipped",
                e.sequence
            );
            last = e.sequence;
        }
        reads += 1;
        if page.is_empty() {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a writer failed");
    }
    let all = reader.query(&StoreQuery::all()).unwrap();
    assert_eq!(all.len() as u64, total);
    let ids: std::collections::HashSet<_> = all.iter().map(|e| e.id).collect();
    assert_eq!(ids.len() as u64, total, "every event once");
    eprintln!("{total} events from 2 processes, followed in {reads} reads");
}
