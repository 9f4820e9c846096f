//! The comparison runner: every workload with `events` and each peer, in one run on one
//! machine, printed as one Markdown table.
//!
//! ```sh
//! cargo run --release -p events-benches --bin compare            # full run (a few minutes)
//! cargo run --release -p events-benches --bin compare -- --quick # fewer samples
//! cargo run --release -p events-benches --bin compare -- --only queued # one row (ids: sync1,
//!     fanout10, async1, queued, sync1_100subs, sync1_10ksubs, fanout10_wild, json, memory, durable,
//!     postgres, nats, outbox, sourcing)
//! ```
//!
//! Cells are the median time per event over the samples (and events per second), then the
//! ratio peer / events: above 1 means `events` is faster.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use events_benches::{Peer, Workload, durable, memory, runner};

struct Cell {
    ns: Option<f64>,
    note: &'static str,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn measure(workload: Workload, peer: Peer, samples: usize) -> Cell {
    match runner(workload, peer) {
        Err(note) => Cell { ns: None, note },
        Ok(mut run) => {
            let iters = workload.sample_iters();
            run(iters / 4); // warm up
            let ns: Vec<f64> = (0..samples)
                .map(|_| run(iters).as_nanos() as f64 / iters as f64)
                .collect();
            Cell {
                ns: Some(median(ns)),
                note: "",
            }
        }
    }
}

fn memory_in_child(peer: Peer) -> Cell {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(_) => {
            return Cell {
                ns: None,
                note: "n/a: cannot re-run itself",
            };
        }
    };
    let child = Command::new(exe)
        .args(["--memory", peer.id()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return Cell {
            ns: None,
            note: "n/a: cannot re-run itself",
        };
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                return Cell {
                    ns: None,
                    note: "did not finish in 120 s",
                };
            }
        }
    }
    let out = child
        .wait_with_output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    match out.ok().and_then(|o| o.trim().parse::<f64>().ok()) {
        Some(bytes) => Cell {
            ns: Some(bytes),
            note: "",
        },
        None => Cell {
            ns: None,
            note: "n/a: no queue",
        },
    }
}

fn peer_by_id(id: &str) -> Option<Peer> {
    Peer::ALL.into_iter().find(|p| p.id() == id)
}

fn fmt_time(ns: f64) -> String {
    let rate = 1e9 / ns;
    let rate = if rate >= 1e6 {
        format!("{:.1}M/s", rate / 1e6)
    } else {
        format!("{:.0}k/s", rate / 1e3)
    };
    if ns >= 1000.0 {
        format!("{:.2} µs ({rate})", ns / 1000.0)
    } else {
        format!("{ns:.0} ns ({rate})")
    }
}

/// The median of `runs` runs of `f`, by throughput.
fn median_run(runs: usize, f: impl Fn() -> durable::Durable) -> durable::Durable {
    let mut all: Vec<durable::Durable> = (0..runs).map(|_| f()).collect();
    all.sort_by(|a, b| a.events_per_sec.total_cmp(&b.events_per_sec));
    all[all.len() / 2]
}

/// Workload (9): durable publishing, `events` next to raw `rusqlite` in the same run.
fn durable_rows(runs: usize) {
    use events::store::Synchronous;
    const PUBLISHERS: u64 = 1000;
    const PER: u64 = 200;
    const TOTAL: u64 = PUBLISHERS * PER;
    println!(
        "\n(9) durable publish on SQLite (WAL), {TOTAL} events, median of {runs} runs; \
         `events`: {PUBLISHERS} concurrent publishers, group commit, one durable handler \
         (its delivery recorded); raw: one thread, 1000 rows per transaction, same rows and \
         schema.\n"
    );
    println!(
        "| synchronous | events: events/s | events: publish p50 / p99 | raw rusqlite: rows/s | events / raw |"
    );
    println!("|---|---|---|---|---|");
    for (label, sync) in [("FULL", Synchronous::Full), ("NORMAL", Synchronous::Normal)] {
        let ours = median_run(runs, || durable::events_sqlite(sync, PUBLISHERS, PER));
        let raw = median_run(runs, || durable::raw_rusqlite(sync, TOTAL, 1000));
        let (p50, p99) = ours.latency.unwrap_or_default();
        println!(
            "| {label} | **{:.0}k/s** | {:.2} ms / {:.2} ms | {:.0}k/s | ×{:.2} |",
            ours.events_per_sec / 1e3,
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            raw.events_per_sec / 1e3,
            ours.events_per_sec / raw.events_per_sec
        );
    }
}

