//! The `events` command line linked with events and handlers of its own, as a user links it
//! (`events::cli`), for `tests/tests/cli.rs`. Besides the command line itself:
//!
//! - `cli_child seed <store> <schema|-> <first> <count> [unhandled]`: publishes `cli.order`
//!   events numbered from `first`; `mail` fails for good on even numbers (a dead letter
//!   each), `totals` (durable, a projection) counts them. With `unhandled`, no handler runs
//!   (the events wait for `totals`: lag).
//! - `cli_child serve <store> <schema|->`: the admin API on a free port with token
//!   `cli-token`; prints `listening http://..`, then serves until killed.
//!
//! With `CLI_SLOW_MS` set, `totals` sleeps that long per event (a rebuild with progress).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use events::{Bus, BusBuilder, Event, HandlerError, handler};

/// An order, with a card number no listing may show.
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "cli.order")]
struct Order {
    n: u64,
    #[event(redact)]
    card: String,
    /// How many items.
    items: u32,
}

static TOTAL: AtomicU64 = AtomicU64::new(0);

#[handler(durable)]
fn totals(order: &Order) {
    if let Some(ms) = std::env::var("CLI_SLOW_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    TOTAL.fetch_add(order.n, Ordering::Relaxed);
}

#[handler]
fn mail(order: &Order) -> Result<(), HandlerError> {
    if order.n % 2 == 0 {
        return Err(HandlerError::permanent(format!(
            "mail server refused order {}\u{1b}[31m",
            order.n
        )));
    }
    Ok(())
}

fn with_store(builder: BusBuilder, store: &str, schema: &str) -> BusBuilder {
    if let Some(path) = store.strip_prefix("sqlite:") {
        return builder.store(events::store::SqliteStore::open(path).unwrap());
    }
    let mut options = events::postgres::PostgresOptions::new();
    if schema != "-" {
        options = options.schema(schema);
    }
    builder.store(events::postgres::PostgresStore::connect(store, options).unwrap())
}

#[tokio::main]
async fn seed(args: &[String]) -> ExitCode {
    let first: u64 = args[4].parse().unwrap();
    let count: u64 = args[5].parse().unwrap();
    let mut builder = with_store(Bus::builder(), &args[2], &args[3]).no_retries();
    if args.get(6).is_some_and(|a| a == "unhandled") {
        builder = builder.no_handlers();
    }
    let bus = builder.build().unwrap();
    for n in first..first + count {
        bus.publish(Order {
            n,
            card: format!("4111-{n}"),
            items: 1,
        })
        .await
        .unwrap();
    }
    bus.shutdown(std::time::Duration::from_secs(10)).await;
    ExitCode::SUCCESS
}

#[tokio::main]
async fn serve(args: &[String]) -> ExitCode {
    let bus = with_store(Bus::builder(), &args[2], &args[3])
        .no_retries()
        .build()
        .unwrap();
    let options = events::http::HttpOptions::new()
        .admin("cli-token")
        .rebuildable("cli_child::totals", || TOTAL.store(0, Ordering::Relaxed));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("listening http://{}", listener.local_addr().unwrap());
    events::http::axum::serve(listener, events::http::router(bus, options))
        .await
        .unwrap();
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("seed") => seed(&args),
        Some("serve") => serve(&args),
        _ => events::cli::Cli::new(Bus::builder().no_retries())
            .rebuildable("cli_child::totals", || TOTAL.store(0, Ordering::Relaxed))
            .run(),
    }
}
