//! Workload (11): durable publishing on PostgreSQL. `events` with `PostgresStore` (1,000
//! concurrent publishers, group commit: each commit appends a run of events with one
//! multi-row insert) against raw inserts of the same rows with the same client (`postgres`),
//! 1,000 rows per transaction through one prepared statement, on one connection, in the same
//! run. Each side writes into a schema of its own, dropped after. Throughput is events per
//! second over the whole run; latency is per `publish` call, until it resolves (the event is
//! committed then).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use events::postgres::{PostgresOptions, PostgresStore};
use events::{Bus, Event, handler};

use crate::durable::Durable;

#[derive(Event, Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "bench.tick_postgres")]
pub struct TickPostgres {
    pub seq: u64,
    pub amount: u64,
}

pub static TICKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[handler]
fn tick_postgres(ev: &TickPostgres) {
    crate::handle(&TICKS, ev.amount);
}

/// The server: `EVENTS_POSTGRES`, else the machine's (`127.0.0.1:5432`, database `test`).
pub fn config() -> String {
    std::env::var("EVENTS_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned())
}

fn schema(side: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "events_bench_{side}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether the server answers (the row is skipped, with the reason, when it does not).
pub fn available() -> Result<(), String> {
    postgres::Client::connect(&config(), postgres::NoTls)
        .map(drop)
        .map_err(|e| format!("no PostgreSQL at `{}`: {e}", config()))
}

/// `events`: `publishers` tasks each publish `per_publisher` events one after the other.
pub fn events_postgres(publishers: u64, per_publisher: u64) -> Durable {
    let store = PostgresStore::connect(
        &config(),
        PostgresOptions::new().schema(schema("events")).temporary(),
    )
    .expect("store");
    let bus = Bus::builder()
        .scope(module_path!())
        .store(store)
        .build()
        .expect("bus");
    crate::durable::measure(bus, publishers, per_publisher, |seq| TickPostgres {
        seq,
        amount: 1,
    })
}

/// How the raw side writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Raw {
    /// One prepared `INSERT` per row, `batch` rows per transaction: what most code does.
    PerRow,
    /// One `INSERT .. SELECT FROM UNNEST(..)` of `batch` rows per transaction: the ceiling
    /// of one connection.
    MultiRow,
}

/// Raw `postgres`: the same rows and table, `batch` rows per transaction, one connection.
pub fn raw_postgres(total: u64, batch: u64, how: Raw) -> Durable {
    let schema = schema("raw");
    let mut client = postgres::Client::connect(&config(), postgres::NoTls).expect("connect");
    client
        .batch_execute(&format!(
            "CREATE SCHEMA \"{schema}\"; SET search_path TO \"{schema}\";
             CREATE TABLE events (
                sequence BIGINT PRIMARY KEY, id UUID NOT NULL UNIQUE, name TEXT NOT NULL,
                version INTEGER NOT NULL, kind TEXT NOT NULL, time BIGINT NOT NULL,
                source TEXT NOT NULL, target TEXT, correlation_id UUID NOT NULL,
                causation_id UUID, depth INTEGER NOT NULL, priority INTEGER NOT NULL,
                metadata TEXT NOT NULL, payload TEXT NOT NULL);
             CREATE INDEX events_by_name ON events (name, sequence);
             CREATE INDEX events_by_correlation ON events (correlation_id, sequence);
             CREATE INDEX events_by_time ON events (time);"
        ))
        .expect("schema");
    let insert = client
        .prepare(
            "INSERT INTO events (sequence, id, name, version, kind, time, source, target,
                                 correlation_id, causation_id, depth, priority, metadata, payload)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .expect("prepare");
    let unnest = client
        .prepare(
            "INSERT INTO events (sequence, id, name, version, kind, time, source, target,
                                 correlation_id, causation_id, depth, priority, metadata, payload)
             SELECT * FROM UNNEST($1::int8[], $2::uuid[], $3::text[], $4::int4[], $5::text[],
                                  $6::int8[], $7::text[], $8::text[], $9::uuid[], $10::uuid[],
                                  $11::int4[], $12::int4[], $13::text[], $14::text[])",
        )
        .expect("prepare");
    let started = Instant::now();
    let mut n = 0u64;
    while n < total && how == Raw::MultiRow {
        let rows = batch.min(total - n);
        let mut cols: (Vec<i64>, Vec<uuid::Uuid>, Vec<i64>, Vec<String>) = Default::default();
        for i in 0..rows {
            cols.0.push((n + i) as i64 + 1);
            cols.1.push(events::EventId::new().as_uuid());
            cols.2.push(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as i64),
            );
            cols.3.push(
                serde_json::to_string(&TickPostgres {
                    seq: n + i,
                    amount: 1,
                })
                .expect("json"),
            );
        }
        let k = rows as usize;
        let names = vec!["bench.tick_postgres"; k];
        let versions = vec![1i32; k];
        let kinds = vec!["notification"; k];
        let sources = vec!["bench"; k];
        let targets = vec![None::<String>; k];
        let causes = vec![None::<uuid::Uuid>; k];
        let zeros = vec![0i32; k];
        let metadata = vec!["{}"; k];
        let mut tx = client.transaction().expect("tx");
        tx.execute(
            &unnest,
            &[
                &cols.0, &cols.1, &names, &versions, &kinds, &cols.2, &sources, &targets, &cols.1,
                &causes, &zeros, &zeros, &metadata, &cols.3,
            ],
        )
        .expect("insert");
        tx.commit().expect("commit");
        n += rows;
    }
    while n < total {
        let mut tx = client.transaction().expect("tx");
        for _ in 0..batch.min(total - n) {
            let id = events::EventId::new().as_uuid();
            let payload = serde_json::to_string(&TickPostgres { seq: n, amount: 1 }).expect("json");
            let time = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i64);
            tx.execute(
                &insert,
                &[
                    &(n as i64 + 1),
                    &id,
                    &"bench.tick_postgres",
                    &1i32,
                    &"notification",
                    &time,
                    &"bench",
                    &None::<String>,
                    &id,
                    &None::<uuid::Uuid>,
                    &0i32,
                    &0i32,
                    &"{}",
                    &payload,
                ],
            )
            .expect("insert");
            n += 1;
        }
        tx.commit().expect("commit");
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    client
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .expect("drop");
    Durable {
        events_per_sec: rate,
        latency: None,
    }
}
