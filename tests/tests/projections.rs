//! Projections: a durable handler rebuilt from the start of the log while events keep
//! coming (each delivered exactly once across the switch to live), with progress, and how
//! far each durable handler is behind.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use events::store::{EventStore, SqliteStore};
use events::{Bus, Event, RebuildError, handler};

#[derive(Debug, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "projections.sale")]
struct Sale {
    n: u64,
}

/// What the projection saw: how many times each sale.
static SEEN: Mutex<BTreeMap<u64, u32>> = Mutex::new(BTreeMap::new());
/// While set, the projection is slow (so that a rebuild overlaps live publishing).
static SLOW: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[handler(durable, name = "projections.sales_by_n")]
fn sales(e: &Sale) {
    *SEEN.lock().unwrap().entry(e.n).or_default() += 1;
    if SLOW.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// What the projection saw of the first test's sales (the other test's are above 10,000).
fn seen() -> BTreeMap<u64, u32> {
    SEEN.lock()
        .unwrap()
        .range(..10_000)
        .map(|(n, c)| (*n, *c))
        .collect()
}

fn bus(store: impl EventStore) -> Bus {
    Bus::builder()
        .scope("projections")
        .store(store)
        .build()
        .unwrap()
}

// One test: the projection's record is process-wide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_replays_history_then_switches_to_live_without_gap_or_double() {
    let dir = tempfile::tempdir().unwrap();
    let bus = bus(SqliteStore::open(dir.path().join("e.db")).unwrap());
    for n in 1..=1500 {
        bus.publish(Sale { n }).await.unwrap();
    }
    assert_eq!(seen().len(), 1500);
    // Delivery records go to the store's writer after the handler ran.
    bus.store().unwrap().flush().await.unwrap();
    let lag = bus.lag().unwrap();
    assert_eq!(lag.len(), 1);
    assert_eq!(
        (lag[0].handler.as_str(), lag[0].event, lag[0].behind),
        ("projections.sales_by_n", "projections.sale", 0)
    );

    // Rebuilds while another task keeps publishing: three rounds, since the switch to live
    // is a race to win every time.
    let mut published = 1500;
    for _ in 0..3 {
        SLOW.store(true, std::sync::atomic::Ordering::Relaxed);
        let publisher = {
            let bus = bus.clone();
            let from = published + 1;
            tokio::spawn(async move {
                for n in from..from + 500 {
                    bus.publish(Sale { n }).await.unwrap();
                }
            })
        };
        published += 500;
        let mut last = None;
        let mut calls = 0;
        let report = bus
            .rebuild("projections.sales_by_n")
            .reset(|| SEEN.lock().unwrap().clear())
            .on_progress(|p| {
                calls += 1;
                last = Some(p);
            })
            .await
            .unwrap();
        publisher.await.unwrap();
        SLOW.store(false, std::sync::atomic::Ordering::Relaxed);
        let seen = seen();
        let twice: Vec<_> = seen.iter().filter(|(_, c)| **c != 1).collect();
        assert!(twice.is_empty(), "delivered more than once: {twice:?}");
        let missing: Vec<u64> = (1..=published).filter(|n| !seen.contains_key(n)).collect();
        assert!(
            missing.is_empty(),
            "never delivered: {missing:?} ({report:?})"
        );
        assert!(report.events >= published - 500, "{report:?}");
        let last = last.unwrap();
        assert_eq!(calls, report.events);
        assert_eq!(last.done, report.events);
        assert!(last.total >= last.done);
    }
    // Nothing behind, and a second rebuild starts from nothing again.
    bus.store().unwrap().flush().await.unwrap();
    assert_eq!(bus.lag().unwrap()[0].behind, 0);
    assert!(!bus.lag().unwrap()[0].rebuilding);
    let again = bus
        .rebuild("projections.sales_by_n")
        .reset(|| SEEN.lock().unwrap().clear())
        .await
        .unwrap();
    assert_eq!(again.events, published);
    assert!(seen().values().all(|c| *c == 1));
    assert_eq!(seen().len() as u64, published);
    assert!(matches!(
        bus.rebuild("projections.nobody").await,
        Err(RebuildError::UnknownHandler(_))
    ));
}

#[tokio::test]
async fn lag_counts_what_a_durable_handler_has_not_finished() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.db");
    {
        // Published by a bus without the handler: nothing delivered.
        let other = Bus::builder()
            .no_handlers()
            .store(SqliteStore::open(&path).unwrap())
            .build()
            .unwrap();
        for n in 1..=7 {
            other.publish(Sale { n: 10_000 + n }).await.unwrap();
        }
    }
    let bus = bus(SqliteStore::open(&path).unwrap());
    let lag = &bus.lag().unwrap()[0];
    assert_eq!(lag.behind, 7);
    assert!(lag.oldest.is_some() && lag.age() < Duration::from_secs(60));
    bus.recover().await.unwrap();
    let lag = &bus.lag().unwrap()[0];
    assert_eq!((lag.behind, lag.oldest), (0, None));
}
