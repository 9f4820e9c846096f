//! A shop on the durable SQLite store (`./shop.db`): order -> payment -> shipping, each
//! order written to the shop's own `orders` table and published in one transaction (a
//! refused order publishes nothing), with a payment gateway that times out and recovers
//! through retries, a shipment that ends in the
//! dead-letter queue and is retried from it once the address is fixed, a replay of the
//! history into an analytics handler added at run time, and a summary.
//!
//! ```sh
//! cargo run --example shop
//! cargo run --example shop -- --serve   # then the dashboard: the address it prints
//! ```
//!
//! With `--serve` it stays up afterwards and serves the HTTP ingress, the admin API and the
//! live dashboard on `127.0.0.1:8080` (`EVENTS_HTTP_ADDR` sets another), with the admin
//! token in `EVENTS_ADMIN_TOKEN` (`shop-admin` by default), until Ctrl-C.
//!
//! Run it again: the store keeps every run's events (`recover` finds nothing left undone),
//! and the summary counts them.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use events::store::{SqliteStore, StoreQuery, rusqlite};
use events::{Bus, Context, DeadLetterFilter, Event, HandlerError, SubscribeOptions, handler};

/// A customer placed an order.
#[derive(Event, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "shop.order.placed")]
struct OrderPlaced {
    order: u64,
    customer: String,
    total_cents: u64,
    /// Kept out of logs, dumps and dead-letter listings.
    #[event(redact)]
    card: String,
}

/// The payment for an order went through.
#[derive(Event, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "shop.payment.captured")]
struct PaymentCaptured {
    order: u64,
    amount_cents: u64,
}

/// An order left the warehouse.
#[derive(Event, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "shop.order.shipped")]
struct OrderShipped {
    order: u64,
    carrier: String,
}

/// The gateway times out twice for order 2, then answers: the retry policy absorbs it.
#[handler(
    durable,
    retry(max = 4, backoff = "exponential", base = "20ms", jitter = false)
)]
async fn capture_payment(ev: &OrderPlaced, ctx: &Context) -> Result<(), HandlerError> {
    if ev.order == 2 && ctx.attempt() < 3 {
        println!(
            "  payment   order {}: gateway timed out (attempt {}), will retry",
            ev.order,
            ctx.attempt()
        );
        return Err(HandlerError::transient("payment gateway timed out"));
    }
    println!(
        "  payment   order {}: captured {:.2} EUR (attempt {})",
        ev.order,
        ev.total_cents as f64 / 100.0,
        ctx.attempt()
    );
    ctx.publish(PaymentCaptured {
        order: ev.order,
        amount_cents: ev.total_cents,
    })
    .await
    .map_err(HandlerError::permanent)?;
    Ok(())
}

/// Set once support has corrected order 4's address.
static ADDRESS_FIXED: AtomicBool = AtomicBool::new(false);

/// The carrier refuses order 4's address: a permanent error, so a dead letter.
#[handler(durable)]
async fn ship(ev: &PaymentCaptured, ctx: &Context) -> Result<(), HandlerError> {
    if ev.order == 4 && !ADDRESS_FIXED.load(Ordering::SeqCst) {
        println!(
            "  shipping  order {}: carrier rejected the address",
            ev.order
        );
        return Err(HandlerError::permanent("carrier rejected the address"));
    }
    println!("  shipping  order {}: handed to the carrier", ev.order);
    ctx.publish(OrderShipped {
        order: ev.order,
        carrier: "parcel-express".into(),
    })
    .await
    .map_err(HandlerError::permanent)?;
    Ok(())
}

static MAILS: AtomicU64 = AtomicU64::new(0);

/// Sends mail: a side effect that a replay must never repeat.
#[handler(replay = false)]
fn send_confirmation(ev: &OrderShipped) {
    MAILS.fetch_add(1, Ordering::SeqCst);
    println!(
        "  mail      order {}: confirmation sent ({})",
        ev.order, ev.carrier
    );
}

fn order(n: u64, customer: &str, total_cents: u64) -> OrderPlaced {
    OrderPlaced {
        order: n,
        customer: customer.into(),
        total_cents,
        card: "4111 1111 1111 1111".into(),
    }
}

