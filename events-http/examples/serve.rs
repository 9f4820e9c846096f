//! A service to point outside tools at (`.ci/run` runs schemathesis against it): a bus on a
//! SQLite file in a temporary directory, with a durable handler and one that fails for good,
//! a few events published (so the store and the dead letters have rows), served on
//! `127.0.0.1:<port>` with admin token `admin-token` (the dashboard:
//! `http://127.0.0.1:<port>/admin/dashboard#token=admin-token`).
//!
//! `cargo run -p events-http --example serve -- <port>`

use events::{Bus, Event, handler};

/// An order was placed.
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "serve.order.placed")]
struct OrderPlaced {
    order_id: u64,
    #[event(redact)]
    card: String,
}

#[handler(durable)]
fn book(_: &OrderPlaced) {}

#[handler]
fn mail(_: &OrderPlaced) -> Result<(), events::HandlerError> {
    Err(events::HandlerError::permanent("the mail server said no"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let dir = std::env::temp_dir().join(format!("events-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = events_sqlite::SqliteStore::open(dir.join("serve.db"))?;
    let metrics = events::observe::Metrics::new();
    let bus = Bus::builder()
        .store(store)
        .observer(metrics.clone())
        .no_retries()
        .build()?;
    for n in 0..5 {
        bus.publish(OrderPlaced {
            order_id: n,
            card: format!("4111-{n}"),
        })
        .await?;
    }
    let options = events_http::HttpOptions::new()
        .admin("admin-token")
        .metrics(metrics)
        .rebuildable("serve::book", || {});
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://127.0.0.1:{port}");
    axum::serve(listener, events_http::router(bus, options)).await?;
    Ok(())
}
