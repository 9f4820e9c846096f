//! Wildcard handlers (`&AnyEvent`), `pattern = ..`, and pattern subscriptions.

use std::sync::{Arc, Mutex};

use events::{AnyEvent, Bus, Context, Event, Meta, Outcome, State, SubscribeOptions, handler};

#[derive(Default)]
struct Log(Mutex<Vec<String>>);

impl Log {
    fn push(&self, s: String) {
        self.0.lock().unwrap().push(s);
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "shop.order.placed", version = 2)]
struct OrderPlaced {
    id: u64,
}

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "shop.order.placed.gift")]
struct GiftOrderPlaced {
    id: u64,
}

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "shop.stock.low")]
struct StockLow {
    sku: String,
}

#[handler(priority = 5)]
fn typed_high(_: &OrderPlaced, log: State<Log>) {
    log.push("typed_high".into());
}

#[handler(priority = -5)]
fn typed_low(_: &OrderPlaced, log: State<Log>) {
    log.push("typed_low".into());
}

/// Every event in the binary, between the two typed handlers by priority.
#[handler]
fn audit_all(ev: &AnyEvent, ctx: &Context, log: State<Log>) {
    assert_eq!(ev.name(), ctx.meta().name());
    log.push(format!("all {} v{}", ev.name(), ev.version()));
}

#[handler(pattern = "shop.order.*")]
async fn orders_only(ev: &AnyEvent, log: State<Log>) -> Result<(), serde_json::Error> {
    log.push(format!("orders {} {}", ev.name(), ev.to_json()?));
    Ok(())
}

fn no_gifts(ev: &AnyEvent, _: &Meta) -> bool {
    !ev.name().ends_with(".gift")
}

#[handler(pattern = "shop.>", filter = no_gifts)]
fn shop_except_gifts(ev: &AnyEvent, log: State<Log>) {
    if let Some(order) = ev.downcast_ref::<OrderPlaced>() {
        log.push(format!("shop order {}", order.id));
    } else {
        log.push(format!("shop {}", ev.name()));
    }
}

fn bus() -> (Bus, Arc<Log>) {
    let log = Arc::new(Log::default());
    (
        Bus::builder().shared_state(log.clone()).build().unwrap(),
        log,
    )
}

#[tokio::test]
async fn wildcard_handlers_receive_what_their_pattern_matches_in_dispatch_order() {
    let (bus, log) = bus();
    bus.publish(OrderPlaced { id: 7 }).await.unwrap();
    assert_eq!(
        log.take(),
        [
            "typed_high",
            "all shop.order.placed v2",
            "orders shop.order.placed {\"id\":7}",
            "shop order 7",
            "typed_low",
        ]
    );

    let r = bus.publish(GiftOrderPlaced { id: 8 }).await.unwrap();
    assert_eq!(
        log.take(),
        ["all shop.order.placed.gift v1"],
        "`*` is one segment; the filter drops gifts"
    );
    assert!(r.outcomes().any(
        |o| o.handler.ends_with("shop_except_gifts") && matches!(o.outcome, Outcome::Filtered)
    ));

    bus.publish(StockLow { sku: "x".into() }).await.unwrap();
    assert_eq!(log.take(), ["all shop.stock.low v1", "shop shop.stock.low"]);
}

#[test]
fn the_registry_lists_wildcard_handlers_with_their_patterns() {
    let (bus, _) = bus();
    let orders = bus
        .handlers()
        .iter()
        .find(|h| h.name().ends_with("orders_only"))
        .unwrap();
    assert_eq!(orders.event().map(|e| e.name()), None);
    assert_eq!(orders.pattern(), Some("shop.order.*"));
    assert_eq!(orders.event_name(), "shop.order.*");
    let all = bus
        .handlers()
        .iter()
        .find(|h| h.name().ends_with("audit_all"))
        .unwrap();
    assert_eq!(all.event_name(), ">");
    assert_eq!(bus.handler_count::<StockLow>(), 2);
}

#[test]
fn pattern_subscriptions_come_and_go_across_every_matching_event() {
    let (bus, log) = bus();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let sub = bus
        .subscribe_pattern_with(
            SubscribeOptions::new().name("watch").priority(100),
            "shop.order.>",
            move |ev: &AnyEvent, _: &Context| {
                s.lock().unwrap().push(ev.name());
            },
        )
        .unwrap();
    let list = bus.subscriptions();
    assert_eq!(list.len(), 1, "listed once, though it sits in two routes");
    assert_eq!(list[0].event, "shop.order.>");
    bus.publish_blocking(OrderPlaced { id: 1 }).unwrap();
    bus.publish_blocking(GiftOrderPlaced { id: 2 }).unwrap();
    bus.publish_blocking(StockLow { sku: "y".into() }).unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        ["shop.order.placed", "shop.order.placed.gift"]
    );
    assert_eq!(log.take().first().map(String::as_str), Some("typed_high"));

    drop(sub);
    assert!(bus.subscriptions().is_empty());
    bus.publish_blocking(OrderPlaced { id: 3 }).unwrap();
    assert_eq!(seen.lock().unwrap().len(), 2, "gone from every route");

    let bad = bus
        .subscribe_pattern("shop.>.x", |_: &AnyEvent, _: &Context| {})
        .unwrap_err();
    assert_eq!(
        bad.to_string(),
        "invalid event pattern `shop.>.x`: `>` may only be the last segment"
    );
}
