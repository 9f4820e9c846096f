//! Two processes write one stream at once, on a shared SQLite file and on a shared
//! PostgreSQL schema: at every expected version exactly one append wins (the other is a
//! conflict), and `Aggregates::execute` loses no update.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use events::postgres::{PostgresOptions, PostgresStore};
use events::store::EventStore;
use events_tests::ChildLines;
use events_tests::counter::Counter;

const CHILD: &str = env!("CARGO_BIN_EXE_stream_child");
const N: u64 = 150;

fn config() -> String {
    std::env::var("EVENTS_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned())
}

/// Two children of `mode` on `target`/`schema`, started together; each one's lines.
fn race(target: &str, schema: &str, mode: &str) -> [Vec<String>; 2] {
    let mut children: Vec<ChildLines> = ["a", "b"]
        .iter()
        .map(|name| {
            let mut command = Command::new(CHILD);
            command
                .args([target, schema, mode, &N.to_string(), name])
                .stdin(Stdio::piped());
            ChildLines::spawn(command)
        })
        .collect();
    for child in &children {
        assert_eq!(
            child.line(Duration::from_secs(60)).as_deref(),
            Some("ready")
        );
    }
    for child in &mut children {
        child.send("go");
    }
    let lines = children
        .iter()
        .map(|c| c.lines_until("end", Duration::from_secs(120)))
        .collect::<Vec<_>>();
    for child in children {
        assert!(child.wait(), "a child failed");
    }
    [lines[0].clone(), lines[1].clone()]
}

/// At each version exactly one of the two won.
fn one_winner_per_version(lines: &[Vec<String>; 2]) {
    let won = |l: &Vec<String>| -> BTreeSet<u64> {
        l.iter()
            .filter_map(|s| s.strip_prefix("won ")?.parse().ok())
            .collect()
    };
    let lost = |l: &Vec<String>| l.iter().filter(|s| s.starts_with("lost ")).count() as u64;
    let (a, b) = (won(&lines[0]), won(&lines[1]));
    assert!(
        a.is_disjoint(&b),
        "a version won twice: {:?}",
        a.intersection(&b)
    );
    let all: BTreeSet<u64> = a.union(&b).copied().collect();
    assert_eq!(all, (0..N).collect(), "every version won once");
    assert_eq!(
        lost(&lines[0]) + lost(&lines[1]),
        N,
        "the other append conflicted"
    );
}

/// No increment lost: both processes' `N` commands are in the counter.
fn no_lost_update(lines: &[Vec<String>; 2], bus: &events::Bus) -> u64 {
    for l in lines {
        assert_eq!(
            l.iter().filter(|s| s.starts_with("done ")).count() as u64,
            N
        );
    }
    let counter = bus
        .aggregates::<Counter>()
        .load(&"shared".to_owned())
        .unwrap();
    assert_eq!((counter.state.value, counter.version), (2 * N, 2 * N));
    // Retries happened: the attempts beyond one per command.
    lines
        .iter()
        .flatten()
        .filter_map(|s| s.strip_prefix("done ")?.parse::<u64>().ok())
        .map(|attempts| attempts - 1)
        .sum()
}

fn check_log(store: &dyn EventStore) {
    let streams = store.streams().unwrap();
    assert_eq!(streams.stream_version("tests.counter-raw").unwrap(), N);
    let raw = streams.read_stream("tests.counter-raw", 0).unwrap();
    assert_eq!(raw.len() as u64, N);
    let sequences: Vec<u64> = raw.iter().map(|r| r.as_ref().unwrap().sequence).collect();
    assert!(
        sequences.windows(2).all(|w| w[0] < w[1]),
        "stream order is log order"
    );
}

#[test]
fn two_processes_on_one_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streams.db");
    drop(events::store::SqliteStore::open(&path).unwrap());
    let target = path.to_str().unwrap();
    one_winner_per_version(&race(target, "-", "raw"));
    let lines = race(target, "-", "execute");
    let store = events::store::SqliteStore::open(&path).unwrap();
    check_log(&store);
    let bus = events::Bus::builder()
        .no_handlers()
        .store(store)
        .build()
        .unwrap();
    let retries = no_lost_update(&lines, &bus);
    eprintln!("sqlite: {retries} conflicts retried by execute");
}