/// Workload (11): durable publishing on PostgreSQL, `events` next to raw inserts with the
/// same client, alternated run by run.
fn postgres_rows(runs: usize) {
    const PUBLISHERS: u64 = 1000;
    const PER: u64 = 100;
    const TOTAL: u64 = PUBLISHERS * PER;
    if let Err(why) = events_benches::postgres::available() {
        println!("\n(11) durable publish on PostgreSQL: {why}");
        return;
    }
    println!(
        "\n(11) durable publish on PostgreSQL (the machine's server, one schema per run), \
         {TOTAL} events, median of {runs} runs; `events`: {PUBLISHERS} concurrent publishers, \
         `PostgresStore` (group commit, a multi-row insert per commit); raw: the `postgres` \
         client, one connection, 1000 rows per transaction, as a prepared insert per row or as one \
         multi-row insert; same rows and table. Ratios against the per-row insert.\n"
    );
    println!("| | events/s | publish p50 / p99 | events / raw |");
    println!("|---|---|---|---|");
    use events_benches::postgres::{Raw, events_postgres, raw_postgres};
    let (mut ours, mut raw, mut multi) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        ours.push(events_postgres(PUBLISHERS, PER));
        raw.push(raw_postgres(TOTAL, 1000, Raw::PerRow));
        multi.push(raw_postgres(TOTAL, 1000, Raw::MultiRow));
    }
    let median = |mut all: Vec<durable::Durable>| {
        all.sort_by(|a, b| a.events_per_sec.total_cmp(&b.events_per_sec));
        all[all.len() / 2]
    };
    let (ours, raw, multi) = (median(ours), median(raw), median(multi));
    let (p50, p99) = ours.latency.unwrap_or_default();
    println!(
        "| `events` (`PostgresStore`) | **{:.1}k/s** | {:.2} ms / {:.2} ms | ×{:.2} |",
        ours.events_per_sec / 1e3,
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        ours.events_per_sec / raw.events_per_sec
    );
    println!(
        "| raw `postgres`: a prepared insert per row | {:.1}k/s | | ×1.00 |",
        raw.events_per_sec / 1e3
    );
    println!(
        "| raw `postgres`: one multi-row insert (`UNNEST`) per transaction | {:.1}k/s | | ×{:.2} |",
        multi.events_per_sec / 1e3,
        multi.events_per_sec / raw.events_per_sec
    );
}

