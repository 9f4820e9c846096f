//! Crash safety of the SQLite store: a child process publishes a stream of events and is
//! killed with SIGKILL at random points; after a restart and recovery, every event whose
//! `publish` had returned is in the store and was handled by the durable handler, and the
//! database passes `PRAGMA integrity_check`.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use events::store::{EventStore, SqliteStore, StoreQuery};

const CHILD: &str = env!("CARGO_BIN_EXE_crash_child");
const KILLS: u64 = 12;

#[test]
fn every_acknowledged_event_survives_sigkill_and_is_handled_after_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let log = dir.path().join("handled.log");
    // Each run kills at other points; `CRASH_SEED=<n>` replays one.
    let mut rng = events_tests::SeededRng::from_env("CRASH_SEED");
    let mut acked = BTreeSet::new();

    for round in 0..KILLS {
        let mut child = Command::new(CHILD)
            .args(["run"])
            .arg(&db)
            .arg(&log)
            .arg((round * 10_000_000).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("ack ") {
                    seen.push(n.parse::<u64>().unwrap());
                }
            }
            seen
        });
        // Let it start (open, recover) and publish for a random while, then kill it
        // wherever it is: mid-commit, mid-handler, mid-print.
        let started = Instant::now();
        let run_for = Duration::from_millis(150 + rng.next_u64() % 400);
        while started.elapsed() < run_for {
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let seen = reader.join().unwrap();
        eprintln!("round {round}: {} acknowledged before the kill", seen.len());
        acked.extend(seen);
    }
    assert!(
        acked.len() > 1000,
        "the child published too little to test anything: {}",
        acked.len()
    );

    // Restart and recover.
    let status = Command::new(CHILD)
        .args(["recover"])
        .arg(&db)
        .arg(&log)
        .arg("0")
        .status()
        .unwrap();
    assert!(status.success());

    let store = SqliteStore::open(&db).unwrap();
    let stored: BTreeSet<u64> = store
        .query(&StoreQuery::all())
        .unwrap()
        .iter()
        .map(|e| e.payload_json().unwrap()["n"].as_u64().unwrap())
        .collect();
    let lost: Vec<&u64> = acked.difference(&stored).take(10).collect();
    assert!(
        lost.is_empty(),
        "acknowledged but not stored: {lost:?} ({} in all)",
        acked.difference(&stored).count()
    );

    let handled: BTreeSet<u64> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    let unhandled: Vec<&u64> = stored.difference(&handled).take(10).collect();
    assert!(
        unhandled.is_empty(),
        "stored but never handled by the durable handler: {unhandled:?} ({} in all)",
        stored.difference(&handled).count()
    );
    drop(store);

    let conn = rusqlite::Connection::open(&db).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}
