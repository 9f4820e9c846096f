//! Generates the event catalog of a small shop: JSON Schema files, `catalog.md`,
//! `asyncapi.json` and a self-contained `index.html`.
//!
//! ```sh
//! cargo run --example docs -- --out target/event-docs
//! ```

use std::path::PathBuf;

use events::{Bus, Context, Event, handler};

/// An order was placed by a customer (version 1: one total).
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "order.placed", version = 1)]
struct OrderPlacedV1 {
    /// The order's number.
    id: u64,
    /// What the customer pays, in cents.
    cents: u64,
}

/// An order was placed by a customer.
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "order.placed", version = 2, upcast_from = OrderPlacedV1, priority = 5)]
struct OrderPlaced {
    /// The order's number.
    order_id: u64,
    /// What was ordered.
    lines: Vec<Line>,
    /// ISO 4217 currency of the amounts.
    currency: String,
}

/// One line of an order.
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Line {
    /// The product.
    sku: String,
    /// How many.
    quantity: u32,
    /// Price of one, in cents.
    unit_cents: u64,
}

impl From<OrderPlacedV1> for OrderPlaced {
    fn from(v1: OrderPlacedV1) -> Self {
        OrderPlaced {
            order_id: v1.id,
            lines: vec![Line {
                sku: "unknown".into(),
                quantity: 1,
                unit_cents: v1.cents,
            }],
            currency: "EUR".into(),
        }
    }
}

/// Take payment for an order.
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "payment.requested", kind = "command")]
struct RequestPayment {
    order_id: u64,
    amount_cents: u64,
    /// The card to charge; never logged.
    #[event(redact)]
    card_token: String,
}

/// How many of a product are in stock?
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(kind = "query", response = Stock)]
struct GetStock {
    sku: String,
}

/// The answer to [`GetStock`].
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Stock {
    available: u32,
}

#[handler(priority = 10)]
fn reserve_stock(_: &OrderPlaced) {}

#[handler]
async fn request_payment(ev: &OrderPlaced, ctx: &Context) {
    let _ = (ev, ctx);
}

#[handler]
fn charge(_: &RequestPayment) {}

#[handler]
fn stock(_: &GetStock) -> Stock {
    Stock { available: 3 }
}

#[handler(pattern = "order.>")]
fn audit(_: &events::AnyEvent) {}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut out = PathBuf::from("target/event-docs");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = args.next().ok_or("--out needs a folder")?.into(),
            "-h" | "--help" => {
                println!("usage: docs [--out DIR]   (default target/event-docs)");
                return Ok(());
            }
            other => return Err(format!("unknown argument `{other}`; try --help").into()),
        }
    }
    let bus = Bus::builder().build()?;
    let options = events::docs::Options::default().title("Shop events");
    let written = events::docs::write(&bus, &out, &options)?;
    for path in &written {
        println!("{}", path.display());
    }
    Ok(())
}