/// Workload (12): the outbox: local commits, the forwarder against raw `async-nats`, and
/// compression of a 4 KB event.
fn outbox_rows(runs: u32) {
    use events_benches::outbox;
    const PUBLISHERS: u64 = 1000;
    println!(
        "\n(12) the outbox. (a) publish resolving on the local commit (`Ack::Local`, the \
         broker away), {PUBLISHERS} concurrent publishers, median of {runs} runs, next to \
         rows (9) and (11) (`synchronous = FULL`, PostgreSQL as in (11)).\n"
    );
    println!("| store | events/s | publish p50 / p99 |");
    println!("|---|---|---|");
    let median_of = |mut all: Vec<durable::Durable>| {
        all.sort_by(|a, b| a.events_per_sec.total_cmp(&b.events_per_sec));
        all[all.len() / 2]
    };
    let sqlite = median_of(
        (0..runs)
            .map(|_| outbox::local_commit_sqlite(PUBLISHERS, 200))
            .collect(),
    );
    let rows = [
        ("SQLite (`SqliteStore`)", Some(sqlite)),
        (
            "PostgreSQL (`PostgresStore`)",
            events_benches::postgres::available().ok().map(|()| {
                median_of(
                    (0..runs)
                        .map(|_| outbox::local_commit_postgres(PUBLISHERS, 100))
                        .collect(),
                )
            }),
        ),
    ];
    for (label, m) in rows {
        match m {
            Some(m) => {
                let (p50, p99) = m.latency.unwrap_or_default();
                println!(
                    "| {label} | **{:.1}k/s** | {:.2} ms / {:.2} ms |",
                    m.events_per_sec / 1e3,
                    p50.as_secs_f64() * 1e3,
                    p99.as_secs_f64() * 1e3
                );
            }
            None => println!("| {label} | n/a: no PostgreSQL | |"),
        }
    }
    let server = match events_benches::remote::Server::start() {
        Ok(s) => s,
        Err(why) => {
            println!("\n(12b, c) through NATS JetStream: {why}");
            return;
        }
    };
    const BACKLOG: u64 = 200_000;
    println!(
        "\n(12b) the forwarder draining {BACKLOG} events committed to a SQLite outbox while \
         the broker was away, into JetStream (memory storage), rounds of 512 pipelined; raw: \
         `async-nats` publishing the same CloudEvents from memory, rounds of 512 pipelined; \
         alternated, median of {runs} runs.\n"
    );
    println!("| | events/s | events / raw |");
    println!("|---|---|---|");
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for r in 0..runs {
        ours.push(outbox::forwarder(&server, r, BACKLOG).events_per_sec);
        raw.push(outbox::raw_forward(&server, r, BACKLOG).events_per_sec);
    }
    let (ours, raw) = (median(ours), median(raw));
    println!(
        "| `events` forwarder (SQLite outbox → JetStream) | **{:.1}k/s** | ×{:.2} |",
        ours / 1e3,
        ours / raw
    );
    println!(
        "| raw `async-nats`, from memory | {:.1}k/s | ×1.00 |",
        raw / 1e3
    );
    const DOCS: u64 = 20_000;
    println!(
        "\n(12c) {DOCS} events of a 4 KB JSON document each, published (`publish_batch`) and \
         consumed through NATS; bytes JetStream stores per event, and CPU time per event (the \
         whole process: publish, compress, consume, decompress), median of {runs} runs.\n"
    );
    println!("| compression | bytes per event | CPU per event |");
    println!("|---|---|---|");
    for (label, on) in [("off", false), ("zstd above 1 KiB", true)] {
        let all: Vec<_> = (0..runs)
            .filter_map(|r| outbox::compression(&server, r, DOCS, on))
            .collect();
        if all.is_empty() {
            println!("| {label} | n/a: no /proc/self/stat | |");
            continue;
        }
        let bytes = median(all.iter().map(|c| c.bytes_per_event).collect());
        let cpu = median(
            all.iter()
                .map(|c| c.cpu_per_event.as_secs_f64() * 1e6)
                .collect(),
        );
        println!("| {label} | {bytes:.0} | {cpu:.1} µs |");
    }
}

