//! Workload (9): durable publishing on SQLite. `events` with [`SqliteStore`] (group commit,
//! one durable handler whose delivery is recorded) against raw `rusqlite` inserting the same
//! rows in batched transactions on one thread, in the same run, with the same `synchronous`
//! setting. Throughput is events per second over the whole run; latency is per `publish`
//! call, from the call until it resolves (the event is durable then).

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use events::store::{SqliteStore, Synchronous};
use events::{Bus, Event, handler};

#[derive(Event, Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "bench.tick_durable")]
pub struct TickDurable {
    pub seq: u64,
    pub amount: u64,
}

pub static DURABLE: AtomicU64 = AtomicU64::new(0);

/// Durable: its delivery is recorded in the store after each event.
#[handler(durable)]
fn tick_durable(ev: &TickDurable) {
    crate::handle(&DURABLE, ev.amount);
}

/// One measurement.
#[derive(Debug, Clone, Copy)]
pub struct Durable {
    pub events_per_sec: f64,
    /// `(p50, p99)` of one publish; `None` for raw inserts (no per-event call).
    pub latency: Option<(Duration, Duration)>,
}

/// `events`: `publishers` tasks each publish `per_publisher` events one after the other.
pub fn events_sqlite(sync: Synchronous, publishers: u64, per_publisher: u64) -> Durable {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open_with(dir.path().join("bench.db"), sync).expect("store");
    let bus = Bus::builder()
        .scope(module_path!())
        .store(store)
        .build()
        .expect("bus");
    measure(bus, publishers, per_publisher, |seq| TickDurable {
        seq,
        amount: 1,
    })
}

/// `publishers` tasks each publish `per` events made by `make` one after the other, on a
/// one-thread runtime (one core left for the store's writer thread: two threads for two
/// cores, as the raw side's one thread has one); then the bus is dropped (its writer commits
/// what is left).
pub fn measure<E: Event>(bus: Bus, publishers: u64, per: u64, make: fn(u64) -> E) -> Durable {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    measure_on(rt, bus, publishers, per, make)
}

/// [`measure`] on a runtime of the caller's (the one a bus with an outbox was built on).
pub fn measure_on<E: Event>(
    rt: tokio::runtime::Runtime,
    bus: Bus,
    publishers: u64,
    per: u64,
    make: fn(u64) -> E,
) -> Durable {
    let started = Instant::now();
    let latencies = rt.block_on(crate::publish_concurrently(&bus, publishers, per, make));
    let elapsed = started.elapsed();
    drop(bus);
    Durable {
        events_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        latency: Some(crate::percentiles(latencies)),
    }
}

/// Raw `rusqlite`: the same rows (ids, JSON payload, envelope columns), `batch` per
/// transaction, one thread, the same schema and pragmas.
pub fn raw_rusqlite(sync: Synchronous, total: u64, batch: u64) -> Durable {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = rusqlite::Connection::open(dir.path().join("raw.db")).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(
        None,
        "synchronous",
        if sync == Synchronous::Full {
            "FULL"
        } else {
            "NORMAL"
        },
    )
    .expect("sync");
    conn.execute_batch(
        "CREATE TABLE events (
            sequence INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE, name TEXT NOT NULL, version INTEGER NOT NULL,
            kind TEXT NOT NULL, time INTEGER NOT NULL, source TEXT NOT NULL, target TEXT,
            correlation_id TEXT NOT NULL, causation_id TEXT, depth INTEGER NOT NULL,
            priority INTEGER NOT NULL, metadata TEXT NOT NULL, payload TEXT NOT NULL);
         CREATE INDEX events_by_name ON events (name, sequence);
         CREATE INDEX events_by_correlation ON events (correlation_id, sequence);
         CREATE INDEX events_by_time ON events (time);",
    )
    .expect("schema");
    let mut conn = conn;
    let started = Instant::now();
    let mut n = 0;
    while n < total {
        let tx = conn.transaction().expect("tx");
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO events (id, name, version, kind, time, source, target,
                        correlation_id, causation_id, depth, priority, metadata, payload)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )
                .expect("prepare");
            for _ in 0..batch.min(total - n) {
                let id = events::EventId::new().to_string();
                let payload =
                    serde_json::to_string(&TickDurable { seq: n, amount: 1 }).expect("json");
                let time = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as i64);
                stmt.execute(rusqlite::params![
                    id,
                    "bench.tick_durable",
                    1,
                    "notification",
                    time,
                    "bench",
                    None::<String>,
                    id,
                    None::<String>,
                    0,
                    0,
                    "{}",
                    payload,
                ])
                .expect("insert");
                n += 1;
            }
        }
        tx.commit().expect("commit");
    }
    Durable {
        events_per_sec: total as f64 / started.elapsed().as_secs_f64(),
        latency: None,
    }
}
