//! The outbox under SIGKILL: a publisher is killed at random points, while the broker is
//! down and while its forwarder drains, a dozen times; every event a `publish` acknowledged
//! (on the local commit) reaches the broker's stream, once, in commit order. And its memory:
//! draining a backlog of 200,000 events takes no more than draining 20,000. The child is
//! `src/bin/outbox_child.rs`; the broker is a `nats-server` of the test's own, stopped and
//! started again.

#![allow(unreachable_pub)]

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use events_tests::{ChildLines, NatsServer, SeededRng};

const CHILD: &str = env!("CARGO_BIN_EXE_outbox_child");

/// Starts a publisher child on `db`.
fn start_publisher(db: &std::path::Path, url: &str, first: u64, count: u64) -> ChildLines {
    let mut command = Command::new(CHILD);
    command.args([
        db.to_str().unwrap(),
        url,
        &first.to_string(),
        &count.to_string(),
    ]);
    ChildLines::spawn(command)
}

/// The next line of `child`, within 30 s.
fn line(child: &ChildLines) -> Option<String> {
    child.line(Duration::from_secs(30))
}

/// How many outbox entries wait in the store (read beside the killed child's file).
fn waiting(db: &std::path::Path) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
        .unwrap()
}

/// The `n` of every message in the stream `CRASH`, in stream order.
async fn stream(url: &str) -> Vec<u64> {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("CRASH").await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        let Ok(message) = stream.get_raw_message(seq).await else {
            continue;
        };
        let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        out.push(body["data"]["n"].as_u64().unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_reaches_the_broker_across_sigkills() {
    let mut rng = SeededRng::from_env("OUTBOX_CRASH_SEED");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("outbox.db");
    let mut server = Some(NatsServer::start());
    let url = server.as_ref().unwrap().url();
    let mut parked = None;
    let mut acked: Vec<u64> = Vec::new();
    let mut next = 1;
    let mut kills = 0;
    let mut mid_drain = 0;
    for round in 0..12 {
        // Even rounds: the broker is down while the child publishes. Odd rounds: it is up,
        // and the child is killed while its forwarder drains what earlier ones left.
        let down = round % 2 == 0;
        if down {
            if let Some(s) = server.take() {
                parked = Some(s.stop());
            }
        } else if let Some((port, store)) = parked.take() {
            server = Some(NatsServer::start_at(port, store));
        }
        let publisher: ChildLines;
        let count;
        if down {
            // A backlog builds up: hundreds of events acknowledged on the local commit;
            // killed somewhere in its second half.
            count = 300 + rng.below(500) as u64;
            let kill_after = count / 2 + rng.below((count / 2) as usize) as u64;
            publisher = start_publisher(&db, &url, next, count);
            let mut seen = 0;
            while seen < kill_after {
                let Some(line) = line(&publisher) else { break };
                if let Some(n) = line.strip_prefix("ack ") {
                    acked.push(n.parse().unwrap());
                    seen += 1;
                }
            }
        } else {
            // The broker is back: the child forwards the backlog (and a few events of its
            // own) and is killed a random moment into it.
            count = rng.below(20) as u64;
            let before = waiting(&db);
            publisher = start_publisher(&db, &url, next, count);
            // Once the drain has begun (entries are leaving the outbox), a moment more.
            let start = std::time::Instant::now();
            while waiting(&db) >= before && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(rng.below(4) as u64));
            while let Some(line) = publisher.try_line() {
                if let Some(n) = line.strip_prefix("ack ") {
                    acked.push(n.parse().unwrap());
                }
            }
        }
        publisher.kill();
        kills += 1;
        if !down && waiting(&db) > 0 {
            mid_drain += 1;
        }
        next += count;
    }
    assert!(kills >= 10);
    assert!(mid_drain >= 1, "no kill landed while the forwarder drained");
    if let Some((port, store)) = parked.take() {
        server = Some(NatsServer::start_at(port, store));
    }
    // One last child, killed by nobody: it forwards what is left.
    let publisher = start_publisher(&db, &url, next, 0);
    let drained = loop {
        let line = line(&publisher).expect("the last child drains the outbox");
        if let Some(rest) = line.strip_prefix("drained ") {
            break rest.to_owned();
        }
    };
    publisher.kill();
    let got = stream(&url).await;
    let distinct: HashSet<u64> = got.iter().copied().collect();
    for n in &acked {
        assert!(
            distinct.contains(n),
            "acknowledged event {n} never reached the broker"
        );
    }
    // Within the broker's deduplication window (2 minutes), what a killed forwarder had
    // sent but not recorded was dropped: each event is in the stream once.
    assert_eq!(got.len(), distinct.len(), "duplicates in the stream");
    // In commit order: the stream holds the events in the order they were published.
    assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order");
    eprintln!(
        "{} acknowledged, {} in the stream, {kills} kills ({mid_drain} while the forwarder \
         drained); the last forwarder: {drained} (forwarded, duplicates dropped by the broker)",
        acked.len(),
        got.len()
    );
    drop(server);
}

/// Fills an outbox with `count` events (the broker unreachable), then drains it in a fresh
/// child; that child's peak resident memory, in KiB.
async fn drain_peak(server: &NatsServer, count: u64) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("backlog.db");
    let nowhere = format!("127.0.0.1:{}", events_tests::free_port());
    let filled = Command::new(CHILD)
        .args([db.to_str().unwrap(), &nowhere, "1", &count.to_string()])
        .env("OUTBOX_CHILD_FILL", "1")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&filled.stdout).contains("filled"));
    assert_eq!(waiting(&db), count as i64);
    let drain = start_publisher(&db, &server.url(), count + 1, 0);
    let mut peak = None;
    while peak.is_none() {
        let line = line(&drain).expect("the child drains the backlog");
        peak = line
            .strip_prefix("peak_kib ")
            .map(|k| k.parse::<u64>().unwrap());
    }
    drain.kill();
    assert_eq!(waiting(&db), 0);
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("CRASH").await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        count,
        "each event once"
    );
    peak.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_a_large_backlog_takes_memory_independent_of_its_length() {
    let small = drain_peak(&NatsServer::start(), 20_000).await;
    let large = drain_peak(&NatsServer::start(), 200_000).await;
    eprintln!("peak RSS draining 20,000: {small} KiB; 200,000: {large} KiB");
    assert!(
        large <= small + 16 * 1024,
        "draining 200,000 took {large} KiB, 20,000 took {small} KiB"
    );
}
