//! Pausing a durable handler (`Bus::pause`) and resuming it (`Bus::resume`): its live
//! events wait in the store, and a resume delivers them before handing it back to live
//! publishing.

use std::sync::Mutex;

use events::store::SqliteStore;
use events::{Bus, Event, RebuildError, handler};

#[derive(Debug, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "pausing.refund")]
struct Refunded {
    n: u64,
}

/// What the refunds projection saw, in order.
static REFUNDS: Mutex<Vec<u64>> = Mutex::new(Vec::new());

#[handler(durable, name = "pausing.refunds")]
fn refunds(e: &Refunded) {
    REFUNDS.lock().unwrap().push(e.n);
}

/// A paused durable handler takes no live event; they wait in the store (its lag), and a
/// resume delivers them, then hands it back to live publishing: every event exactly once,
/// also those published while the resume runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_handler_catches_up_on_resume_without_gap_or_double() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::builder()
        .handler("pausing.refunds")
        .store(SqliteStore::open(dir.path().join("e.db")).unwrap())
        .build()
        .unwrap();
    for n in 1..=10 {
        bus.publish(Refunded { n }).await.unwrap();
    }
    bus.pause("pausing.refunds").unwrap();
    assert!(bus.is_paused("pausing.refunds"));
    for n in 11..=20 {
        bus.publish(Refunded { n }).await.unwrap();
    }
    assert_eq!(*REFUNDS.lock().unwrap(), (1..=10).collect::<Vec<_>>());
    // Recovery leaves a paused handler's backlog to its resume (and does not count it as
    // delivered).
    let recovery = bus.recover().await.unwrap();
    assert_eq!(
        (recovery.events, recovery.deliveries),
        (0, 0),
        "{recovery:?}"
    );
    assert_eq!(*REFUNDS.lock().unwrap(), (1..=10).collect::<Vec<_>>());
    bus.store().unwrap().flush().await.unwrap();
    let lag = bus.lag().unwrap();
    assert_eq!((lag[0].behind, lag[0].paused), (10, true));

    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for n in 21..=400 {
                bus.publish(Refunded { n }).await.unwrap();
            }
        })
    };
    let report = bus.resume("pausing.refunds").await.unwrap();
    assert!(report.events >= 10, "{report:?}");
    publisher.await.unwrap();
    let mut seen = REFUNDS.lock().unwrap().clone();
    // The backlog came first, oldest first.
    assert_eq!(seen[..20], (1..=20).collect::<Vec<_>>()[..]);
    seen.sort_unstable();
    assert_eq!(seen, (1..=400).collect::<Vec<_>>());
    assert!(!bus.is_paused("pausing.refunds"));
    bus.store().unwrap().flush().await.unwrap();
    assert_eq!(bus.lag().unwrap()[0].behind, 0);

    assert!(matches!(
        bus.pause("pausing.nobody"),
        Err(RebuildError::UnknownHandler(_))
    ));
    let bare = Bus::builder().handler("pausing.refunds").build().unwrap();
    assert!(matches!(
        bare.pause("pausing.refunds"),
        Err(RebuildError::NoStore)
    ));
}
