//! The stand-alone `events` binary, which links no event types: it reads what a store holds
//! without them, and does everything else through a running service's admin API.

use std::process::{Command, Output};

use events::{Bus, Event, HandlerError, handler};

const EVENTS: &str = env!("CARGO_BIN_EXE_events");

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "standalone.ping")]
struct Ping {
    n: u64,
}

#[handler]
fn refuse(ping: &Ping) -> Result<(), HandlerError> {
    Err(HandlerError::permanent(format!("no {}", ping.n)))
}

fn run(args: &[&str]) -> Output {
    Command::new(EVENTS)
        .args(args)
        .env_remove("EVENTS_STORE")
        .env_remove("EVENTS_API")
        .env_remove("EVENTS_ADMIN_TOKEN")
        .output()
        .unwrap()
}

fn lines(out: &Output) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn without_types_it_reads_the_store_and_works_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let bus = Bus::builder()
        .no_retries()
        .store(events_sqlite::SqliteStore::open(&path).unwrap())
        .build()
        .unwrap();
    for n in 1..=3 {
        bus.publish(Ping { n }).await.unwrap();
    }
    bus.store().unwrap().flush().await.unwrap();

    // On the store: its events, though this binary knows no `standalone.ping`.
    let store = format!("sqlite:{}", path.display());
    let found = tokio::task::spawn_blocking(move || {
        lines(&run(&["--store", &store, "--json", "store", "query"]))
    })
    .await
    .unwrap();
    let numbers: Vec<_> = found
        .iter()
        .map(|e| e["payload"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3]);

    // Through the service's admin API: its dead letters and catalog.
    let options = events_http::HttpOptions::new().admin("t0ken");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        events_http::axum::serve(listener, events_http::router(bus, options))
            .await
            .unwrap();
    });
    let out = tokio::task::spawn_blocking(move || {
        let letters = lines(&run(&[
            "--api",
            &api,
            "--token",
            "t0ken",
            "--json",
            "dead-letters",
            "list",
        ]));
        let snapshot = run(&[
            "--api",
            &api,
            "--token",
            "t0ken",
            "compat",
            "save",
            "/dev/stdout",
        ]);
        (letters, snapshot)
    })
    .await
    .unwrap();
    let errors: Vec<_> = out
        .0
        .iter()
        .map(|l| l["error"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(errors, ["no 1", "no 2", "no 3"]);
    let snapshot = String::from_utf8(out.1.stdout).unwrap();
    assert!(snapshot.contains("\"standalone.ping.v1\""), "{snapshot}");
}
