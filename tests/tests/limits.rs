//! `#[handler(concurrency = N)]` and `#[handler(timeout = "..")]`, on tokio's paused clock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use events::{Bus, Event, HandlerTimedOut, Outcome, handler};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Crunch;

/// The control's event: handlers of one event run one after another, so the control must
/// not share an event with the limited handler.
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct CrunchFree;

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Hang(u64);

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static MOST: AtomicUsize = AtomicUsize::new(0);
static RUNNING_FREE: AtomicUsize = AtomicUsize::new(0);
static MOST_FREE: AtomicUsize = AtomicUsize::new(0);

async fn busy(running: &AtomicUsize, most: &AtomicUsize) {
    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
    most.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(10)).await;
    running.fetch_sub(1, Ordering::SeqCst);
}

#[handler(concurrency = 2)]
async fn limited(_: &Crunch) {
    busy(&RUNNING, &MOST).await;
}

/// The control: same work, no limit.
#[handler]
async fn unlimited(_: &CrunchFree) {
    busy(&RUNNING_FREE, &MOST_FREE).await;
}

#[handler(timeout = "50ms")]
async fn sometimes_hangs(ev: &Hang) {
    tokio::time::sleep(Duration::from_millis(ev.0)).await;
}

#[tokio::test(start_paused = true)]
async fn a_concurrency_limit_holds_across_concurrent_publishes() {
    let bus = Bus::builder().build().unwrap();
    let info = bus
        .handlers()
        .iter()
        .find(|h| h.name().ends_with("::limited"))
        .unwrap();
    assert_eq!(info.concurrency(), Some(2));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let bus = bus.clone();
            tokio::spawn(async move {
                let (a, b) = tokio::join!(bus.publish(Crunch), bus.publish(CrunchFree));
                a.unwrap().is_ok() && b.unwrap().is_ok()
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap());
    }
    assert_eq!(MOST.load(Ordering::SeqCst), 2, "never more than 2 at once");
    assert!(
        MOST_FREE.load(Ordering::SeqCst) > 2,
        "the control ran more at once"
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_past_its_timeout_fails_transiently_and_others_are_unaffected() {
    let bus = Bus::builder().build().unwrap();
    let info = bus
        .handlers()
        .iter()
        .find(|h| h.name().ends_with("::sometimes_hangs"))
        .unwrap();
    assert_eq!(info.timeout(), Some(Duration::from_millis(50)));

    let ok = bus.publish(Hang(10)).await.unwrap();
    assert!(ok.is_ok());

    let slow = bus.publish(Hang(3_600_000)).await.unwrap();
    match slow.failures().next().map(|f| f.outcome) {
        Some(Outcome::Failed(e)) => {
            assert!(e.is_transient());
            assert_eq!(
                e.downcast_ref::<HandlerTimedOut>(),
                Some(&HandlerTimedOut {
                    after: Duration::from_millis(50)
                })
            );
            assert_eq!(e.to_string(), "handler timed out after 50ms");
        }
        other => panic!("{other:?}"),
    }
}
