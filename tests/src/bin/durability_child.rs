//! The durability tests' child process (`tests/tests/durability.rs`): fills a store, recovers
//! or replays it, or makes events fail for good, and prints `peak_rss_kib <n>` (the
//! process's `VmHWM`) at the end, so that memory is measured in a process of its own.
//!
//! ```text
//! durability_child fill <db> <count>          append <count> events, no handler runs
//! durability_child recover <db>               recover() them for a durable handler
//! durability_child replay <db>                replay(all) them
//! durability_child replay-slowly <db>         replay(all), printing `replayed <n>`, slowly
//! durability_child fail sqlite|memory <db> <count>
//!                                             publish <count> events a handler refuses
//! ```

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use events::store::{EventStore, MemoryStore, SqliteStore, StoreQuery, Synchronous};
use events::{Bus, Event, HandlerError, handler};

/// About 200 bytes of payload, like a small business event.
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "durability.order")]
struct Order {
    n: u64,
    customer: String,
    note: String,
}

impl Order {
    fn new(n: u64) -> Order {
        Order {
            n,
            customer: format!("customer-{:08}", n % 100_000),
            note: "x".repeat(160),
        }
    }
}

static DELIVERED: AtomicU64 = AtomicU64::new(0);
static REPLAYED: AtomicU64 = AtomicU64::new(0);

mod durable {
    use super::*;

    /// Durable and async: the blocking API leaves it pending, recovery delivers it; a replay
    /// sees `is_replay()` and does nothing.
    #[handler(durable)]
    async fn ship(ev: &Order, ctx: &events::Context) {
        if ctx.is_replay() {
            REPLAYED.fetch_add(1, Ordering::SeqCst);
            if std::env::var_os("SLOW_REPLAY").is_some() {
                println!("replayed {}", ev.n);
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            return;
        }
        DELIVERED.fetch_add(1, Ordering::SeqCst);
    }
}

mod failing {
    use super::*;

    /// Refuses every event: each becomes a dead letter.
    #[handler]
    fn refuse(ev: &Order) -> Result<(), HandlerError> {
        Err(HandlerError::permanent(format!("order {} refused", ev.n)))
    }
}

/// The process's peak resident set, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn bus(store: impl EventStore, scope: &'static str) -> Bus {
    Bus::builder()
        .scope(scope)
        .store(store)
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args[..] {
        ["fill", db, count] => fill(db, count.parse().unwrap()).await,
        ["recover", db] => {
            let bus = bus(SqliteStore::open(db).unwrap(), "durability_child::durable");
            let r = bus.recover().await.unwrap();
            println!("deliveries {}", r.deliveries);
            println!("delivered {}", DELIVERED.load(Ordering::SeqCst));
        }
        ["replay", db] | ["replay-slowly", db] => {
            let bus = bus(SqliteStore::open(db).unwrap(), "durability_child::durable");
            let r = bus.replay(StoreQuery::all()).await.unwrap();
            println!("replayed {}", r.events);
        }
        ["fail", kind, db, count] => {
            let count: u64 = count.parse().unwrap();
            let bus = match kind {
                "sqlite" => bus(
                    SqliteStore::open_with(db, Synchronous::Normal).unwrap(),
                    "durability_child::failing",
                ),
                _ => bus(MemoryStore::new(), "durability_child::failing"),
            };
            publish(&bus, count, 8).await;
            let kept = bus
                .dead_letters()
                .list(&events::DeadLetterFilter::all())
                .len();
            println!("dead_letters_in_memory {kept}");
            if let Some(store) = bus.store() {
                store.flush().await.unwrap();
            }
        }
        _ => {
            eprintln!("usage: see the module docs");
            std::process::exit(2);
        }
    }
    println!("peak_rss_kib {}", peak_rss_kib());
    let _ = std::io::stdout().flush();
}

/// Publishes `count` events with no handler on the bus, sixteen publishers at once (so
/// that commits are shared): a backlog that no durable handler has seen.
async fn fill(db: &str, count: u64) {
    let bus = Bus::builder()
        .no_handlers()
        .store(SqliteStore::open_with(db, Synchronous::Normal).unwrap())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    publish(&bus, count, 16).await;
    bus.store().unwrap().flush().await.unwrap();
    println!("filled {count}");
}

/// Publishes orders 0..count from `lanes` tasks.
async fn publish(bus: &Bus, count: u64, lanes: u64) {
    let mut tasks = Vec::new();
    for lane in 0..lanes {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = lane;
            while n < count {
                bus.publish(Order::new(n)).await.unwrap();
                n += lanes;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
