//! The crash test's child process (`tests/tests/crash.rs`): publishes events to a SQLite
//! store until it is killed, printing `ack <n>` after each `publish` returns; its durable
//! handler appends each event's number to a log file. Run with `recover` instead of `run`,
//! it only recovers and exits.
//!
//! `crash_child run|recover <db> <handled-log> <first number>`

use std::io::Write;
use std::sync::Mutex;

use events::{Bus, Event, handler, store::SqliteStore};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "crash.tick")]
struct Tick {
    n: u64,
}

static LOG: Mutex<Option<std::fs::File>> = Mutex::new(None);

/// Durable: every stored tick reaches it at least once, crash or not.
#[handler(durable)]
fn record(ev: &Tick) -> Result<(), events::HandlerError> {
    let mut log = LOG.lock().unwrap_or_else(|p| p.into_inner());
    let file = log
        .as_mut()
        .ok_or_else(|| events::HandlerError::permanent("no log file"))?;
    // One `write` call per line: `writeln!` on a `File` writes the number and the newline
    // separately, and a kill between the two left a line without its end, which the
    // recovered run's next line then joined (seen once in CI: one handled event unread).
    file.write_all(format!("{}\n", ev.n).as_bytes())
        .map_err(events::HandlerError::transient)?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, db, log, first] = &args[..] else {
        eprintln!("usage: crash_child run|recover <db> <handled-log> <first number>");
        std::process::exit(2);
    };
    let first: u64 = first.parse().unwrap_or(0);
    *LOG.lock().unwrap_or_else(|p| p.into_inner()) = Some(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("{log}: {e}")),
    );
    let store = SqliteStore::open(db).unwrap_or_else(|e| panic!("{db}: {e}"));
    let bus = Bus::builder()
        .scope(module_path!())
        .store(store)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let recovered = bus.recover().await.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("recovered {recovered:?}");
    if mode == "recover" {
        return;
    }
    // Several publishers at once, so that commits are shared.
    let mut tasks = Vec::new();
    for lane in 0..8u64 {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            loop {
                let n = first + lane + 8 * i;
                i += 1;
                if bus.publish(Tick { n }).await.is_ok() {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "ack {n}");
                    let _ = out.flush();
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}
