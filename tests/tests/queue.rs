//! Background emission: bounded queue, backpressure, refusal when full, priority order,
//! context through the queue.

#![allow(unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use events::{Bus, Context, Event, EventId, PublishError, State, handler};

#[derive(Default)]
struct Seen {
    count: AtomicUsize,
    order: Mutex<Vec<String>>,
    max_queue: AtomicUsize,
    lineage: Mutex<Vec<(EventId, EventId, Option<EventId>)>>,
}

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Job(u32);

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(priority = 10)]
struct Urgent(u32);

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(priority = 5)]
struct Normal(u32);

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Slow(u32);

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Parent;
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Kid;
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct GrandKid;

#[handler]
fn on_job(ev: &Job, seen: State<Seen>) {
    // Recorded before counted: a test that waits for the count then reads the order sees
    // every event (the other way round, the last one could still be on its way).
    seen.order.lock().unwrap().push(format!("job {}", ev.0));
    seen.count.fetch_add(1, Ordering::SeqCst);
}

#[handler]
fn on_urgent(ev: &Urgent, seen: State<Seen>) {
    seen.count.fetch_add(1, Ordering::SeqCst);
    seen.order.lock().unwrap().push(format!("urgent {}", ev.0));
}

#[handler]
fn on_normal(ev: &Normal, seen: State<Seen>) {
    seen.count.fetch_add(1, Ordering::SeqCst);
    seen.order.lock().unwrap().push(format!("normal {}", ev.0));
}

#[handler]
async fn on_slow(_: &Slow, ctx: &Context, seen: State<Seen>) {
    seen.max_queue
        .fetch_max(ctx.bus().queue_len(), Ordering::SeqCst);
    tokio::time::sleep(Duration::from_micros(200)).await;
    seen.count.fetch_add(1, Ordering::SeqCst);
}

fn lineage(ctx: &Context, seen: &Seen) {
    let m = ctx.meta();
    seen.lineage
        .lock()
        .unwrap()
        .push((m.id(), m.correlation_id(), m.causation_id()));
}

#[handler]
async fn on_parent(
    _: &Parent,
    ctx: &Context,
    seen: State<Seen>,
) -> Result<(), events::HandlerError> {
    lineage(ctx, &seen);
    ctx.emit(Kid).await?;
    Ok(())
}

#[handler]
fn on_kid(_: &Kid, ctx: &Context, seen: State<Seen>) -> Result<(), events::HandlerError> {
    lineage(ctx, &seen);
    ctx.try_emit(GrandKid)?;
    Ok(())
}

#[handler]
fn on_grandkid(_: &GrandKid, ctx: &Context, seen: State<Seen>) {
    lineage(ctx, &seen);
    seen.count.fetch_add(1, Ordering::SeqCst);
}

fn bus(capacity: usize, workers: usize) -> (Bus, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let bus = Bus::builder()
        .shared_state(seen.clone())
        .queue_capacity(capacity)
        .workers(workers)
        .build()
        .unwrap();
    (bus, seen)
}

