//! Request/response: `bus.request(query).await` answered by the query's one responder.

#![allow(unreachable_pub)]

use std::sync::Mutex;
use std::time::Duration;

use events::{
    AnyEvent, Bus, Context, Event, EventId, EventKind, PublishError, PublishOptions, Query,
    RequestError, State, handler,
};

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Price {
    cents: u64,
}

/// What does this SKU cost?
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(kind = "query", response = Price)]
struct GetPrice {
    sku: String,
}

struct Catalog;

impl Catalog {
    fn price(&self, sku: &str) -> Option<u64> {
        match sku {
            "tea" => Some(450),
            "cake" => Some(300),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no such sku: {0}")]
struct UnknownSku(String);

#[handler]
fn price(q: &GetPrice, catalog: State<Catalog>) -> Result<Price, UnknownSku> {
    if q.sku == "boom" {
        panic!("the price list is on fire");
    }
    catalog
        .price(&q.sku)
        .map(|cents| Price { cents })
        .ok_or_else(|| UnknownSku(q.sku.clone()))
}

/// Listeners of the query see each request after it is answered.
static HEARD: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[handler]
fn listen(q: &GetPrice) {
    HEARD
        .lock()
        .unwrap()
        .push(format!("price asked for {}", q.sku));
}

#[handler(pattern = "get.*")]
fn audit(ev: &AnyEvent) {
    HEARD.lock().unwrap().push(format!("audit {}", ev.name()));
}

/// An async responder, slow on demand, reporting its envelope.
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(response = Lineage)]
struct WhoAmI {
    sleep_ms: u64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Lineage {
    id: String,
    correlation_id: String,
    causation_id: Option<String>,
    tenant: Option<String>,
}

#[handler]
async fn who(q: &WhoAmI, ctx: &Context) -> Lineage {
    tokio::time::sleep(Duration::from_millis(q.sleep_ms)).await;
    let m = ctx.meta();
    Lineage {
        id: m.id().to_string(),
        correlation_id: m.correlation_id().to_string(),
        causation_id: m.causation_id().map(|c| c.to_string()),
        tenant: m.metadata().get("tenant").map(ToString::to_string),
    }
}

/// A notification whose handler asks a query: the query is its child.
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Checkout;

static ASKED_FROM_HANDLER: Mutex<Vec<(EventId, String)>> = Mutex::new(Vec::new());

#[handler]
async fn checkout(_: &Checkout, ctx: &Context) -> Result<(), RequestError> {
    let answer = ctx.bus().request(WhoAmI { sleep_ms: 0 }).await?;
    ASKED_FROM_HANDLER
        .lock()
        .unwrap()
        .push((ctx.meta().id(), answer.causation_id.unwrap_or_default()));
    let tea = ctx.bus().request(GetPrice { sku: "tea".into() }).await?;
    assert_eq!(tea.cents, 450);
    Ok(())
}

fn bus() -> Bus {
    Bus::builder()
        .scope(module_path!())
        .state(Catalog)
        .build()
        .unwrap()
}

#[test]
fn the_derive_makes_a_query_with_its_response_in_the_catalog() {
    assert_eq!(GetPrice::KIND, EventKind::Query);
    assert_eq!(
        WhoAmI::KIND,
        EventKind::Query,
        "`response = ..` alone makes a query"
    );
    let response = GetPrice::info().response().unwrap();
    assert_eq!(response.type_name(), "Price");
    let schema = serde_json::to_value(response.schema()).unwrap();
    assert_eq!(schema["properties"]["cents"]["type"], "integer");
    assert!(Checkout::info().response().is_none());
    fn answer_of<Q: Query>(_: &Q) -> &'static str {
        std::any::type_name::<Q::Response>()
    }
    assert!(answer_of(&GetPrice { sku: String::new() }).ends_with("::Price"));
    let bus = bus();
    let responder = bus
        .handlers()
        .iter()
        .find(|h| h.name().ends_with("::price"))
        .unwrap();
    assert!(responder.is_responder());
    let listener = bus
        .handlers()
        .iter()
        .find(|h| h.name().ends_with("::listen"))
        .unwrap();
    assert!(!listener.is_responder());
}

#[tokio::test]
async fn a_request_gets_its_answer_and_listeners_hear_it_after() {
    let bus = bus();
    let tea = bus.request(GetPrice { sku: "tea".into() }).await.unwrap();
    assert_eq!(tea, Price { cents: 450 });
    let heard = std::mem::take(&mut *HEARD.lock().unwrap());
    assert!(
        heard.ends_with(&["audit get.price".into(), "price asked for tea".into()]),
        "{heard:?}"
    );
    assert_eq!(
        bus.handler_names::<GetPrice>(),
        ["requests::audit", "requests::listen"],
        "the responder is not among the query's handlers"
    );
}

#[tokio::test]
async fn a_failing_responder_is_an_error_naming_it() {
    let bus = bus();
    let err = bus
        .request(GetPrice { sku: "gold".into() })
        .await
        .unwrap_err();
    match &err {
        RequestError::Failed {
            query,
            handler,
            error,
        } => {
            assert_eq!(*query, "get.price");
            assert_eq!(handler, "requests::price");
            assert_eq!(error.to_string(), "no such sku: gold");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "the responder `requests::price` of query `get.price` failed: no such sku: gold"
    );
}

#[tokio::test]
async fn a_panicking_responder_is_an_error_not_a_crash() {
    let bus = bus();
    let err = bus
        .request(GetPrice { sku: "boom".into() })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RequestError::Panicked { message, .. } if message == "the price list is on fire"),
        "{err:?}"
    );
    // The bus still answers.
    let cake = bus.request(GetPrice { sku: "cake".into() }).await.unwrap();
    assert_eq!(cake.cents, 300);
}

#[tokio::test(start_paused = true)]
async fn a_slow_answer_times_out() {
    let bus = Bus::builder()
        .scope(module_path!())
        .state(Catalog)
        .request_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let err = bus.request(WhoAmI { sleep_ms: 1_000 }).await.unwrap_err();
    assert!(
        matches!(err, RequestError::TimedOut { query: "who.am.i", after } if after == Duration::from_millis(200)),
        "{err:?}"
    );
    // A request's own timeout overrides the bus's.
    let answer = bus
        .request(WhoAmI { sleep_ms: 1_000 })
        .timeout(Duration::from_secs(2))
        .await;
    assert!(answer.is_ok(), "{answer:?}");
    let err = bus
        .request(WhoAmI { sleep_ms: 50 })
        .timeout(Duration::from_millis(10))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "query `who.am.i` got no answer within 10ms"
    );
}

