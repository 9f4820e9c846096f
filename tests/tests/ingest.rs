//! JSON from outside: every refusal is a typed error with an exact message, dispatches
//! nothing and is counted; valid input reaches the typed handlers.

#![allow(unreachable_pub)]

use std::sync::Mutex;

use events::observe::Metrics;
use events::{Bus, Event, IngestError, IngestLimits, PublishOptions, handler};

/// An order was placed.
#[derive(Event, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "order.placed", version = 2)]
struct OrderPlaced {
    order_id: u64,
    lines: Vec<Line>,
    coupon: Option<String>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Line {
    sku: String,
    quantity: u32,
}

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "order.placed", version = 1)]
struct OrderPlacedV1 {
    order_id: u64,
}

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "order.shipped")]
struct OrderShipped {
    order_id: u64,
}

/// Deserialization stricter than the schema can say.
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "user.renamed")]
struct UserRenamed {
    #[serde(deserialize_with = "non_blank")]
    name: String,
}

fn non_blank<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    if s.trim().is_empty() {
        return Err(serde::de::Error::custom("the name is blank"));
    }
    Ok(s)
}

static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[handler]
fn on_order(ev: &OrderPlaced, ctx: &events::Context) {
    SEEN.lock().unwrap().push(format!(
        "{} lines={} tenant={:?}",
        ev.order_id,
        ev.lines.len(),
        ctx.meta()
            .metadata()
            .get("tenant")
            .and_then(events::MetaValue::as_str)
    ));
}

#[handler]
fn on_rename(ev: &UserRenamed) {
    SEEN.lock().unwrap().push(format!("renamed {}", ev.name));
}

fn bus(metrics: &Metrics) -> Bus {
    Bus::builder()
        .scope(module_path!())
        .observer(metrics.clone())
        .ingest_limits(IngestLimits::new(4096, 8))
        .build()
        .unwrap()
}

fn refuse(bus: &Bus, name: &str, version: u32, json: &[u8]) -> IngestError {
    let err = bus
        .publish_json_blocking(name, version, json, PublishOptions::new())
        .unwrap_err();
    assert!(
        SEEN.lock().unwrap().is_empty(),
        "refused input reached a handler"
    );
    err
}

