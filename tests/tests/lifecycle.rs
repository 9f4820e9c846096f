//! The bus's lifecycle: disable/enable, graceful shutdown with a deadline, refusals after it,
//! and waiting for room with a timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use events::{Bus, Event, PublishError, State, handler};

#[derive(Default)]
struct Handled(AtomicUsize);

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Work(u32);

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Quick;

/// Takes 10 ms of (tokio) time per event.
#[handler]
async fn slow(_: &Work, handled: State<Handled>) {
    tokio::time::sleep(Duration::from_millis(10)).await;
    handled.0.fetch_add(1, Ordering::SeqCst);
}

#[handler]
fn quick(_: &Quick, handled: State<Handled>) {
    handled.0.fetch_add(1, Ordering::SeqCst);
}

fn bus(capacity: usize) -> (Bus, Arc<Handled>) {
    let handled = Arc::new(Handled::default());
    let bus = Bus::builder()
        .shared_state(handled.clone())
        .queue_capacity(capacity)
        .workers(1)
        .build()
        .unwrap();
    (bus, handled)
}

#[tokio::test]
async fn a_disabled_bus_refuses_events_with_a_clear_error_and_takes_them_again_when_enabled() {
    let (bus, handled) = bus(16);
    assert!(bus.is_enabled());
    bus.disable();
    assert!(!bus.is_enabled());
    let refused = bus.publish(Quick).await.unwrap_err();
    assert!(matches!(refused, PublishError::Disabled { name: "quick" }));
    assert_eq!(
        refused.to_string(),
        "event `quick` was refused: the bus is disabled; `Bus::enable` takes events again"
    );
    assert!(matches!(
        bus.publish_blocking(Quick),
        Err(PublishError::Disabled { .. })
    ));
    assert!(matches!(
        bus.emit(Quick).await,
        Err(PublishError::Disabled { .. })
    ));
    assert!(matches!(
        bus.try_emit(Quick),
        Err(PublishError::Disabled { .. })
    ));
    assert_eq!(
        handled.0.load(Ordering::SeqCst),
        0,
        "nothing ran while disabled"
    );

    bus.enable();
    bus.publish(Quick).await.unwrap();
    assert_eq!(handled.0.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_the_queue_within_the_deadline() {
    let (bus, handled) = bus(64);
    for i in 0..20 {
        bus.emit(Work(i)).await.unwrap();
    }
    let report = bus.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.drained, 20);
    assert_eq!(handled.0.load(Ordering::SeqCst), 20);
}

#[tokio::test(start_paused = true)]
async fn shutdown_reports_what_the_deadline_left_unhandled() {
    let (bus, handled) = bus(64);
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(bus.emit(Work(i)).await.unwrap());
    }
    // 10 ms per event on one worker: about 5 events fit in 55 ms.
    let report = bus.shutdown(Duration::from_millis(55)).await;
    assert!(!report.is_complete());
    assert_eq!(
        report.drained + report.unprocessed.len() + report.still_running,
        20,
        "{report:?}"
    );
    assert!(report.drained >= 3 && report.drained <= 6, "{report:?}");
    assert!(report.unprocessed.iter().all(|u| u.name == "work"));
    // The unprocessed ones are the last ones emitted, in order.
    let tail: Vec<_> = ids[20 - report.unprocessed.len()..].to_vec();
    assert_eq!(
        report.unprocessed.iter().map(|u| u.id).collect::<Vec<_>>(),
        tail
    );
    // Handlers already running finish; nothing else runs.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        handled.0.load(Ordering::SeqCst),
        report.drained + report.still_running
    );
}

#[tokio::test]
async fn after_shutdown_every_way_in_is_closed() {
    let (bus, _) = bus(4);
    let report = bus.shutdown(Duration::from_millis(10)).await;
    assert!(report.is_complete());
    assert!(matches!(
        bus.publish(Quick).await,
        Err(PublishError::Closed)
    ));
    assert!(matches!(
        bus.publish_blocking(Quick),
        Err(PublishError::Closed)
    ));
    assert!(matches!(bus.emit(Quick).await, Err(PublishError::Closed)));
    assert!(matches!(bus.try_emit(Quick), Err(PublishError::Closed)));
    bus.enable();
    assert!(!bus.is_enabled(), "a shut-down bus stays shut");
    assert_eq!(
        PublishError::Closed.to_string(),
        "the bus was shut down and takes no more events"
    );
}

#[tokio::test(start_paused = true)]
async fn emit_timeout_waits_for_room_then_refuses() {
    let (bus, handled) = bus(2);
    bus.try_emit(Work(0)).unwrap();
    bus.try_emit(Work(1)).unwrap();
    // The worker has not run yet (it needs this task to yield), so the queue is full.
    match bus.emit_timeout(Work(2), Duration::from_millis(1)).await {
        // The worker may take both while this waits: then there is room.
        Ok(_) => {}
        Err(PublishError::QueueFull {
            name: "work",
            capacity: 2,
        }) => {}
        other => panic!("{other:?}"),
    }
    // With time to spare, room always comes.
    bus.emit_timeout(Work(3), Duration::from_secs(1))
        .await
        .unwrap();
    let report = bus.shutdown(Duration::from_secs(1)).await;
    assert!(report.is_complete());
    assert!(handled.0.load(Ordering::SeqCst) >= 3);
}

#[tokio::test(start_paused = true)]
async fn emit_timeout_refuses_when_no_room_comes() {
    // A queue that stays full: the worker is busy with a long handler.
    #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    struct Long;
    #[handler]
    async fn long(_: &Long) {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let (bus, _) = bus(1);
    bus.emit(Long).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await; // the worker takes it and blocks
    bus.emit(Long).await.unwrap(); // fills the one place
    let e = bus
        .emit_timeout(Long, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            PublishError::QueueFull {
                name: "long",
                capacity: 1
            }
        ),
        "{e:?}"
    );
}

mod follow_up {
    use super::*;
    use events::{Context, HandlerError};

    #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[event(name = "lifecycle.charge")]
    pub(crate) struct Charge;

    #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[event(name = "lifecycle.charged")]
    pub(crate) struct Charged;

    pub(crate) static CHARGED: AtomicUsize = AtomicUsize::new(0);

    /// Fails once; its retry publishes the follow-up event.
    #[handler(retry(max = 2, backoff = "fixed", base = "100ms", jitter = false))]
    async fn charge(_: &Charge, ctx: &Context) -> Result<(), HandlerError> {
        if ctx.attempt() == 1 {
            return Err(HandlerError::transient("gateway busy"));
        }
        ctx.publish(Charged).await?;
        Ok(())
    }

    #[handler]
    fn charged(_: &Charged) {
        CHARGED.fetch_add(1, Ordering::SeqCst);
    }
}

/// Issue 17: the retries `shutdown` waits for may publish their follow-up events: the flow
/// completes instead of ending dead-lettered with `Closed`. A new event is still refused.
#[tokio::test(start_paused = true)]
async fn shutdown_lets_the_retries_it_waits_for_publish_their_child_events() {
    let bus = Bus::builder()
        .scope("lifecycle::follow_up")
        .build()
        .unwrap();
    let receipt = bus.publish(follow_up::Charge).await.unwrap();
    assert_eq!(receipt.retrying().count(), 1);
    let report = bus.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(follow_up::CHARGED.load(Ordering::SeqCst), 1);
    assert!(
        bus.dead_letters()
            .list(&events::DeadLetterFilter::all())
            .is_empty()
    );
    assert!(matches!(
        bus.publish(follow_up::Charge).await,
        Err(PublishError::Closed)
    ));
}
