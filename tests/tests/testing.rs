//! The testing kit (`events::testing`): selection, capture, typed assertions, settling, and
//! handlers called without a bus.

#![allow(unreachable_pub)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use events::testing::TestBus;
use events::{Bus, Context, Event, HandlerError, PublishOptions, State, handler};

#[derive(
    Debug, Clone, PartialEq, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[event(name = "kit.order_placed")]
struct OrderPlaced {
    order_id: u64,
    total_cents: u64,
}

#[derive(Debug, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "kit.order_charged")]
struct OrderCharged {
    order_id: u64,
}

#[derive(Debug, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "kit.receipt_mailed")]
struct ReceiptMailed {
    order_id: u64,
}

#[derive(Debug, Default)]
struct Gateway {
    /// Calls that fail transiently before one succeeds.
    flaky_calls: AtomicU32,
    charged: AtomicU32,
}

mod billing {
    use super::*;

    /// Charges, failing transiently while the gateway is flaky; announces the charge by
    /// emitting (through the queue).
    #[handler(name = "kit.charge", retry(max = 5, base = "10s", jitter = false))]
    pub async fn charge(
        ev: &OrderPlaced,
        ctx: &Context,
        gateway: State<Gateway>,
    ) -> Result<(), HandlerError> {
        let left = gateway.flaky_calls.load(Ordering::SeqCst);
        if left > 0 {
            gateway.flaky_calls.store(left - 1, Ordering::SeqCst);
            return Err(HandlerError::transient("gateway timeout"));
        }
        if ev.total_cents == 0 {
            return Err(HandlerError::permanent("nothing to charge"));
        }
        gateway.charged.fetch_add(1, Ordering::SeqCst);
        ctx.emit(OrderCharged {
            order_id: ev.order_id,
        })
        .await?;
        Ok(())
    }
}

mod mail {
    use super::*;

    /// Mails a receipt for each charge: a child of a child, published inline.
    #[handler]
    pub async fn mail_receipt(ev: &OrderCharged, ctx: &Context) -> Result<(), HandlerError> {
        ctx.publish(ReceiptMailed {
            order_id: ev.order_id,
        })
        .await?;
        Ok(())
    }
}

fn kit(gateway: Gateway) -> TestBus {
    TestBus::new(
        Bus::builder()
            .handler("kit.charge")
            .scope("testing::mail")
            .state(gateway),
    )
    .unwrap()
}

fn order(order_id: u64) -> OrderPlaced {
    OrderPlaced {
        order_id,
        total_cents: 995,
    }
}

#[tokio::test]
async fn a_flow_is_captured_with_its_envelopes_and_settles() {
    let t = kit(Gateway::default());
    assert_eq!(t.handlers().len(), 2, "{:?}", t.handlers());
    let receipt = t.publish(order(1)).await.unwrap();
    assert!(receipt.is_ok(), "{receipt}");
    // The emitted charge waits for a worker; settle waits for it and its child.
    t.settle().await;

    let placed = t.expect_one::<OrderPlaced>(|e| e.order_id == 1);
    assert_eq!(placed.event, order(1));
    let charged = t.expect_one::<OrderCharged>(|e| e.order_id == 1);
    let mailed = t.expect_one::<ReceiptMailed>(|e| e.order_id == 1);
    assert_eq!(charged.meta.causation_id(), Some(placed.meta.id()));
    assert_eq!(mailed.meta.causation_id(), Some(charged.meta.id()));
    assert_eq!(mailed.meta.correlation_id(), placed.meta.id());
    // Dispatch order, one line each.
    let names: Vec<_> = t.captured().iter().map(|c| c.meta.name()).collect();
    assert_eq!(
        names,
        [
            "kit.order_placed",
            "kit.order_charged",
            "kit.receipt_mailed"
        ]
    );
    assert!(t.dead_letters().is_empty());
    assert_eq!(t.pending_retries(), 0);
}

#[tokio::test]
async fn outside_json_and_options_are_captured_too() {
    let t = kit(Gateway::default());
    t.publish_json(
        "kit.order_placed",
        1,
        br#"{"order_id": 5, "total_cents": 100}"#,
        PublishOptions::new().metadata("tenant", "acme"),
    )
    .await
    .unwrap();
    t.settle().await;
    let placed = t.expect_one::<OrderPlaced>(|_| true);
    assert_eq!(placed.order_id, 5); // derefs to the event
    assert_eq!(placed.meta.metadata()["tenant"], "acme");
    t.expect_one::<ReceiptMailed>(|e| e.order_id == 5);
}

