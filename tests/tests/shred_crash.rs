//! Crash safety and memory of the durable paths of personal data and retention, in a child
//! process killed with SIGKILL at random points (`src/bin/shred_child.rs`): making a data
//! key (SQLite's `<file>-keys`, PostgreSQL's `subject_keys`), forgetting a subject, and
//! retention's purge. After the kills: every acknowledged event is stored and reads its
//! personal value again unless its subject's forget had begun (a key commits before the
//! event that uses it: no sealed value without its key); an acknowledged forget stays
//! forgotten; retention finishes what a killed run began; SQLite's files pass
//! `PRAGMA integrity_check`. And a retention run over a backlog of a million events takes
//! the memory of one over a hundred thousand.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use events_tests::ChildLines;

const CHILD: &str = env!("CARGO_BIN_EXE_shred_child");
const KILLS: u64 = 8;

#[derive(Default)]
struct Seen {
    acked: BTreeSet<u64>,
    forgetting: BTreeSet<String>,
    forgot: BTreeSet<String>,
    purges: usize,
}

/// Runs the child on `place` `KILLS` times, killing it at random points, then checks.
fn campaign(place: &str) {
    let mut rng = events_tests::SeededRng::from_env("SHRED_SEED");
    let mut seen = Seen::default();
    for round in 0..KILLS {
        let mut command = Command::new(CHILD);
        command.args([place, "run", &(round * 1_000_000).to_string()]);
        let child = ChildLines::spawn(command);
        let started = Instant::now();
        let run_for = Duration::from_millis(300 + rng.next_u64() % 500);
        let mut lines = 0;
        while started.elapsed() < run_for {
            std::thread::sleep(Duration::from_millis(5));
        }
        // SIGKILL, wherever it is; then every line it printed before.
        for line in child.kill_and_read() {
            lines += 1;
            record(&mut seen, &line);
        }
        eprintln!("round {round}: {lines} lines before the kill");
    }
    assert!(
        seen.acked.len() > 100 && seen.forgot.len() > 20 && seen.purges > 5,
        "the child did too little to test anything: {} events, {} forgets, {} purges",
        seen.acked.len(),
        seen.forgot.len(),
        seen.purges
    );
    let mut command = Command::new(CHILD);
    command.args([place, "check"]);
    let check = ChildLines::spawn(command);
    let lines = check.lines_until("done", Duration::from_secs(120));
    assert_eq!(lines.last().map(String::as_str), Some("done"), "{lines:?}");
    let mut stored = BTreeSet::new();
    for line in &lines {
        if let Some(rest) = line.strip_prefix("seen ") {
            let (n, state) = rest.split_once(' ').unwrap();
            let n: u64 = n.parse().unwrap();
            let subject = format!("s{n}");
            stored.insert(n);
            if seen.forgot.contains(&subject) {
                assert_eq!(
                    state, "forgotten",
                    "event {n}: its subject's forget returned"
                );
            } else if !seen.forgetting.contains(&subject) {
                assert_eq!(state, "known", "event {n}: stored without a readable key");
            }
        }
    }
    let lost: Vec<&u64> = seen.acked.difference(&stored).take(10).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    let notes = lines.iter().find_map(|l| l.strip_prefix("notes ")).unwrap();
    assert_eq!(
        notes, "20",
        "retention keeps the newest 20 notes, no more, no fewer"
    );
}

fn record(seen: &mut Seen, line: &str) {
    if let Some(n) = line.strip_prefix("ack ") {
        seen.acked.insert(n.parse().unwrap());
    } else if let Some(s) = line.strip_prefix("forget ") {
        seen.forgetting.insert(s.to_owned());
    } else if let Some(s) = line.strip_prefix("forgot ") {
        seen.forgot.insert(s.to_owned());
    } else if line == "purged" {
        seen.purges += 1;
    }
}

fn integrity(file: &std::path::Path) {
    let conn = events::store::rusqlite::Connection::open(file).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok", "{}", file.display());
}

#[test]
fn keys_forgets_and_purges_survive_sigkill_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shred.db");
    campaign(db.to_str().unwrap());
    integrity(&db);
    integrity(&dir.path().join("shred.db-keys"));
}

#[test]
fn keys_forgets_and_purges_survive_sigkill_on_postgres() {
    let config = std::env::var("EVENTS_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned());
    let schema = format!("events_shred_{}", std::process::id());
    campaign(&format!("postgres:{schema}"));
    use events::postgres::{PostgresOptions, PostgresStore};
    // Dropped with everything in it.
    drop(PostgresStore::connect(
        &config,
        PostgresOptions::new().schema(&schema).temporary(),
    ));
}

/// The peak resident memory (KiB) of a child that runs retention over a SQLite backlog of
/// `count` events, each with a delivery record, deleting all but the newest.
fn purge_peak(count: u64) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("backlog.db");
    let db = db.to_str().unwrap();
    let filled = Command::new(CHILD)
        .args([db, "fill", &count.to_string()])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&filled.stdout).contains("filled"),
        "{}",
        String::from_utf8_lossy(&filled.stderr)
    );
    let purged = Command::new(CHILD).args([db, "purge"]).output().unwrap();
    let out = String::from_utf8_lossy(&purged.stdout);
    assert!(
        out.contains(&format!("deleted {}", count - 1)),
        "{out}{}",
        String::from_utf8_lossy(&purged.stderr)
    );
    out.lines()
        .find_map(|l| l.strip_prefix("peak_kib "))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn retention_over_a_million_events_takes_the_memory_of_a_hundred_thousand() {
    let small = purge_peak(100_000);
    let large = purge_peak(1_000_000);
    eprintln!(
        "peak RSS of a retention run over 100,000 events: {small} KiB; 1,000,000: {large} KiB"
    );
    assert!(
        large <= small + 4 * 1024,
        "deleting 1,000,000 took {large} KiB, 100,000 took {small} KiB"
    );
}