/// One test, so that `SEEN` is only touched here.
#[test]
fn outside_json_is_checked_before_any_handler_sees_it() {
    let metrics = Metrics::new();
    let bus = bus(&metrics);

    let err = refuse(&bus, "order.plced", 2, b"{}");
    assert!(matches!(&err, IngestError::UnknownEvent { close, .. } if close == &["order.placed"]));
    assert_eq!(
        err.to_string(),
        "unknown event `order.plced`; did you mean `order.placed`?"
    );
    assert_eq!(
        refuse(&bus, "order.shiped.late", 1, b"{}").to_string(),
        "unknown event `order.shiped.late`"
    );

    let err = refuse(&bus, "order.placed", 3, b"{}");
    assert_eq!(
        err.to_string(),
        "event `order.placed` has no version 3; known versions: 1, 2"
    );

    let big = format!(r#"{{"order_id": 1, "pad": "{}"}}"#, "x".repeat(5000));
    assert_eq!(
        refuse(&bus, "order.placed", 2, big.as_bytes()).to_string(),
        format!(
            "payload of {} bytes is over the limit of 4096 bytes",
            big.len()
        )
    );
    let deep = format!("{}{}", "[".repeat(9), "]".repeat(9));
    assert_eq!(
        refuse(&bus, "order.placed", 2, deep.as_bytes()).to_string(),
        "payload nests arrays and objects more than 8 levels deep"
    );
    // Brackets inside strings do not count.
    let err = refuse(&bus, "order.placed", 2, br#"{"order_id": "[[[[[[[[[[[["}"#);
    assert!(matches!(err, IngestError::Invalid { .. }), "{err}");

    let err = refuse(
        &bus,
        "order.placed",
        2,
        b"{\n  \"order_id\": 1,\n  \"lines\": [}\n",
    );
    assert!(
        matches!(
            err,
            IngestError::Malformed {
                line: 3,
                column: 13,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "malformed JSON at line 3, column 13: expected value"
    );

    let err = refuse(
        &bus,
        "order.placed",
        2,
        br#"{"order_id": -1, "lines": [{"sku": "tea", "quantity": "2"}, {"quantity": 1}]}"#,
    );
    let IngestError::Invalid { violations, .. } = &err else {
        panic!("expected Invalid, got {err:?}");
    };
    let paths: Vec<&str> = violations.iter().map(|v| v.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/lines/0/quantity", "/lines/1", "/order_id"],
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "payload of `order.placed` v2 does not match its schema (3 violations): \
         at /lines/0/quantity: \"2\" is not of type \"integer\"; \
         at /lines/1: \"sku\" is a required property; \
         at /order_id: -1 is less than the minimum of 0"
    );
    let err = refuse(&bus, "order.placed", 2, b"[]");
    assert_eq!(
        err.to_string(),
        "payload of `order.placed` v2 does not match its schema (1 violation): \
         at /: [] is not of type \"object\""
    );

    let err = refuse(&bus, "user.renamed", 1, br#"{"name": "  "}"#);
    assert_eq!(
        err.to_string(),
        "payload of `user.renamed` v1 matches its schema but does not deserialize: the name is blank"
    );

    bus.disable();
    let err = refuse(&bus, "order.shipped", 1, br#"{"order_id": 1}"#);
    assert!(matches!(
        err,
        IngestError::Publish(events::PublishError::Disabled { .. })
    ));
    bus.enable();

    let snapshot = metrics.snapshot(&bus);
    assert_eq!(
        snapshot.invalid_inputs, 10,
        "every refused input is counted"
    );
    assert_eq!(snapshot.events["order.placed"].invalid, 7);
    assert_eq!(snapshot.events["user.renamed"].invalid, 1);
    assert_eq!(snapshot.events["order.shipped"].rejected, 1);
    assert!(
        snapshot.events.values().all(|e| e.published == 0),
        "nothing was published"
    );

    let opts = PublishOptions::new().metadata("tenant", "acme");
    let receipt = bus
        .publish_json_blocking(
            "order.placed",
            2,
            br#"{"order_id": 7, "lines": [{"sku": "tea", "quantity": 2}], "coupon": null}"#,
            opts,
        )
        .unwrap();
    assert!(receipt.is_ok());
    assert_eq!(receipt.delivered(), 1);
    assert_eq!(
        std::mem::take(&mut *SEEN.lock().unwrap()),
        ["7 lines=1 tenant=Some(\"acme\")"]
    );
    bus.publish_json_blocking(
        "user.renamed",
        1,
        br#"{"name": "Ada"}"#,
        PublishOptions::new(),
    )
    .unwrap();
    assert_eq!(std::mem::take(&mut *SEEN.lock().unwrap()), ["renamed Ada"]);
}

#[test]
fn decode_json_gives_the_typed_event_without_publishing() {
    let bus = bus(&Metrics::new());
    let ev = bus
        .decode_json("order.placed", 1, br#"{"order_id": 3}"#)
        .unwrap();
    assert_eq!(ev.name(), "order.placed");
    assert_eq!(ev.version(), 1);
    assert_eq!(
        ev.downcast_ref::<OrderPlacedV1>().map(|o| o.order_id),
        Some(3)
    );
    let _ = OrderShipped { order_id: 0 };
}

#[tokio::test]
async fn publish_json_runs_async_handlers_too() {
    let bus = bus(&Metrics::new());
    let receipt = bus
        .publish_json(
            "order.shipped",
            1,
            br#"{"order_id": 9}"#,
            PublishOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!(receipt.event_name(), "order.shipped");
    assert_eq!(receipt.handler_count(), 0);
}

#[test]
fn a_huge_unknown_name_is_cheap_to_refuse_and_clipped_in_the_message() {
    let bus = bus(&Metrics::new());
    let name = "x".repeat(200_000);
    let err = bus
        .publish_json_blocking(&name, 1, b"{}", PublishOptions::new())
        .unwrap_err();
    let IngestError::UnknownEvent { name: shown, close } = &err else {
        panic!("{err:?}");
    };
    assert!(close.is_empty());
    assert_eq!(shown.chars().count(), 81, "80 characters and an ellipsis");
    assert!(err.to_string().len() < 200);
}
