//! The tour: events, handlers (sync, async, with state, with a filter), a failing handler
//! that harms nobody, a child event that keeps the correlation id, a query answered by its
//! responder, and the registry.
//!
//! ```sh
//! cargo run --example quickstart
//! ```

use std::sync::Mutex;

use events::{Bus, Context, Event, HandlerError, Meta, Outcome, State, handler};

/// An order was placed by a customer.
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "order.placed", version = 2)]
struct OrderPlaced {
    /// The order's number.
    order_id: u64,
    /// What the customer pays, in cents.
    total_cents: u64,
}

/// Payment was requested for an order.
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(kind = "command")]
struct RequestPayment {
    order_id: u64,
    amount_cents: u64,
}

/// How many ledger entries are there? A query: asked with `bus.request`, answered by one
/// handler.
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(kind = "query", response = Balance)]
struct GetBalance;

/// The answer to [`GetBalance`].
#[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Balance {
    entries: usize,
}

/// The books of the shop: state shared by handlers.
#[derive(Default)]
struct Ledger {
    entries: Mutex<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
#[error("loyalty service unreachable")]
struct LoyaltyDown;

/// Sync, with state, first because of its priority.
#[handler(priority = 10)]
fn book_order(ev: &OrderPlaced, ledger: State<Ledger>) {
    ledger.entries.lock().unwrap().push(format!(
        "order {} booked: {} cents",
        ev.order_id, ev.total_cents
    ));
}

fn is_large(ev: &OrderPlaced, _meta: &Meta) -> bool {
    ev.total_cents >= 10_000
}

/// Only for large orders.
#[handler(filter = is_large)]
fn flag_for_review(ev: &OrderPlaced) {
    println!(
        "  [review] order {} is large; flagged for review",
        ev.order_id
    );
}

/// Async, publishing a child event through its context.
#[handler]
async fn request_payment(ev: &OrderPlaced, ctx: &Context) -> Result<(), HandlerError> {
    ctx.publish(RequestPayment {
        order_id: ev.order_id,
        amount_cents: ev.total_cents,
    })
    .await?;
    Ok(())
}

/// Always fails: the others do not notice.
#[handler(name = "loyalty.award_points")]
async fn award_points(_: &OrderPlaced) -> Result<(), LoyaltyDown> {
    Err(LoyaltyDown)
}

#[handler]
fn charge(ev: &RequestPayment, ctx: &Context, ledger: State<Ledger>) {
    let m = ctx.meta();
    ledger.entries.lock().unwrap().push(format!(
        "charged {} cents for order {}",
        ev.amount_cents, ev.order_id
    ));
    println!(
        "  [charge] {} (correlation {}, caused by {})",
        m.name(),
        m.correlation_id(),
        m.causation_id().map(|c| c.to_string()).unwrap_or_default()
    );
}

/// The responder of `GetBalance`: it returns the query's response type.
#[handler]
fn balance(_: &GetBalance, ledger: State<Ledger>) -> Balance {
    Balance {
        entries: ledger.entries.lock().unwrap().len(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_target(false)
        .with_env_filter("warn")
        .init();

    let ledger = std::sync::Arc::new(Ledger::default());
    let bus = Bus::builder()
        .source("quickstart")
        .shared_state(ledger.clone())
        .build()?;

    println!(
        "Registry: {} events, {} handlers",
        bus.events().len(),
        bus.handlers().len()
    );
    for e in bus.events() {
        println!(
            "  event   {} v{} ({}) {}",
            e.name(),
            e.version(),
            e.kind(),
            e.type_name()
        );
    }
    for h in bus.handlers() {
        let (file, line) = h.location();
        println!(
            "  handler {:<40} <- {} (priority {}, {}{}{}) {file}:{line}",
            h.name(),
            h.event_name(),
            h.priority(),
            if h.is_async() { "async" } else { "sync" },
            if h.has_filter() { ", filtered" } else { "" },
            if h.is_responder() { ", responder" } else { "" },
        );
    }

    for (order_id, total_cents) in [(1, 2_500), (2, 25_000)] {
        println!("\nPublishing order {order_id} ({total_cents} cents)");
        let receipt = bus
            .publish(OrderPlaced {
                order_id,
                total_cents,
            })
            .await?;
        println!("  receipt for event {}:", receipt.event_id());
        for o in receipt.outcomes() {
            let mark = match o.outcome {
                Outcome::Delivered => "ok  ",
                Outcome::Filtered => "skip",
                _ => "FAIL",
            };
            println!("    {mark} {:<40} {}", o.handler, o.outcome);
        }
    }

    println!(
        "\nOrder 1 again, from code with no runtime (publish_blocking runs the sync handlers):"
    );
    let receipt = bus.publish_blocking(OrderPlaced {
        order_id: 1,
        total_cents: 2_500,
    })?;
    println!(
        "  delivered to {} of {} handlers",
        receipt.delivered(),
        receipt.handler_count()
    );

    println!("\nLedger:");
    for entry in ledger.entries.lock().unwrap().iter() {
        println!("  {entry}");
    }

    let answer = bus.request(GetBalance).await?;
    println!("\nAsked {}: {answer:?}", GetBalance::NAME);

    let schema = serde_json::to_string_pretty(OrderPlaced::schema())?;
    println!("\nJSON Schema of order.placed v2:\n{schema}");
    Ok(())
}