/// Workload (13): event sourcing, `events` next to cqrs-es with postgres-es on the same
/// PostgreSQL, and `events` on SQLite.
fn sourcing_rows(runs: u32) {
    use events_benches::sourcing::{self, Sourcing};
    const COMMANDS: usize = 1000;
    const LOADS: usize = 15;
    println!(
        "\n(13) event sourcing: (a) {COMMANDS} commands of one event each, on 100 streams in \
         turn (load, decide, append at the loaded version); (b) loading an aggregate of 1,000 \
         and 10,000 events, without a snapshot and with one at the last event (median of \
         {LOADS} loads). The peer is cqrs-es 0.5 with postgres-es (sqlx) on the same \
         PostgreSQL; alternated, median of {runs} runs.\n"
    );
    if let Err(why) = events_benches::postgres::available() {
        println!("(13) n/a: {why}");
        return;
    }
    let mut ours = Vec::new();
    let mut peer = Vec::new();
    let mut lite = Vec::new();
    for _ in 0..runs {
        ours.push(sourcing::ours_postgres(COMMANDS, LOADS));
        match sourcing::peer(COMMANDS, LOADS) {
            Ok(p) => peer.push(p),
            Err(why) => println!("(13) the peer did not run: {why}"),
        }
        lite.push(sourcing::ours_sqlite(COMMANDS, LOADS));
    }
    let mid = |all: &[Sourcing], f: &dyn Fn(&Sourcing) -> f64| median(all.iter().map(f).collect());
    println!(
        "| | `events` (PostgreSQL) | cqrs-es + postgres-es | peer / events | `events` (SQLite) |"
    );
    println!("|---|---|---|---|---|");
    let row = |label: &str, f: &dyn Fn(&Sourcing) -> f64, unit: &str, higher_is_better: bool| {
        let (o, l) = (mid(&ours, f), mid(&lite, f));
        match peer.is_empty() {
            true => println!("| {label} | **{o:.3} {unit}** | n/a | | {l:.3} {unit} |"),
            false => {
                let p = mid(&peer, f);
                let ratio = if higher_is_better { o / p } else { p / o };
                println!(
                    "| {label} | **{o:.3} {unit}** | {p:.3} {unit} | ×{ratio:.2} | {l:.3} {unit} |"
                );
            }
        }
    };
    row(
        "(13a) commands/s, one event each",
        &|s| s.append_per_sec,
        "/s",
        true,
    );
    row("(13a) command p50", &|s| s.append_p50_us / 1e3, "ms", false);
    row("(13a) command p99", &|s| s.append_p99_us / 1e3, "ms", false);
    for (i, label) in [
        "(13b) load 1,000 events",
        "(13b) load 1,000 events, snapshot",
        "(13c) load 10,000 events",
        "(13c) load 10,000 events, snapshot",
    ]
    .iter()
    .enumerate()
    {
        row(label, &|s| s.loads[i], "ms", false);
    }
    println!("\nRatios: above 1, events is ahead (faster, or more commands per second).");
}

/// Workload (10): end to end through NATS JetStream, `events` next to raw `async-nats`.
fn nats_rows(runs: u32) {
    const PUBLISHERS: u64 = 64;
    const PER: u64 = 300;
    let server = match events_benches::remote::Server::start() {
        Ok(s) => s,
        Err(why) => {
            println!("\n(10) through NATS JetStream: {why}");
            return;
        }
    };
    println!(
        "\n(10) end to end through NATS JetStream (nats-server -js, memory storage, local), \
         {} events, {PUBLISHERS} concurrent publishers, one consumer, median of {runs} runs.\n",
        PUBLISHERS * PER
    );
    println!("| | events/s | publish p50 / p99 (until the ack) | events / raw |");
    println!("|---|---|---|---|");
    let pick = |mut all: Vec<events_benches::remote::Remote>| {
        all.sort_by(|a, b| a.events_per_sec.total_cmp(&b.events_per_sec));
        all[all.len() / 2]
    };
    // Alternated, so the machine's drift between runs falls on both sides alike.
    let (ours, raw): (Vec<_>, Vec<_>) = (0..runs)
        .map(|r| {
            (
                events_benches::remote::events_nats(&server, r, PUBLISHERS, PER),
                events_benches::remote::raw_nats(&server, r, PUBLISHERS, PER),
            )
        })
        .unzip();
    let (ours, raw) = (pick(ours), pick(raw));
    for (label, m) in [
        ("`events` (`Nats` transport)", ours),
        ("raw `async-nats` JetStream", raw),
    ] {
        println!(
            "| {label} | **{:.1}k/s** | {:.2} ms / {:.2} ms | ×{:.2} |",
            m.events_per_sec / 1e3,
            m.latency.0.as_secs_f64() * 1e3,
            m.latency.1.as_secs_f64() * 1e3,
            m.events_per_sec / raw.events_per_sec
        );
    }
}

