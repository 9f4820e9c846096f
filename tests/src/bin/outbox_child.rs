//! The outbox crash test's child process (`tests/tests/outbox_crash.rs`): a publisher with
//! a SQLite store, NATS and the outbox. It publishes `count` events numbered from `first`,
//! printing `ack <n>` as each `publish` resolves (on the local commit), then `published`;
//! then it waits for the outbox to drain and prints `drained <forwarded> <duplicates>` and
//! `peak_kib <VmHWM>` (its peak resident memory), and sleeps until it is killed. With
//! `OUTBOX_CHILD_FILL=1` it publishes the events in batches and exits once they are
//! committed (`filled`): a backlog for the next child to drain.
//!
//! `outbox_child <db> <nats host:port> <first> <count>`

use std::io::Write;
use std::time::Duration;

use events::nats::{Nats, NatsOptions};
use events::outbox::OutboxOptions;
use events::{Bus, Event, store::SqliteStore};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "crash.order")]
struct Order {
    n: u64,
}

fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, db, url, first, count] = &args[..] else {
        eprintln!("usage: outbox_child <db> <nats host:port> <first> <count>");
        std::process::exit(2);
    };
    let (first, count): (u64, u64) = (first.parse().unwrap_or(1), count.parse().unwrap_or(0));
    let store = SqliteStore::open(db).unwrap_or_else(|e| panic!("{db}: {e}"));
    // The broker may be down: the client connects when it is up; publishes wait in the
    // outbox meanwhile.
    let options = NatsOptions::new("crash").publish_timeout(Duration::from_millis(300));
    let nats = Nats::connect_lazy(url, options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let bus = Bus::builder()
        .no_handlers()
        .store(store)
        .transport(nats)
        .outbox(
            OutboxOptions::new()
                .batch(64)
                .backoff(Duration::from_millis(10), Duration::from_millis(200))
                .poll(Duration::from_millis(20)),
        )
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    if std::env::var_os("OUTBOX_CHILD_FILL").is_some() {
        let mut n = first;
        while n < first + count {
            let end = (n + 4096).min(first + count);
            for r in bus.publish_batch((n..end).map(|n| Order { n })).await {
                r.unwrap_or_else(|e| panic!("{e}"));
            }
            n = end;
        }
        say(format_args!("filled"));
        return;
    }
    for n in first..first + count {
        bus.publish(Order { n })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        say(format_args!("ack {n}"));
    }
    say(format_args!("published"));
    bus.drain_outbox(Duration::from_millis(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = bus.outbox().and_then(Result::ok);
    let (forwarded, duplicates) = status.map_or((0, 0), |s| (s.forwarded, s.duplicates));
    say(format_args!("drained {forwarded} {duplicates}"));
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    say(format_args!("peak_kib {peak}"));
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}