#[test]
fn two_processes_on_one_postgres_schema() {
    let schema = format!("events_streams_{}", std::process::id());
    drop(PostgresStore::connect(&config(), PostgresOptions::new().schema(&schema)).unwrap());
    let result = std::panic::catch_unwind(|| {
        one_winner_per_version(&race(&config(), &schema, "raw"));
        let lines = race(&config(), &schema, "execute");
        let store =
            PostgresStore::connect(&config(), PostgresOptions::new().schema(&schema)).unwrap();
        check_log(&store);
        let bus = events::Bus::builder()
            .no_handlers()
            .store(store)
            .build()
            .unwrap();
        let retries = no_lost_update(&lines, &bus);
        eprintln!("postgres: {retries} conflicts retried by execute");
    });
    drop_schema(&schema);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn drop_schema(schema: &str) {
    use events::postgres::tokio_postgres;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&config(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await
            .unwrap();
    });
}

/// A writer SIGKILLed at random points, 6 times per store: after each kill the stream holds
/// whole commands only (two events each: an even version), every command the child saw
/// acknowledged, and reads back contiguous; the next writer goes on from there.
fn killed_writers_leave_whole_commands(target: &str, schema: &str, open: &dyn Fn() -> events::Bus) {
    let mut rng = events_tests::SeededRng::from_env("STREAM_CRASH_SEED");
    let mut acknowledged = 0;
    for _ in 0..6 {
        let mut command = Command::new(CHILD);
        command
            .args([target, schema, "pairs", "1000000", "k"])
            .stdin(Stdio::piped());
        let mut child = ChildLines::spawn(command);
        assert_eq!(
            child.line(Duration::from_secs(60)).as_deref(),
            Some("ready")
        );
        child.send("go");
        let wait = Duration::from_millis(rng.below(300) as u64 + 50);
        let start = std::time::Instant::now();
        while start.elapsed() < wait {
            if let Some(line) = child.line(Duration::from_millis(5)) {
                if let Some(v) = line.strip_prefix("done ") {
                    acknowledged = acknowledged.max(v.parse::<u64>().unwrap());
                }
            }
        }
        child.kill();
        let bus = open();
        let loaded = bus
            .aggregates::<Counter>()
            .load(&"shared".to_owned())
            .unwrap();
        assert_eq!(loaded.version % 2, 0, "a half command was stored");
        assert!(
            loaded.version >= acknowledged,
            "acknowledged {acknowledged}, stored {}",
            loaded.version
        );
        assert_eq!(
            loaded.state.value, loaded.version,
            "every event applied once"
        );
        let streams = bus.store().unwrap().streams().unwrap();
        let rows = streams.read_stream("tests.counter-shared", 0).unwrap();
        assert_eq!(rows.len() as u64, loaded.version, "contiguous");
        acknowledged = loaded.version;
    }
    assert!(acknowledged > 0, "the writer made progress");
}

#[test]
fn sigkilled_writers_leave_whole_commands_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    drop(events::store::SqliteStore::open(&path).unwrap());
    let open = || {
        events::Bus::builder()
            .no_handlers()
            .store(events::store::SqliteStore::open(&path).unwrap())
            .build()
            .unwrap()
    };
    killed_writers_leave_whole_commands(path.to_str().unwrap(), "-", &open);
}

#[test]
fn sigkilled_writers_leave_whole_commands_on_postgres() {
    let schema = format!("events_streams_crash_{}", std::process::id());
    drop(PostgresStore::connect(&config(), PostgresOptions::new().schema(&schema)).unwrap());
    let result = std::panic::catch_unwind(|| {
        let open = || {
            events::Bus::builder()
                .no_handlers()
                .store(
                    PostgresStore::connect(&config(), PostgresOptions::new().schema(&schema))
                        .unwrap(),
                )
                .build()
                .unwrap()
        };
        killed_writers_leave_whole_commands(&config(), &schema, &open);
    });
    drop_schema(&schema);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