/// Workload (14): HTTP ingest of one validated event per request, next to a bare axum
/// handler that only parses the same JSON.
fn http_rows(runs: u32) {
    const CLIENTS: usize = 4;
    const PER: usize = 5_000;
    println!(
        "\n(14) HTTP ingest, one validated event per request (`POST /events/{{name}}/1`), \
         {CLIENTS} keep-alive clients x {PER} requests, in process, median of {runs} runs.\n"
    );
    println!("| | requests/s | p50 / p99 | events / floor |");
    println!("|---|---|---|---|");
    let (ours, floor) = events_benches::http::compare(runs, CLIENTS, PER);
    for (label, m) in [
        ("`events::http::router` (schema, decode, publish)", ours),
        ("floor: bare axum `Json<T>` handler", floor),
    ] {
        println!(
            "| {label} | **{:.1}k/s** | {:.0} µs / {:.0} µs | ×{:.2} |",
            m.requests_per_sec / 1e3,
            m.latency.0.as_secs_f64() * 1e6,
            m.latency.1.as_secs_f64() * 1e6,
            m.requests_per_sec / floor.requests_per_sec
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--memory") {
        let peer = args
            .get(at + 1)
            .and_then(|id| peer_by_id(id))
            .expect("--memory PEER");
        match memory::measure(peer) {
            Ok(bytes) => println!("{bytes}"),
            Err(note) => eprintln!("{note}"),
        }
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|at| args.get(at + 1))
        .cloned();
    let samples = if quick { 5 } else { 15 };

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let rustc = Command::new("rustc")
        .arg("-V")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!(
        "Machine: {cores} cores, {date}, {rustc}, release build, {samples} samples per cell.\n"
    );

    let peers = Peer::ALL;
    print!("| workload |");
    for p in peers {
        print!(" {} |", p.label());
    }
    println!();
    print!("|---|");
    for _ in peers {
        print!("---|");
    }
    println!();

    let mut ours_by_workload = Vec::new();
    for w in Workload::ALL {
        if only.as_ref().is_some_and(|o| o != w.id()) {
            continue;
        }
        let cells: Vec<Cell> = peers.iter().map(|&p| measure(w, p, samples)).collect();
        let ours = cells[0].ns;
        ours_by_workload.push((w, ours));
        print!("| {} |", w.label());
        for (p, c) in peers.iter().zip(&cells) {
            match (c.ns, ours) {
                (Some(ns), Some(o)) if *p != Peer::Events => {
                    print!(" {} ×{:.2} |", fmt_time(ns), ns / o)
                }
                (Some(ns), _) => print!(" **{}** |", fmt_time(ns)),
                (None, _) => print!(" {} |", c.note),
            }
        }
        println!();
    }

    if only.as_ref().is_none_or(|o| o == "memory") {
        let cells: Vec<Cell> = peers.iter().map(|&p| memory_in_child(p)).collect();
        let ours = cells[0].ns;
        print!("| (6) peak memory per 1M queued events |");
        for (p, c) in peers.iter().zip(&cells) {
            match (c.ns, ours) {
                (Some(b), Some(o)) if *p != Peer::Events => {
                    print!(" {:.1} MB ×{:.2} |", b / 1e6, b / o)
                }
                (Some(b), _) => print!(" **{:.1} MB** |", b / 1e6),
                (None, _) => print!(" {} |", c.note),
            }
        }
        println!();
    }

    if only.as_ref().is_none_or(|o| o == "durable") {
        durable_rows(if quick { 1 } else { 3 });
    }
    if only.as_ref().is_none_or(|o| o == "postgres") {
        postgres_rows(if quick { 1 } else { 3 });
    }
    if only.as_ref().is_none_or(|o| o == "nats") {
        nats_rows(if quick { 1 } else { 7 });
    }
    if only.as_ref().is_none_or(|o| o == "http") {
        http_rows(if quick { 1 } else { 5 });
    }
    if only.as_ref().is_none_or(|o| o == "outbox") {
        outbox_rows(if quick { 1 } else { 3 });
    }
    if only.as_ref().is_none_or(|o| o == "sourcing") {
        sourcing_rows(if quick { 1 } else { 3 });
    }

    let get = |w: Workload| {
        ours_by_workload
            .iter()
            .find(|(x, _)| *x == w)
            .and_then(|(_, ns)| *ns)
    };
    if let (Some(one), Some(ten)) = (get(Workload::Sync1), get(Workload::FanOut10)) {
        println!(
            "\nevents: each extra sync handler costs {:.1} ns ((2) - (1)) / 9.",
            (ten - one) / 9.0
        );
    }
    println!(
        "\nRatios are peer / events: above 1, events is faster. jaeb has no blocking API: its"
    );
    println!("cells in (1), (2) and (5) are `publish().await` on a current-thread runtime.");
}
