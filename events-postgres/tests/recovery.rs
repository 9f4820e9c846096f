//! Two processes run `recover()` at once on one store with a backlog for a durable handler:
//! each stored event is delivered to it once in all, never by both.

use std::process::{Command, Stdio};

use events::store::{EventStore, StoredEvent};
use events::{Bus, Context, Event, EventId, handler};
use events_postgres::{PostgresOptions, PostgresStore};

const BACKLOG: u64 = 300;

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "pg.job")]
struct Job {
    n: u64,
}

/// Prints each delivery's sequence; slow enough that the two recoveries overlap.
#[handler(durable, name = "pg.worker")]
fn work(_: &Job, ctx: &Context) {
    println!("delivered {}", ctx.sequence().unwrap_or(0));
    std::thread::sleep(std::time::Duration::from_millis(2));
}

fn config() -> String {
    std::env::var("EVENTS_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned())
}

/// The child's part: run only with `EVENTS_PG_RECOVER=<schema>`.
#[test]
fn recover_child() {
    let Ok(schema) = std::env::var("EVENTS_PG_RECOVER") else {
        return;
    };
    let store = PostgresStore::connect(&config(), PostgresOptions::new().schema(schema)).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let bus = Bus::builder().store(store).build().unwrap();
        let report = bus.recover().await.unwrap();
        println!("recovered {}", report.deliveries);
    });
}

#[test]
fn two_processes_recovering_at_once_never_both_deliver_an_event() {
    if std::env::var("EVENTS_PG_RECOVER").is_ok() {
        return;
    }
    let schema = format!("events_recover_{}", std::process::id());
    let store = PostgresStore::connect(
        &config(),
        PostgresOptions::new().schema(&schema).temporary(),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        for n in 0..BACKLOG {
            let mut e = StoredEvent::new(EventId::new(), "pg.job");
            e.payload = format!("{{\"n\":{n}}}");
            store.append(e).await.unwrap();
        }
    });

    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "recover_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("EVENTS_PG_RECOVER", &schema)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut delivered = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a recovering process failed");
        let text = String::from_utf8(out.stdout).unwrap();
        let mine: Vec<u64> = text
            .lines()
            // libtest's `test recover_child ... ` may start the first line.
            .filter_map(|l| l.split("delivered ").nth(1))
            .map(|n| n.trim().parse().unwrap())
            .collect();
        eprintln!("one process delivered {}", mine.len());
        delivered.extend(mine);
    }
    delivered.sort_unstable();
    let expected: Vec<u64> = (1..=BACKLOG).collect();
    assert_eq!(delivered, expected, "each stored event exactly once in all");
    let _ = Job { n: 0 };
}
