//! Observers: what they are told, the built-in error collector and metrics, and the
//! `metrics` facade.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use events::observe::{ErrorCollector, Metrics, MetricsFacade, Observer};
use events::{Bus, Event, HandlerError, Meta, Outcome, PublishError, PublishOptions, handler};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Order(u32);

#[handler(priority = 2)]
fn ok_handler(_: &Order) {}

#[handler(priority = 1)]
fn failing_handler(ev: &Order) -> Result<(), HandlerError> {
    if ev.0 % 2 == 0 {
        Err(HandlerError::permanent(format!("order {} rejected", ev.0)))
    } else {
        Ok(())
    }
}

#[handler]
async fn panicking_handler(ev: &Order) {
    if ev.0 == 3 {
        panic!("order 3 blew up");
    }
}

/// Writes down every call.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Observer for Recorder {
    fn published(&self, meta: &Meta) {
        self.0
            .lock()
            .unwrap()
            .push(format!("published {}", meta.name()));
    }
    fn delivered(&self, meta: &Meta, handler: &str, elapsed: Duration) {
        assert!(elapsed < Duration::from_secs(10));
        self.0
            .lock()
            .unwrap()
            .push(format!("delivered {} {}", meta.name(), short(handler)));
    }
    fn failed(&self, meta: &Meta, handler: &str, outcome: &Outcome, _: Duration) {
        self.0.lock().unwrap().push(format!(
            "failed {} {} {outcome}",
            meta.name(),
            short(handler)
        ));
    }
    fn expired(&self, meta: &Meta) {
        self.0
            .lock()
            .unwrap()
            .push(format!("expired {}", meta.name()));
    }
    fn rejected(&self, event: &'static str, error: &PublishError) {
        self.0
            .lock()
            .unwrap()
            .push(format!("rejected {event}: {error}"));
    }
}

fn short(handler: &str) -> &str {
    handler.rsplit("::").next().unwrap_or(handler)
}

#[tokio::test]
async fn observers_are_told_every_lifecycle_step() {
    let rec = Recorder::default();
    let bus = Bus::builder()
        .observer(rec.clone())
        .queue_capacity(1)
        .workers(1)
        .build()
        .unwrap();
    bus.publish(Order(2)).await.unwrap();
    bus.publish(Order(3)).await.unwrap();
    bus.disable();
    let _ = bus.publish(Order(4)).await;
    bus.enable();
    let past = std::time::SystemTime::now() - Duration::from_secs(1);
    let _ = bus
        .emit_with(Order(5), PublishOptions::new().expires_at(past))
        .await;
    assert_eq!(
        *rec.0.lock().unwrap(),
        [
            "published order",
            "delivered order ok_handler",
            "failed order failing_handler failed: order 2 rejected",
            "delivered order panicking_handler",
            "published order",
            "delivered order ok_handler",
            "delivered order failing_handler",
            "failed order panicking_handler panicked: order 3 blew up",
            "rejected order: event `order` was refused: the bus is disabled; `Bus::enable` takes events again",
            "rejected order: event `order` had already expired when it was published",
        ]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn observers_hear_of_queued_events_expiring_and_of_a_full_queue() {
    let rec = Recorder::default();
    let bus = Bus::builder()
        .observer(rec.clone())
        .queue_capacity(1)
        .workers(1)
        .build()
        .unwrap();
    bus.emit_with(
        Order(1),
        PublishOptions::new().ttl(Duration::from_millis(1)),
    )
    .await
    .unwrap();
    assert!(bus.try_emit(Order(9)).is_err(), "the queue holds one event");
    std::thread::sleep(Duration::from_millis(5));
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        *rec.0.lock().unwrap(),
        [
            "published order",
            "rejected order: event `order` was not queued: the queue is full (1 events); emit with `.emit(..).await` to wait for room, or raise `BusBuilder::queue_capacity`",
            "expired order",
        ]
    );
}

#[test]
fn the_error_collector_keeps_the_most_recent_failures() {
    let errors = ErrorCollector::new(2);
    let bus = Bus::builder().observer(errors.clone()).build().unwrap();
    for n in [2, 4, 6] {
        bus.publish_blocking(Order(n)).unwrap();
    }
    let kept = errors.errors();
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0].message, "failed: order 4 rejected");
    assert_eq!(kept[1].message, "failed: order 6 rejected");
    assert_eq!(kept[1].event, "order");
    assert!(kept[1].handler.ends_with("failing_handler"));
    errors.clear();
    assert!(errors.errors().is_empty());
}

#[tokio::test]
async fn metrics_count_per_event_and_handler_with_latency() {
    let metrics = Metrics::new();
    let bus = Bus::builder().observer(metrics.clone()).build().unwrap();
    for n in 1..=4 {
        bus.publish(Order(n)).await.unwrap();
    }
    bus.disable();
    let _ = bus.publish(Order(5)).await;
    let snap = metrics.snapshot(&bus);
    let order = &snap.events["order"];
    assert_eq!((order.published, order.rejected, order.expired), (4, 1, 0));
    // 3 handlers x 4 events: order 2 and 4 fail in failing_handler, order 3 panics.
    assert_eq!((order.delivered, order.failed), (9, 3));
    let failing = snap
        .handlers
        .iter()
        .find(|(k, _)| k.ends_with("failing_handler"))
        .unwrap()
        .1;
    assert_eq!((failing.calls, failing.failures), (4, 2));
    assert_eq!(failing.latency.count(), 4);
    assert!(failing.latency.quantile(0.5).is_some());
    assert_eq!(snap.queue_depth, 0);
}

#[test]
fn the_metrics_facade_feeds_any_recorder() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let bus = Bus::builder().observer(MetricsFacade).build().unwrap();
    metrics::with_local_recorder(&recorder, || {
        bus.publish_blocking(Order(1)).unwrap();
        bus.publish_blocking(Order(2)).unwrap();
    });
    type Labels = Vec<(String, String)>;
    let values: Vec<(String, Labels, DebugValue)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let labels = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), short(l.value()).to_owned()))
                .collect();
            (key.key().name().to_owned(), labels, value)
        })
        .collect();
    let counter = |name: &str, handler: Option<&str>| {
        values
            .iter()
            .find(|(n, labels, _)| {
                n == name
                    && handler.is_none_or(|h| labels.iter().any(|(k, v)| k == "handler" && v == h))
            })
            .map(|(_, _, v)| match v {
                DebugValue::Counter(c) => *c,
                other => panic!("{other:?}"),
            })
    };
    assert_eq!(counter("events_published_total", None), Some(2));
    assert_eq!(
        counter("events_delivered_total", Some("ok_handler")),
        Some(2)
    );
    assert_eq!(
        counter("events_failed_total", Some("failing_handler")),
        Some(1)
    );
    let histogram = values
        .iter()
        .find(|(n, _, _)| n == "events_handler_seconds")
        .unwrap();
    assert!(matches!(&histogram.2, DebugValue::Histogram(v) if !v.is_empty()));
}
