//! Schema compatibility against a saved snapshot.

#![allow(unreachable_pub)]

use events::compat::{self, Breaking};
use events::{Bus, Event};
use serde_json::json;

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "order.placed", version = 2)]
struct OrderPlaced {
    order_id: u64,
    lines: Vec<Line>,
    note: Option<String>,
}

#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Line {
    sku: String,
    quantity: u32,
}

fn bus() -> Bus {
    Bus::builder().no_handlers().build().unwrap()
}

#[test]
fn an_unchanged_binary_is_compatible_with_its_own_snapshot() {
    let bus = bus();
    assert!(compat::check(&compat::snapshot(&bus), &bus).is_empty());
    let _ = OrderPlaced::NAME;
}

#[test]
fn breaking_changes_are_each_reported() {
    let bus = bus();
    let mut saved = compat::snapshot(&bus);
    let old = &mut saved["order.placed.v2"];
    // The old schema had a field the type no longer has, a `quantity` that was a string,
    // and `lines` was optional.
    old["properties"]["coupon"] = json!({ "type": "string" });
    old["required"] = json!(["order_id"]);
    old["$defs"]["Line"]["properties"]["quantity"] = json!({ "type": "string" });
    saved["order.cancelled.v1"] = json!({ "type": "object" });

    let changes = compat::check(&saved, &bus);
    assert_eq!(
        changes,
        [
            Breaking::EventRemoved {
                event: "order.cancelled.v1".into()
            },
            Breaking::FieldRemoved {
                event: "order.placed.v2".into(),
                field: "coupon".into()
            },
            Breaking::TypeChanged {
                event: "order.placed.v2".into(),
                field: "lines[].quantity".into(),
                from: "string".into(),
                to: "integer".into()
            },
            Breaking::NewRequired {
                event: "order.placed.v2".into(),
                field: "lines".into()
            },
        ]
    );
    assert_eq!(
        changes[2].to_string(),
        "`order.placed.v2`: `lines[].quantity` changed type from string to integer"
    );
}

#[test]
fn widening_and_new_optional_fields_are_compatible() {
    let bus = bus();
    let mut saved = compat::snapshot(&bus);
    let old = &mut saved["order.placed.v2"];
    // Before: no `note`, and `note`-less payloads still validate. `order_id` was narrower.
    old["properties"].as_object_mut().unwrap().remove("note");
    old["properties"]["order_id"] = json!({ "type": "integer", "minimum": 10 });
    assert!(compat::check(&saved, &bus).is_empty());
}

#[test]
fn assert_compatible_writes_then_guards_the_snapshot() {
    let bus = bus();
    let path = std::env::temp_dir().join(format!("events-compat-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&path);
    compat::assert_compatible(&bus, &path);
    assert!(path.exists(), "the first run writes the snapshot");
    compat::assert_compatible(&bus, &path);

    let mut saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    saved["order.placed.v2"]["properties"]["coupon"] = json!({ "type": "string" });
    std::fs::write(&path, saved.to_string()).unwrap();
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        compat::assert_compatible(&bus, &path)
    }))
    .unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.starts_with("1 breaking schema change(s) without a version bump"),
        "{message}"
    );
    assert!(message.contains("  - `order.placed.v2`: field `coupon` was removed"));
    std::fs::remove_file(&path).unwrap();
}
