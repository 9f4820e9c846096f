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
    seen.count.fetch_add(1, Ordering::SeqCst);
    seen.order.lock().unwrap().push(format!("job {}", ev.0));
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
