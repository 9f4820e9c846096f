//! Context travels: the `tracing` span tree (publish -> handler -> child publish -> handler,
//! also across the background queue), and correlation/causation for events published
//! without the handler's `Context` (through the queue, and across `events::spawn`). Its own
//! binary, with one global subscriber (tracing caches callsite interest per process).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use events::{Bus, Event, EventId, handler};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// One span: its name, its `event` and `handler` fields, and the same of its parent.
#[derive(Debug, Clone, Default, PartialEq)]
struct SpanRecord {
    name: String,
    event: String,
    handler: String,
    parent: Option<Box<SpanRecord>>,
}

#[derive(Default)]
struct Fields(SpanRecord);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "event" => self.0.event = value.to_owned(),
            "handler" => self.0.handler = value.rsplit("::").next().unwrap_or(value).to_owned(),
            _ => {}
        }
    }
    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

#[derive(Clone, Default)]
struct SpanTree(Arc<Mutex<Vec<SpanRecord>>>);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for SpanTree {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: LayerContext<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let mut record = fields.0;
        record.name = attrs.metadata().name().to_owned();
        let span = ctx.span(id).expect("new span");
        record.parent = span
            .parent()
            .and_then(|p| p.extensions().get::<SpanRecord>().cloned())
            .map(Box::new);
        span.extensions_mut().insert(record.clone());
        self.0.lock().unwrap().push(record);
    }
}

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Root;
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Child;
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Queued;
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Gen1;
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Gen2;
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Gen3;
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Spawner;
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Spawned;

static BUS: OnceLock<Bus> = OnceLock::new();
/// `(event, id, correlation id, causation id)` per handled event.
type Seen = (&'static str, EventId, EventId, Option<EventId>);
static SEEN: Mutex<Vec<Seen>> = Mutex::new(Vec::new());

fn bus() -> &'static Bus {
    BUS.get_or_init(|| Bus::builder().workers(2).build().unwrap())
}

fn seen(ctx: &events::Context) {
    let m = ctx.meta();
    SEEN.lock()
        .unwrap()
        .push((m.name(), m.id(), m.correlation_id(), m.causation_id()));
}

// Handlers publish through the global bus, not through their `Context`.
#[handler]
async fn on_root(_: &Root) {
    bus().publish(Child).await.unwrap();
}
#[handler]
fn on_child(_: &Child) {}
#[handler]
fn on_queued(_: &Queued) {}

#[handler]
async fn on_gen1(_: &Gen1, ctx: &events::Context) {
    seen(ctx);
    bus().emit(Gen2).await.unwrap();
}
#[handler]
fn on_gen2(_: &Gen2, ctx: &events::Context) {
    seen(ctx);
    bus().try_emit(Gen3).unwrap();
}
#[handler]
fn on_gen3(_: &Gen3, ctx: &events::Context) {
    seen(ctx);
}

#[handler]
async fn on_spawner(_: &Spawner, ctx: &events::Context) {
    seen(ctx);
    events::spawn(async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        bus().publish(Spawned).await.unwrap();
    });
}
#[handler]
fn on_spawned(_: &Spawned, ctx: &events::Context) {
    seen(ctx);
}

async fn wait_for(name: &str) {
    for _ in 0..5_000 {
        if SEEN.lock().unwrap().iter().any(|s| s.0 == name) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("{name} never handled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_travels_through_spans_the_queue_and_spawned_tasks() {
    let tree = SpanTree::default();
    let subscriber = tracing_subscriber::registry()
        .with(tree.clone())
        .with(tracing_subscriber::filter::LevelFilter::DEBUG);
    tracing::subscriber::set_global_default(subscriber).unwrap();

    // 1. Span tree, in process and across the queue.
    bus().publish(Root).await.unwrap();
    bus().emit(Queued).await.unwrap();
    for _ in 0..5_000 {
        if tree
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.handler == "on_queued")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let spans = tree.0.lock().unwrap().clone();
    let find = |name: &str, event: &str| {
        spans
            .iter()
            .find(|s| s.name == name && s.event == event)
            .unwrap_or_else(|| panic!("no {name} span for {event}: {spans:#?}"))
            .clone()
    };
    let publish_root = find("publish", "root");
    assert_eq!(publish_root.parent, None);
    let handler_root = find("handler", "root");
    assert_eq!(handler_root.handler, "on_root");
    assert_eq!(
        handler_root
            .parent
            .as_deref()
            .map(|p| (&*p.name, &*p.event)),
        Some(("publish", "root"))
    );
    let publish_child = find("publish", "child");
    assert_eq!(
        publish_child
            .parent
            .as_deref()
            .map(|p| (&*p.name, &*p.handler)),
        Some(("handler", "on_root")),
        "a child's publish span is inside the handler that published it"
    );
    let handler_child = find("handler", "child");
    assert_eq!(
        handler_child
            .parent
            .as_deref()
            .map(|p| (&*p.name, &*p.event)),
        Some(("publish", "child"))
    );
    let handler_queued = find("handler", "queued");
    assert_eq!(
        handler_queued
            .parent
            .as_deref()
            .map(|p| (&*p.name, &*p.event)),
        Some(("publish", "queued")),
        "a worker's handler span is a child of the emit's span"
    );

    // 2. Three generations through the queue, published without the Context.
    bus().publish(Gen1).await.unwrap();
    wait_for("gen3").await;
    // 3. Across events::spawn.
    bus().publish(Spawner).await.unwrap();
    wait_for("spawned").await;

    let seen = SEEN.lock().unwrap().clone();
    let get = |name: &str| *seen.iter().find(|s| s.0 == name).unwrap();
    let (g1, g2, g3) = (get("gen1"), get("gen2"), get("gen3"));
    assert_eq!((g1.2, g1.3), (g1.1, None), "gen1 is a root");
    assert_eq!((g2.2, g2.3), (g1.1, Some(g1.1)));
    assert_eq!((g3.2, g3.3), (g1.1, Some(g2.1)));
    let (spawner, spawned) = (get("spawner"), get("spawned"));
    assert_eq!((spawned.2, spawned.3), (spawner.1, Some(spawner.1)));
}