#[tokio::test(start_paused = true)]
async fn settle_waits_for_retries_on_the_paused_clock() {
    let gateway = Gateway::default();
    gateway.flaky_calls.store(2, Ordering::SeqCst);
    let t = kit(gateway).settle_timeout(Duration::from_secs(60));
    let receipt = t.publish(order(2)).await.unwrap();
    assert_eq!(receipt.retrying().count(), 1, "{receipt}");
    assert_eq!(t.pending_retries(), 1);
    t.expect_none::<OrderCharged>();

    let start = tokio::time::Instant::now();
    t.settle().await;
    // Two retries, 10 s then 20 s, on tokio's clock (no real time passes).
    assert!(start.elapsed() >= Duration::from_secs(30));
    t.expect_one::<ReceiptMailed>(|e| e.order_id == 2);
    assert_eq!(t.pending_retries(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_bus_that_does_not_settle_in_time_says_what_is_pending() {
    let gateway = Gateway::default();
    gateway.flaky_calls.store(1, Ordering::SeqCst);
    let t = kit(gateway).settle_timeout(Duration::from_secs(5));
    t.publish(order(3)).await.unwrap();
    let unsettled = t.try_settle().await.unwrap_err();
    assert_eq!(unsettled.retries, 1);
    assert_eq!((unsettled.queued, unsettled.running), (0, 0));
    let text = unsettled.to_string();
    assert!(
        text.starts_with("the bus did not settle within 5"),
        "{text}"
    );
    assert!(text.contains("1 retries waiting"), "{text}");
    assert!(text.contains("1. kit.order_placed "), "{text}");

    // `settle` panics with the same text.
    let t2 = t.clone();
    let panic = tokio::spawn(async move { t2.settle().await })
        .await
        .unwrap_err()
        .into_panic();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(message.contains("captured (1):"), "{message}");
}

#[tokio::test]
async fn dead_letters_are_observable_and_expectations_fail_readably() {
    let t = kit(Gateway::default());
    let receipt = t
        .publish(OrderPlaced {
            order_id: 4,
            total_cents: 0,
        })
        .await
        .unwrap();
    assert_eq!(receipt.failed().count(), 1);
    t.settle().await;
    let letters = t.dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].handler, "kit.charge");
    assert_eq!(letters[0].error, "nothing to charge");

    let none = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        t.expect_one::<OrderCharged>(|_| true);
    }))
    .unwrap_err();
    let message = none.downcast_ref::<String>().unwrap();
    assert!(
        message.starts_with(
            "expected exactly one `kit.order_charged` matching the predicate, found 0\ncaptured (1):\n  1. kit.order_placed "
        ),
        "{message}"
    );
    let some = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        t.expect_none::<OrderPlaced>();
    }))
    .unwrap_err();
    assert!(
        some.downcast_ref::<String>()
            .unwrap()
            .starts_with("expected no `kit.order_placed`, found 1"),
    );
    t.clear();
    t.expect_nothing();
}

#[test]
fn a_selection_that_matches_nothing_is_an_error_not_an_empty_bus() {
    let err = TestBus::new(Bus::builder().handler("kit.charg")).unwrap_err();
    assert!(
        err.to_string().contains("did you mean `kit.charge`?"),
        "{err}"
    );
    let err = TestBus::new(Bus::builder().scope("testing::mails")).unwrap_err();
    assert!(
        err.to_string().contains("did you mean `testing::mail`?"),
        "{err}"
    );
    // By function path.
    let t = TestBus::new(Bus::builder().handler("testing::mail::mail_receipt")).unwrap();
    assert_eq!(
        t.handler_names::<OrderCharged>(),
        ["testing::mail::mail_receipt"]
    );
}

#[tokio::test]
async fn a_handler_is_called_directly_with_state_and_a_test_context() {
    let t = TestBus::new(Bus::builder().no_handlers()).unwrap();
    let gateway = std::sync::Arc::new(Gateway::default());
    gateway.flaky_calls.store(1, Ordering::SeqCst);
    let ctx = Context::for_test::<OrderPlaced>(&t);
    assert_eq!(ctx.attempt(), 1);
    assert_eq!(ctx.meta().name(), "kit.order_placed");

    let first = billing::charge(&order(6), &ctx, State::from(gateway.clone())).await;
    assert!(first.unwrap_err().is_transient());
    let ctx = ctx.with_attempt(2);
    billing::charge(&order(6), &ctx, State::from(gateway.clone()))
        .await
        .unwrap();
    assert_eq!(gateway.charged.load(Ordering::SeqCst), 1);
    // What the handler emitted went to the test bus, as a child of the test envelope.
    t.settle().await;
    let charged = t.expect_one::<OrderCharged>(|e| e.order_id == 6);
    assert_eq!(charged.meta.causation_id(), Some(ctx.meta().id()));

    let mailed = mail::mail_receipt(
        &OrderCharged { order_id: 7 },
        &Context::for_test::<OrderCharged>(&t),
    )
    .await;
    assert!(mailed.is_ok());
    t.expect_one::<ReceiptMailed>(|e| e.order_id == 7);
    let _ = State::new(Gateway::default());
}
