//! The inbox under SIGKILL: a consumer whose `#[handler(inbox)]` handler writes to
//! PostgreSQL is killed mid-handler (after its write, before its commit) and just after its
//! commit (before the broker has the ack), again and again; after the redeliveries, each
//! event's row exists exactly once. The child is `src/bin/inbox_child.rs`.

#![allow(unreachable_pub)]

use std::process::Command;
use std::time::{Duration, Instant};

use events::nats::{Nats, NatsOptions};
use events::postgres::{PostgresOptions, PostgresStore, tokio_postgres};
use events::{Bus, Event};
use events_tests::{ChildLines, NatsServer, SeededRng};

const CHILD: &str = env!("CARGO_BIN_EXE_inbox_child");
const EVENTS: i64 = 150;

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "inbox.charge")]
struct Charge {
    n: i64,
}

fn config() -> String {
    std::env::var("EVENTS_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned())
}

/// Starts a consumer child.
fn start_consumer(schema: &str, url: &str) -> ChildLines {
    let mut command = Command::new(CHILD);
    command.args([&config(), schema, url]);
    ChildLines::spawn(command)
}

async fn rows(client: &tokio_postgres::Client, schema: &str) -> (i64, i64) {
    let r = client
        .query_one(
            &format!("SELECT COUNT(*), COUNT(DISTINCT n) FROM \"{schema}\".charges"),
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_events_write_exists_once_after_sigkills_mid_handler() {
    let mut rng = SeededRng::from_env("INBOX_CRASH_SEED");
    let schema = format!("events_inbox_{}", std::process::id());
    let server = NatsServer::start();
    let url = server.url();
    // The schema (the store's tables) and the application's table.
    drop(PostgresStore::connect(&config(), PostgresOptions::new().schema(&schema)).unwrap());
    let (client, connection) = tokio_postgres::connect(&config(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "CREATE TABLE \"{schema}\".charges (n BIGINT NOT NULL)"
        ))
        .await
        .unwrap();
    let publisher = Bus::builder()
        .no_handlers()
        .transport(
            Nats::connect(&url, NatsOptions::new("inbox"))
                .await
                .unwrap(),
        )
        .build()
        .unwrap();
    for n in 1..=EVENTS {
        publisher.publish(Charge { n }).await.unwrap();
    }

    let mut kills = (0, 0);
    for round in 0..8 {
        let consumer = start_consumer(&schema, &url);
        // Odd rounds die between a write and its commit; even ones just after a commit.
        let before_commit = round % 2 == 1;
        let wanted = if before_commit {
            "charging "
        } else {
            "charged "
        };
        let skip = rng.below(10);
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let Some(line) = consumer.line(Duration::from_secs(5)) else {
                break;
            };
            if line.starts_with(wanted) {
                seen += 1;
                if seen > skip {
                    break;
                }
            }
        }
        consumer.kill();
        if before_commit {
            kills.0 += 1;
        } else {
            kills.1 += 1;
        }
    }

    // A last consumer, left alone, handles what is left and what comes again.
    let consumer = start_consumer(&schema, &url);
    let deadline = Instant::now() + Duration::from_secs(60);
    while rows(&client, &schema).await.1 < EVENTS {
        assert!(Instant::now() < deadline, "not every event was handled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Redeliveries of what was committed but not acknowledged arrive after the ack wait.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut hits = 0;
    while let Some(line) = consumer.try_line() {
        if let Some(k) = line.strip_prefix("hits ") {
            hits = k.parse().unwrap();
        }
    }
    consumer.kill();
    let (all, distinct) = rows(&client, &schema).await;
    assert_eq!(distinct, EVENTS);
    assert_eq!(all, EVENTS, "an event's write exists more than once");
    eprintln!(
        "{EVENTS} events, {} kills before a commit, {} after one; the last consumer's inbox \
         hits: {hits}",
        kills.0, kills.1
    );
    client
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
    drop(server);
}
