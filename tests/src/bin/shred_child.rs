//! The child process of the personal-data and retention crash and memory tests
//! (`tests/tests/shred_crash.rs`), on a SQLite file or a PostgreSQL schema
//! (`postgres:<schema>`).
//!
//! - `run <first>`: publishes `crash.person` events numbered from `first`, each about its
//!   own data subject `s<n>` (so each makes a key), printing `ack <n>` as each `publish`
//!   returns; every third event it forgets the subject of three events before, printing
//!   `forget s<m>` before and `forgot s<m>` once `forget` returns; with each event it
//!   publishes a `crash.note` and every tenth runs retention (keep the newest 20 notes),
//!   printing `purged`. Until it is killed.
//! - `check`: prints `seen <n> known|forgotten` for each stored `crash.person`, runs
//!   retention once more and prints `notes <count>`, then `done`.
//! - `fill <count>`: a backlog of `count` notes (SQLite), each with a delivery record;
//!   prints `filled`.
//! - `purge`: runs retention (no note kept but the log's newest event) and prints
//!   `deleted <n>` and `peak_kib <VmHWM>`, its peak resident memory.
//!
//! `shred_child <db file | postgres:schema> <mode> [arg]`

use std::io::Write;

use events::personal::Personal;
use events::retention::{Keep, Retention};
use events::store::{EventStore, SqliteStore, StoreQuery};
use events::{Bus, Event};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "crash.person")]
struct Person {
    n: u64,
    #[event(subject)]
    subject: String,
    email: Personal<String>,
}

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "crash.note")]
struct Note {
    n: u64,
}

fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The email of event `n`: what a reader must find again unless its subject is forgotten.
fn email(n: u64) -> String {
    format!("person{n}@example.com")
}

fn open(place: &str) -> std::sync::Arc<dyn EventStore> {
    match place.strip_prefix("postgres:") {
        Some(schema) => {
            use events::postgres::{PostgresOptions, PostgresStore};
            let config = std::env::var("EVENTS_POSTGRES")
                .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into());
            std::sync::Arc::new(
                PostgresStore::connect(&config, PostgresOptions::new().schema(schema))
                    .unwrap_or_else(|e| panic!("{e}")),
            )
        }
        None => std::sync::Arc::new(SqliteStore::open(place).unwrap_or_else(|e| panic!("{e}"))),
    }
}

fn bus(store: std::sync::Arc<dyn EventStore>, keep_notes: u64) -> Bus {
    Bus::builder()
        .no_handlers()
        .store(store)
        .retention(Retention::new().keep("crash.note", Keep::count(keep_notes)))
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Publishes `note` and waits until the store has it on disk.
async fn publish_committed(bus: &Bus, note: Note) {
    bus.publish(note).await.unwrap_or_else(|e| panic!("{e}"));
    bus.store()
        .unwrap_or_else(|| unreachable!())
        .flush()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

fn query(name: &str) -> StoreQuery {
    StoreQuery::all()
        .name(name)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (place, mode, arg) = match &args[..] {
        [_, place, mode] => (place, mode.as_str(), 0),
        [_, place, mode, arg] => (place, mode.as_str(), arg.parse().unwrap_or(0)),
        _ => {
            eprintln!("usage: shred_child <db file | postgres:schema> <mode> [arg]");
            std::process::exit(2);
        }
    };
    let store = open(place);
    match mode {
        "run" => {
            let bus = bus(store, 20);
            for n in arg.. {
                let person = Person {
                    n,
                    subject: format!("s{n}"),
                    email: Personal::new(email(n)),
                };
                bus.publish(person).await.unwrap_or_else(|e| panic!("{e}"));
                say(format_args!("ack {n}"));
                bus.publish(Note { n })
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                if n % 3 == 0 && n >= arg + 3 {
                    let subject = format!("s{}", n - 3);
                    say(format_args!("forget {subject}"));
                    bus.forget(&subject).unwrap_or_else(|e| panic!("{e}"));
                    say(format_args!("forgot {subject}"));
                }
                if n % 10 == 0 {
                    bus.enforce_retention()
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    say(format_args!("purged"));
                }
            }
        }
        "check" => {
            let bus = bus(store, 20);
            let store = bus.store().unwrap_or_else(|| unreachable!());
            for stored in store
                .query(&query("crash.person"))
                .unwrap_or_else(|e| panic!("{e}"))
            {
                let person: Person = bus.decode(&stored).unwrap_or_else(|e| panic!("{e}"));
                let state = match person.email.get() {
                    Some(e) if *e == email(person.n) => "known",
                    Some(other) => panic!("event {} reads as {other}", person.n),
                    None => "forgotten",
                };
                say(format_args!("seen {} {state}", person.n));
            }
            bus.enforce_retention()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let notes = store
                .count(&query("crash.note"))
                .unwrap_or_else(|e| panic!("{e}"));
            say(format_args!("notes {notes}"));
            say(format_args!("done"));
        }
        "fill" => {
            // One note published, copied `count - 2` times in SQL (a backlog of a million
            // takes minutes through a debug build's publish, seconds this way), each copy
            // with a delivery record, then one more published: the store's own rows around
            // the copies, its high-water mark the last.
            let bus = bus(store, 0);
            publish_committed(&bus, Note { n: 0 }).await;
            let conn =
                events::store::rusqlite::Connection::open(place).unwrap_or_else(|e| panic!("{e}"));
            conn.execute_batch(&format!(
                "BEGIN;
                 INSERT OR IGNORE INTO handlers (id, name) VALUES (1000, 'crash.durable');
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {})
                 INSERT INTO events (id, name, version, kind, time, source, target,
                                     correlation_id, causation_id, depth, priority,
                                     metadata, payload)
                 SELECT printf('%s-%d', e.id, n.i), e.name, e.version, e.kind, e.time + n.i,
                        e.source, e.target, e.correlation_id, e.causation_id, e.depth,
                        e.priority, e.metadata, e.payload
                 FROM events e, n WHERE e.sequence = (SELECT MIN(sequence) FROM events);
                 INSERT INTO deliveries (handler, sequence) SELECT 1000, sequence FROM events;
                 COMMIT;",
                arg.saturating_sub(2)
            ))
            .unwrap_or_else(|e| panic!("{e}"));
            drop(conn);
            publish_committed(&bus, Note { n: arg }).await;
            say(format_args!("filled"));
        }
        "purge" => {
            let bus = bus(store, 0);
            let report = bus
                .enforce_retention()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let deleted: u64 = report.deleted.iter().map(|(_, n)| n).sum();
            say(format_args!("deleted {deleted}"));
            say(format_args!("peak_kib {}", peak_kib()));
        }
        other => {
            eprintln!("unknown mode {other}");
            std::process::exit(2);
        }
    }
}