/// Waits (bounded) until `n` events were handled.
async fn handled(seen: &Seen, n: usize) {
    for _ in 0..10_000 {
        if seen.count.load(Ordering::SeqCst) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!(
        "only {} of {n} events handled",
        seen.count.load(Ordering::SeqCst)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_emitted_event_is_handled() {
    let (bus, seen) = bus(64, 2);
    let mut ids = Vec::new();
    for i in 0..10_000 {
        ids.push(bus.emit(Job(i)).await.unwrap());
    }
    handled(&seen, 10_000).await;
    let mut order = seen.order.lock().unwrap().clone();
    order.sort();
    order.dedup();
    assert_eq!(order.len(), 10_000, "each event exactly once");
    ids.dedup();
    assert_eq!(ids.len(), 10_000);
}

#[tokio::test(flavor = "current_thread")]
async fn try_emit_refuses_when_the_queue_is_full_and_nothing_is_lost() {
    // On a current-thread runtime the workers cannot run until this task yields.
    let (bus, seen) = bus(4, 1);
    for i in 0..4 {
        bus.try_emit(Job(i)).unwrap();
    }
    assert_eq!(bus.queue_len(), 4);
    match bus.try_emit(Job(4)) {
        Err(PublishError::QueueFull {
            name: "job",
            capacity: 4,
        }) => {}
        other => panic!("{other:?}"),
    }
    let e = bus.try_emit(Job(4)).unwrap_err();
    assert!(
        e.to_string().contains("the queue is full (4 events)"),
        "{e}"
    );
    handled(&seen, 4).await;
    assert_eq!(bus.queue_len(), 0);
    assert_eq!(
        *seen.order.lock().unwrap(),
        ["job 0", "job 1", "job 2", "job 3"]
    );
    bus.try_emit(Job(5))
        .expect("room again once workers took the events");
    handled(&seen, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_producer_waits_for_room_and_the_queue_stays_bounded() {
    let (bus, seen) = bus(8, 2);
    let producer = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                bus.emit(Slow(i)).await.unwrap();
                assert!(bus.queue_len() <= 8);
            }
        })
    };
    producer.await.unwrap();
    handled(&seen, 300).await;
    let max = seen.max_queue.load(Ordering::SeqCst);
    assert!(max <= 8, "queue grew to {max}");
    assert!(max >= 1, "the producer was faster than the handlers");
}

#[tokio::test(flavor = "current_thread")]
async fn queued_events_are_taken_highest_priority_first_fifo_within_a_priority() {
    let (bus, seen) = bus(100, 1);
    for i in 0..3 {
        bus.try_emit(Job(i)).unwrap();
        bus.try_emit(Normal(i)).unwrap();
        bus.try_emit(Urgent(i)).unwrap();
    }
    handled(&seen, 9).await;
    assert_eq!(
        *seen.order.lock().unwrap(),
        [
            "urgent 0", "urgent 1", "urgent 2", "normal 0", "normal 1", "normal 2", "job 0",
            "job 1", "job 2"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlation_and_causation_follow_events_through_the_queue() {
    let (bus, seen) = bus(16, 2);
    let root = bus.emit(Parent).await.unwrap();
    handled(&seen, 1).await;
    let l = seen.lineage.lock().unwrap().clone();
    assert_eq!(l.len(), 3);
    let (parent, kid, grandkid) = (l[0], l[1], l[2]);
    assert_eq!(parent, (root, root, None));
    assert_eq!((kid.1, kid.2), (root, Some(root)));
    assert_eq!((grandkid.1, grandkid.2), (root, Some(kid.0)));
}

#[test]
fn emitting_outside_a_runtime_is_a_clear_error() {
    let (bus, _) = bus(4, 1);
    let e = bus.try_emit(Job(1)).unwrap_err();
    assert!(matches!(e, PublishError::NoRuntime));
    assert_eq!(
        e.to_string(),
        "`emit` needs a tokio runtime for its workers: call it from inside one"
    );
    assert_eq!(bus.queue_len(), 0, "a refused event takes no place");
}

#[tokio::test(flavor = "current_thread")]
async fn a_priority_set_per_event_is_honoured_exactly_even_outside_the_registry() {
    use events::PublishOptions;
    let (bus, seen) = bus(100, 1);
    bus.try_emit(Job(0)).unwrap(); // type priority 0
    bus.try_emit(Normal(5)).unwrap(); // type priority 5
    bus.emit_with(Job(7), PublishOptions::new().priority(7))
        .await
        .unwrap(); // no such level
    bus.try_emit(Urgent(10)).unwrap(); // type priority 10
    bus.emit_with(Job(3), PublishOptions::new().priority(-3))
        .await
        .unwrap();
    bus.emit_with(Job(70), PublishOptions::new().priority(7))
        .await
        .unwrap();
    bus.emit_with(Normal(50), PublishOptions::new().priority(0))
        .await
        .unwrap();
    handled(&seen, 7).await;
    assert_eq!(
        *seen.order.lock().unwrap(),
        [
            "urgent 10",
            "job 7",
            "job 70",
            "normal 5",
            "job 0",
            "normal 50",
            "job 3"
        ]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_event_that_expires_in_the_queue_is_not_delivered() {
    use events::PublishOptions;
    let (bus, seen) = bus(100, 1);
    bus.emit_with(Job(1), PublishOptions::new().ttl(Duration::from_millis(1)))
        .await
        .unwrap();
    bus.emit_with(Job(2), PublishOptions::new().ttl(Duration::from_secs(3600)))
        .await
        .unwrap();
    // The worker cannot run before this task yields; let the first one expire meanwhile.
    std::thread::sleep(Duration::from_millis(5));
    handled(&seen, 1).await;
    tokio::task::yield_now().await;
    assert_eq!(*seen.order.lock().unwrap(), ["job 2"]);
}

#[tokio::test]
async fn publishing_an_already_expired_event_is_refused() {
    use events::PublishOptions;
    let (bus, seen) = bus(4, 1);
    let past = std::time::SystemTime::now() - Duration::from_secs(1);
    let e = bus
        .publish_with(Job(1), PublishOptions::new().expires_at(past))
        .await
        .unwrap_err();
    assert!(matches!(e, PublishError::Expired { name: "job" }));
    assert_eq!(
        e.to_string(),
        "event `job` had already expired when it was published"
    );
    let e = bus
        .emit_with(Job(1), PublishOptions::new().expires_at(past))
        .await
        .unwrap_err();
    assert!(matches!(e, PublishError::Expired { .. }));
    assert_eq!(seen.count.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_give_one_result_per_event_in_order() {
    let (bus, seen) = bus(8, 1);
    let receipts = bus.publish_batch((0..3).map(Job)).await;
    assert_eq!(receipts.len(), 3);
    assert!(
        receipts
            .iter()
            .all(|r| r.as_ref().is_ok_and(|r| r.delivered() == 1))
    );
    let ids: Vec<EventId> = bus
        .emit_batch((3..103).map(Job))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        ids.len(),
        100,
        "a batch larger than the queue waits for room"
    );
    handled(&seen, 103).await;
    bus.disable();
    let refused = bus.emit_batch([Job(200), Job(201)]).await;
    assert!(
        refused
            .iter()
            .all(|r| matches!(r, Err(PublishError::Disabled { .. })))
    );
}