/// Waits (up to 5 s) until `n` confirmation mails were sent in this run.
async fn mails_reach(n: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while MAILS.load(Ordering::SeqCst) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    MAILS.load(Ordering::SeqCst) >= n
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = SystemTime::now();
    // The shop's own tables live in the same file: a handle to write them in transactions
    // with the events, and another for the bus.
    let store = std::sync::Arc::new(SqliteStore::open("shop.db")?);
    let metrics = events::observe::Metrics::new();
    let bus = Bus::builder()
        .source("shop")
        .store(std::sync::Arc::clone(&store))
        .observer(metrics.clone())
        .build()?;
    store
        .transaction(&bus, |tx, _| {
            tx.execute(
                "CREATE TABLE IF NOT EXISTS orders (
                    number INTEGER NOT NULL, customer TEXT NOT NULL, total_cents INTEGER NOT NULL)",
                [],
            )
        })
        .await?;

    // After a crash this completes whatever durable handlers had not finished.
    let recovered = bus.recover().await?;
    println!(
        "recovered: {} events redelivered to durable handlers",
        recovered.events
    );

    println!("\nfive orders:");
    let orders = [
        order(1, "ada", 4_200),
        order(2, "grace", 1_999),
        order(3, "linus", 12_000),
        order(4, "barbara", 7_550),
        order(5, "ken", 300),
    ];
    for o in orders.iter().cloned() {
        let n = o.order;
        // The order row and the event commit together; the handlers run after the commit.
        let (_, receipts) = store
            .transaction(&bus, move |tx, staged| {
                tx.execute(
                    "INSERT INTO orders (number, customer, total_cents) VALUES (?1, ?2, ?3)",
                    rusqlite::params![o.order as i64, o.customer, o.total_cents as i64],
                )?;
                staged.publish(o)?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
            .await?;
        let sequence = receipts[0].sequence().unwrap_or_default();
        println!("order {n} placed: its row and its event (#{sequence}) committed together");
    }
    // The fraud check refuses order 6 inside the transaction: its row is rolled back and its
    // event is never published.
    let refused = store
        .transaction(&bus, |tx, staged| {
            let o = order(6, "mallory", 99_999);
            tx.execute(
                "INSERT INTO orders (number, customer, total_cents) VALUES (?1, ?2, ?3)",
                rusqlite::params![o.order as i64, o.customer, o.total_cents as i64],
            )?;
            staged.publish(o)?;
            Err::<(), Box<dyn std::error::Error + Send + Sync>>("the fraud check refused it".into())
        })
        .await;
    if let Err(e) = refused {
        println!("order 6 refused ({e}): no row, no event");
    }
    // Order 2's payment is being retried on its own task; order 4 is a dead letter.
    let all_but_one = mails_reach(4).await;
    println!("four orders shipped: {all_but_one}");

    println!("\ndead letters:");
    for letter in bus.dead_letters().list(&DeadLetterFilter::all()) {
        println!(
            "  #{} {} -> {}: {} (attempts {}, payload {})",
            letter.id,
            letter.event_name(),
            letter.handler,
            letter.error,
            letter.attempts,
            letter.redacted_payload()
        );
    }
    println!("support fixes the address; retrying the dead letters");
    ADDRESS_FIXED.store(true, Ordering::SeqCst);
    let retried = bus.dead_letters().retry_all(&DeadLetterFilter::all()).await;
    println!(
        "retried {retried}; five orders shipped: {}",
        mails_reach(5).await
    );

    // A new analytics handler, added at run time, catches up on this run's orders.
    let revenue = std::sync::Arc::new(AtomicU64::new(0));
    let customers = std::sync::Arc::new(Mutex::new(Vec::new()));
    let (r, c) = (revenue.clone(), customers.clone());
    let _analytics = bus.subscribe_with(
        SubscribeOptions::new().name("analytics"),
        move |ev: &OrderPlaced, _: &Context| {
            r.fetch_add(ev.total_cents, Ordering::SeqCst);
            c.lock().unwrap().push(ev.customer.clone());
        },
    );
    println!("\nreplaying this run's orders into `analytics`:");
    let report = bus
        .replay(StoreQuery::all().name("shop.order.placed")?.since(started))
        .only(["analytics"])
        .on_progress(|p| {
            let width = 30;
            let filled = p.done * width / p.total.max(1);
            print!(
                "\r  [{}{}] {}/{}",
                "#".repeat(filled),
                " ".repeat(width - filled),
                p.done,
                p.total
            );
            let _ = std::io::stdout().flush();
        })
        .await?;
    println!();

    let this_run = match bus.store() {
        Some(store) => store.query(&StoreQuery::all().since(started))?.len(),
        None => 0,
    };
    println!("\nsummary:");
    println!("  events stored this run: {this_run} (orders, payments, shipments)");
    let rows = store
        .transaction(&bus, |tx, _| {
            tx.query_row("SELECT COUNT(*) FROM orders WHERE number = 6", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .await?
        .0;
    println!("  rows of the refused order 6 in `orders`: {rows}");
    println!(
        "  replayed {} orders into analytics: revenue {:.2} EUR from {}",
        report.events,
        revenue.load(Ordering::SeqCst) as f64 / 100.0,
        customers.lock().unwrap().join(", ")
    );
    println!(
        "  confirmation mails: {} (the replay sent none)",
        MAILS.load(Ordering::SeqCst)
    );
    println!(
        "  dead letters left: {}",
        bus.dead_letters().list(&DeadLetterFilter::all()).len()
    );
    println!("  store: ./shop.db");
    if std::env::args().any(|a| a == "--serve") {
        serve(&bus, metrics).await?;
    }
    bus.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// Serves the ingress, the admin API and the dashboard until Ctrl-C.
async fn serve(bus: &Bus, metrics: events::observe::Metrics) -> std::io::Result<()> {
    use events::http::{HttpOptions, axum, router};
    let addr = std::env::var("EVENTS_HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let token = std::env::var("EVENTS_ADMIN_TOKEN").unwrap_or_else(|_| "shop-admin".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let options = HttpOptions::new().admin(&token).metrics(metrics);
    println!("\nserving: the dashboard at http://{addr}/admin/dashboard#token={token}");
    println!(
        "         events at POST http://{addr}/events (CloudEvents) and /events/{{name}}/{{version}}"
    );
    println!("         Ctrl-C stops");
    let _ = std::io::stdout().flush();
    axum::serve(listener, router(bus.clone(), options))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
