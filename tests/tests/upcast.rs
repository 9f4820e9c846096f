//! Versioning: `#[event(upcast_from = ..)]` chains let old payloads reach new handlers,
//! while handlers of the old version still get the old shape.

#![allow(unreachable_pub)]

use std::sync::Mutex;

use events::{Bus, Context, Event, Outcome, PublishOptions, handler};

/// v1: one total in cents.
#[derive(Event, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "order.placed", version = 1)]
struct OrderPlacedV1 {
    id: u64,
    cents: u64,
}

/// v2: the id renamed, a currency added.
#[derive(Event, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "order.placed", version = 2, upcast_from = OrderPlacedV1)]
struct OrderPlacedV2 {
    order_id: u64,
    cents: u64,
    currency: String,
}

impl From<OrderPlacedV1> for OrderPlacedV2 {
    fn from(v1: OrderPlacedV1) -> Self {
        OrderPlacedV2 {
            order_id: v1.id,
            cents: v1.cents,
            currency: "EUR".into(),
        }
    }
}

/// v3: the amount as a decimal string.
#[derive(Event, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "order.placed", version = 3, upcast_from = OrderPlacedV2)]
struct OrderPlaced {
    order_id: u64,
    amount: String,
    currency: String,
}

impl From<OrderPlacedV2> for OrderPlaced {
    fn from(v2: OrderPlacedV2) -> Self {
        OrderPlaced {
            order_id: v2.order_id,
            amount: format!("{}.{:02}", v2.cents / 100, v2.cents % 100),
            currency: v2.currency,
        }
    }
}

static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn seen(ctx: &Context, what: String) {
    let m = ctx.meta();
    SEEN.lock()
        .unwrap()
        .push(format!("v{} {what} id={}", m.version(), m.id()));
}

#[handler]
fn on_v1(ev: &OrderPlacedV1, ctx: &Context) {
    seen(ctx, format!("{}:{}", ev.id, ev.cents));
}

#[handler]
async fn on_v2(ev: &OrderPlacedV2, ctx: &Context) {
    seen(ctx, format!("{}:{}:{}", ev.order_id, ev.cents, ev.currency));
}

#[handler]
fn on_v3(ev: &OrderPlaced, ctx: &Context) {
    seen(
        ctx,
        format!("{}:{}:{}", ev.order_id, ev.amount, ev.currency),
    );
}

fn bus() -> Bus {
    Bus::builder().scope(module_path!()).build().unwrap()
}

fn take() -> Vec<String> {
    std::mem::take(&mut *SEEN.lock().unwrap())
}

/// One test: `SEEN` is shared.
#[tokio::test]
async fn old_payloads_reach_every_newer_handler_and_their_own() {
    let bus = bus();
    assert_eq!(
        OrderPlaced::info().upcast_from().map(|i| i.version()),
        Some(2)
    );

    let receipt = bus
        .publish(OrderPlacedV1 { id: 7, cents: 1250 })
        .await
        .unwrap();
    let id = receipt.event_id();
    assert_eq!(
        take(),
        [
            format!("v1 7:1250 id={id}"),
            format!("v2 7:1250:EUR id={id}"),
            format!("v3 7:12.50:EUR id={id}"),
        ],
        "one event, three shapes, one id"
    );
    assert!(matches!(
        receipt.outcome("upcast to order.placed v2"),
        Some(Outcome::Delivered)
    ));

    // From outside, a v1 payload goes the same way.
    bus.publish_json(
        "order.placed",
        1,
        br#"{"id": 8, "cents": 5}"#,
        PublishOptions::new(),
    )
    .await
    .unwrap();
    let got = take();
    assert_eq!(got.len(), 3);
    assert!(got[2].starts_with("v3 8:0.05:EUR"), "{got:?}");

    // A v2 event does not travel back to v1 handlers.
    bus.publish(OrderPlacedV2 {
        order_id: 9,
        cents: 100,
        currency: "USD".into(),
    })
    .await
    .unwrap();
    let got = take();
    assert_eq!(got.len(), 2);
    assert!(got[0].starts_with("v2 9:100:USD") && got[1].starts_with("v3 9:1.00:USD"));

    // Without a runtime, the synchronous handlers along the chain run.
    bus.publish_blocking(OrderPlacedV1 { id: 1, cents: 1 })
        .unwrap();
    let got = take();
    assert_eq!(got.len(), 2, "the async v2 handler is skipped: {got:?}");
    assert!(got[1].starts_with("v3 1:0.01:EUR"));

    assert_eq!(
        bus.handler_names::<OrderPlacedV1>(),
        ["upcast::on_v1", "upcast to order.placed v2"],
        "the upcast runs after the version's own handlers"
    );
}

/// Issue 17: a v1 publish's receipt shows a failure of the v2 handler its event was upcast
/// to (it was `delivered` while the event was dead-lettered), and the failure is
/// dead-lettered once, under the handler that failed.
#[tokio::test]
async fn a_failure_after_an_upcast_shows_in_the_receipt_and_is_dead_lettered_once() {
    let bus = Bus::builder().no_handlers().build().unwrap();
    let _refuse = bus.subscribe_with(
        events::SubscribeOptions::new().name("refuse_v2"),
        |ev: &OrderPlacedV2, _: &Context| {
            Err::<(), _>(events::HandlerError::permanent(format!(
                "order {} refused",
                ev.order_id
            )))
        },
    );
    for blocking in [false, true] {
        let receipt = if blocking {
            bus.publish_blocking(OrderPlacedV1 { id: 5, cents: 1 })
                .unwrap()
        } else {
            bus.publish(OrderPlacedV1 { id: 5, cents: 1 })
                .await
                .unwrap()
        };
        let outcome = receipt.outcome("upcast to order.placed v2").unwrap();
        assert!(
            matches!(outcome, Outcome::Failed(_)),
            "blocking: {blocking}: {outcome:?}"
        );
        let shown = outcome.to_string();
        assert!(
            shown.contains("refuse_v2") && shown.contains("order 5 refused"),
            "{shown}"
        );
        assert!(!receipt.is_ok());
        assert_eq!(receipt.failed().count(), 1);
    }
    let letters = bus.dead_letters().list(&events::DeadLetterFilter::all());
    let handlers: Vec<&str> = letters.iter().map(|d| d.handler.as_str()).collect();
    assert_eq!(handlers, ["refuse_v2"; 2]);
}
