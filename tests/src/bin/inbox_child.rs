//! The inbox crash test's child process (`tests/tests/inbox_crash.rs`): consumes
//! `inbox.charge` events from NATS with an `#[handler(inbox)]` handler that writes a row to
//! PostgreSQL and records its inbox key in the same transaction. It prints `charging <n>`
//! after the write (before the commit: a kill then rolls both back), `charged <n>` after the
//! commit (a kill then, before the ack, makes a redelivery the inbox must skip), and
//! `hits <k>` (the bus's inbox hits) every 100 ms.
//!
//! `inbox_child <postgres config> <schema> <nats host:port>`

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use events::nats::{Nats, NatsOptions};
use events::outbox::InboxKey;
use events::postgres::tokio_postgres;
use events::postgres::{PostgresOptions, PostgresStore};
use events::{Bus, Event, HandlerError, State, handler};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "inbox.charge")]
struct Charge {
    n: i64,
}

struct Db {
    client: tokio::sync::Mutex<tokio_postgres::Client>,
    store: Arc<PostgresStore>,
}

fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

fn failed(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::transient(e.to_string())
}

/// Charges once per event: the row and the inbox record commit together.
#[handler(inbox, name = "inbox.charge_card")]
async fn charge(ev: &Charge, key: InboxKey, db: State<Db>) -> Result<(), HandlerError> {
    let mut client = db.client.lock().await;
    let tx = client.transaction().await.map_err(failed)?;
    if !db.store.record_inbox(&tx, &key).await.map_err(failed)? {
        return Ok(()); // handled already: no second effect
    }
    tx.execute("INSERT INTO charges (n) VALUES ($1)", &[&ev.n])
        .await
        .map_err(failed)?;
    say(format_args!("charging {}", ev.n));
    tokio::time::sleep(Duration::from_millis(3)).await;
    tx.commit().await.map_err(failed)?;
    say(format_args!("charged {}", ev.n));
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, config, schema, url] = &args[..] else {
        eprintln!("usage: inbox_child <postgres config> <schema> <nats host:port>");
        std::process::exit(2);
    };
    let store = Arc::new(
        PostgresStore::connect(config, PostgresOptions::new().schema(schema.clone()))
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let (client, connection) = tokio_postgres::connect(config, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(connection);
    client
        .batch_execute(&format!("SET search_path TO \"{schema}\""))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let nats = Nats::connect(
        url,
        NatsOptions::new("inbox")
            .ack_wait(Duration::from_millis(500))
            .prefetch(4),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let bus = Bus::builder()
        .scope(module_path!())
        .state(Db {
            client: tokio::sync::Mutex::new(client),
            store: Arc::clone(&store),
        })
        .store(store)
        .transport(nats)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let _consumers = bus.consume().await.unwrap_or_else(|e| panic!("{e}"));
    loop {
        say(format_args!("hits {}", bus.inbox_hits()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
