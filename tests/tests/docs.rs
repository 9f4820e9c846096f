//! The generated documents: schema files with `$id`, the Markdown and HTML catalogs, and an
//! AsyncAPI 3.1 document valid against the official schema (saved under `tests/asyncapi/`).

#![allow(unreachable_pub)]

use events::docs::{self, Options};
use events::{Bus, Event, handler};
use serde_json::Value;

/// An order was placed by a <customer>.
///
/// Second line of the description.
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "order.placed", version = 2, upcast_from = OrderPlacedV1)]
struct OrderPlaced {
    order_id: u64,
    lines: Vec<Line>,
}

/// One line of an order.
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Line {
    sku: String,
    quantity: u32,
}

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "order.placed", version = 1)]
struct OrderPlacedV1 {
    id: u64,
}

impl From<OrderPlacedV1> for OrderPlaced {
    fn from(v1: OrderPlacedV1) -> Self {
        OrderPlaced {
            order_id: v1.id,
            lines: Vec::new(),
        }
    }
}

/// How many are in stock?
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(kind = "query", response = u32)]
struct GetStock {
    sku: String,
}

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "payment.taken", kind = "command")]
struct PaymentTaken {
    #[event(redact)]
    card: String,
}

#[handler(priority = 5)]
fn book(_: &OrderPlaced) {}

#[handler]
async fn stock(_: &GetStock) -> u32 {
    3
}

#[handler(pattern = "order.>")]
fn audit(_: &events::AnyEvent) {}

fn bus() -> Bus {
    Bus::builder().scope(module_path!()).build().unwrap()
}

fn options() -> Options {
    Options::default().title("Shop events").version("2.1.0")
}

#[test]
fn one_schema_file_per_event_and_version_with_an_id() {
    let schemas = docs::json_schemas(&bus()).unwrap();
    let files: Vec<&str> = schemas.iter().map(|(f, _)| f.as_str()).collect();
    assert!(files.contains(&"schemas/order.placed.v2.json"), "{files:?}");
    assert!(files.contains(&"schemas/order.placed.v1.json"));
    let (_, v2) = schemas
        .iter()
        .find(|(f, _)| f == "schemas/order.placed.v2.json")
        .unwrap();
    assert_eq!(v2["$id"], "urn:events:schema:order.placed:v2");
    assert_eq!(v2["title"], "order.placed v2");
    assert_eq!(v2["properties"]["lines"]["items"]["$ref"], "#/$defs/Line");
    let (_, pay) = schemas
        .iter()
        .find(|(f, _)| f == "schemas/payment.taken.v1.json")
        .unwrap();
    assert_eq!(pay["properties"]["card"]["x-redacted"], true);
    // Each file is a schema the validator accepts, and its example passes it.
    for (file, schema) in &schemas {
        assert!(jsonschema::validator_for(schema).is_ok(), "{file}");
    }
}

/// Resolves a local `$ref` (`#/a/b`) in `doc`.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    doc.pointer(pointer)
}

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                match (k.as_str(), c) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(c, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|c| refs(c, out)),
        _ => {}
    }
}

#[test]
fn the_asyncapi_document_is_valid_and_every_ref_resolves() {
    let doc = docs::asyncapi(&bus(), &options()).unwrap();
    let meta: Value =
        serde_json::from_str(include_str!("../asyncapi/asyncapi-3.1.0.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&meta).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // The check has teeth: a broken document is refused.
    let mut broken = doc.clone();
    let first_op = broken["operations"]
        .as_object_mut()
        .unwrap()
        .values_mut()
        .next()
        .unwrap();
    first_op["action"] = "shout".into();
    assert!(!validator.is_valid(&broken));

    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 10);
    for r in &all {
        assert!(resolve(&doc, r).is_some(), "unresolved $ref {r}");
    }

    assert_eq!(doc["info"]["title"], "Shop events");
    assert_eq!(doc["channels"]["order.placed"]["address"], "order.placed");
    let messages = doc["channels"]["order.placed"]["messages"]
        .as_object()
        .unwrap();
    assert_eq!(messages.len(), 2, "one message per version");
    assert_eq!(
        doc["channels"]["order.placed"]["x-events-in-process"], true,
        "without a transport, the events stay in the process"
    );
    assert!(doc.get("servers").is_none());
    let msg = &doc["components"]["messages"]["order.placed.v2.structured"];
    assert_eq!(msg["summary"], "An order was placed by a <customer>.");
    assert_eq!(
        doc["components"]["schemas"]["order.placed.v2"]["properties"]["lines"]["items"]["$ref"],
        "#/components/schemas/order.placed.v2.Line"
    );
    // Handlers are receive operations; the wildcard handler receives both versions.
    let ops = doc["operations"].as_object().unwrap();
    let audit: Vec<&String> = ops.keys().filter(|k| k.contains(".audit.")).collect();
    assert_eq!(audit.len(), 2, "{:?}", ops.keys().collect::<Vec<_>>());
    assert!(ops.iter().all(|(k, o)| o["action"]
        == if k.starts_with("send.") {
            "send"
        } else {
            "receive"
        }));
    assert!(
        ops.keys().any(|k| k == "receive.docs.stock.get.stock.v1"),
        "{:?}",
        ops.keys()
    );
}

#[test]
fn the_catalogs_list_every_event_with_handlers_and_escape_text() {
    let bus = bus();
    let md = docs::markdown(&bus, &options()).unwrap();
    assert!(md.starts_with("# Shop events\n"));
    assert!(md.contains("## order.placed v2"));
    assert!(md.contains("- `docs::book` (sync, priority 5)"), "{md}");
    assert!(md.contains("- `docs::stock` (async, priority 0, responder)"));
    assert!(md.contains("- `docs::audit` (sync, priority 0, pattern `order.>`)"));
    assert!(md.contains("- answered with: `u32`"));
    assert!(md.contains("- upcast from v1"));
    assert!(md.contains("- redacted fields: `card`"));
    assert!(md.contains("\"quantity\": 0"), "the example payload");

    let html = docs::html(&bus, &options()).unwrap();
    assert!(html.contains("<title>Shop events</title>"));
    assert!(
        html.contains("An order was placed by a &lt;customer&gt;."),
        "escaped"
    );
    assert!(!html.contains("a <customer>"));
    for key in [
        "order.placed.v1",
        "order.placed.v2",
        "get.stock.v1",
        "payment.taken.v1",
    ] {
        assert!(html.contains(&format!("id=\"{key}\"")), "{key}");
    }
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "self-contained"
    );
}

#[test]
fn write_puts_every_document_in_the_folder() {
    let dir = std::env::temp_dir().join(format!("events-docs-{}", std::process::id()));
    let written = docs::write(&bus(), &dir, &options()).unwrap();
    for f in [
        "index.html",
        "catalog.md",
        "asyncapi.json",
        "schemas/get.stock.v1.json",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
        assert!(written.contains(&dir.join(f)), "{f}");
    }
    let asyncapi: Value =
        serde_json::from_slice(&std::fs::read(dir.join("asyncapi.json")).unwrap()).unwrap();
    assert_eq!(asyncapi["asyncapi"], "3.1.0");
    std::fs::remove_dir_all(&dir).unwrap();
}