#[tokio::test]
async fn a_request_has_an_envelope_and_inside_a_handler_it_is_a_child() {
    let bus = bus();
    let flow = EventId::new();
    let root = bus
        .request(WhoAmI { sleep_ms: 0 })
        .with(
            PublishOptions::new()
                .correlation_id(flow)
                .metadata("tenant", "acme"),
        )
        .await
        .unwrap();
    assert_eq!(root.correlation_id, flow.to_string());
    assert_eq!(root.causation_id, None);
    assert_eq!(root.tenant.as_deref(), Some("acme"));

    let receipt = bus.publish(Checkout).await.unwrap();
    assert!(receipt.is_ok(), "{receipt:?}");
    let asked = ASKED_FROM_HANDLER.lock().unwrap().clone();
    assert_eq!(
        asked,
        [(receipt.event_id(), receipt.event_id().to_string())],
        "the query's causation id is the handled event's id"
    );
}

#[tokio::test]
async fn a_disabled_bus_refuses_requests() {
    let bus = bus();
    bus.disable();
    let err = bus
        .request(GetPrice { sku: "tea".into() })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RequestError::Publish(PublishError::Disabled { name: "get.price" })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_bus_without_the_responder_says_so() {
    // The query is declared in this module; a bus scoped elsewhere may be asked it anyway.
    let bus = Bus::builder().no_handlers().build().unwrap();
    let err = bus
        .request(GetPrice { sku: "tea".into() })
        .await
        .unwrap_err();
    assert!(
        matches!(err, RequestError::NoResponder { query: "get.price" }),
        "{err:?}"
    );
}
