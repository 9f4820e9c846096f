//! Trace context across processes on NATS: the receiving side's `receive` span carries the
//! publisher's W3C `traceparent` (trace id = the flow's correlation id), and the handler's
//! span is its child. Its own binary: one global `tracing` subscriber.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use events::nats::{Nats, NatsOptions};
use events::{Bus, Event, PublishOptions};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

#[derive(Event, Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "trace.ping")]
struct Ping {
    n: u64,
}

static HANDLED: Mutex<u32> = Mutex::new(0);

#[events::handler]
fn pong(_: &Ping) {
    *HANDLED.lock().unwrap() += 1;
}

/// `(span name, traceparent field, parent span's name)`.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<(String, String, String)>>>);

struct Traceparent(String);

impl Visit for Traceparent {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "traceparent" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: LayerContext<'_, S>,
    ) {
        let mut tp = Traceparent(String::new());
        attrs.record(&mut tp);
        let parent = ctx
            .span(id)
            .and_then(|s| s.parent().map(|p| p.name().to_owned()))
            .unwrap_or_default();
        self.0
            .lock()
            .unwrap()
            .push((attrs.metadata().name().to_owned(), tp.0, parent));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiving_handler_span_carries_the_publishers_trace() {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::DEBUG)
        .with(spans.clone());
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let server = events_tests::NatsServer::start();
    let nats = Nats::connect(&server.url(), NatsOptions::new("trace").memory_storage())
        .await
        .unwrap();
    let bus = Bus::builder()
        .scope(module_path!())
        .transport(nats)
        .build()
        .unwrap();
    let _consumers = bus.consume().await.unwrap();
    let flow = events::EventId::new();
    bus.publish_with(Ping { n: 1 }, PublishOptions::new().correlation_id(flow))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while *HANDLED.lock().unwrap() == 0 {
        assert!(Instant::now() < deadline, "not handled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(server);

    let spans = spans.0.lock().unwrap().clone();
    let receive = spans
        .iter()
        .find(|s| s.0 == "receive")
        .expect("a receive span");
    let trace_id = flow.as_uuid().simple().to_string();
    assert!(
        receive.1.starts_with(&format!("00-{trace_id}-")),
        "traceparent {} carries the flow's trace id {trace_id}",
        receive.1
    );
    assert!(
        spans.iter().any(|s| s.0 == "handler" && s.2 == "receive"),
        "the handler span is a child of the receive span: {spans:?}"
    );
}
