//! Workload (13): event sourcing. One command appending one event at a time (each loads
//! its stream, decides, appends at the version it loaded), and loading aggregates of
//! 1,000 and 10,000 events, without and with a snapshot, on PostgreSQL and SQLite; the
//! peer, cqrs-es with postgres-es, does the same on the same PostgreSQL in
//! `benches/es-peer` (its own workspace: sqlx and rusqlite cannot share a lock file).

use std::time::Instant;

use events::store::EventStore;
use events::{Bus, Event, aggregate};

#[derive(Debug, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "bench.account.deposited")]
pub struct Deposited {
    pub cents: u64,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Account {
    pub balance: u64,
    pub deposits: u64,
}

#[aggregate(name = "bench.account")]
impl Account {
    #[apply]
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.cents;
        self.deposits += 1;
    }

    #[command]
    pub fn deposit(&self, cents: u64) -> Result<Deposited, std::convert::Infallible> {
        Ok(Deposited { cents })
    }

    #[command]
    pub fn deposit_many(
        &self,
        count: u64,
        cents: u64,
    ) -> Result<Vec<Deposited>, std::convert::Infallible> {
        Ok((0..count).map(|_| Deposited { cents }).collect())
    }
}

/// One side's numbers.
#[derive(Debug, Clone, Default)]
pub struct Sourcing {
    pub append_per_sec: f64,
    pub append_p50_us: f64,
    pub append_p99_us: f64,
    /// Milliseconds per load: 1,000 and 10,000 events, without and with a snapshot.
    pub loads: [f64; 4],
}

/// The labels of [`Sourcing::loads`], in order (the peer prints them so).
pub const LOADS: [&str; 4] = [
    "load1000plain",
    "load1000snapshot",
    "load10000plain",
    "load10000snapshot",
];

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

/// `events` on `store`: `commands` one-event commands on 100 streams in turn, and each
/// load `loads` times.
pub fn ours(store: impl EventStore, commands: usize, loads: usize) -> Sourcing {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let bus = Bus::builder()
            .no_handlers()
            .store(store)
            .build()
            .expect("bus");
        let accounts = bus.aggregates::<Account>();
        let mut latencies = Vec::with_capacity(commands);
        let start = Instant::now();
        for i in 0..commands {
            let id = format!("append-{}", i % 100);
            let t = Instant::now();
            accounts
                .execute(&id, |a| a.deposit(1))
                .await
                .expect("execute");
            latencies.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let append_per_sec = commands as f64 / start.elapsed().as_secs_f64();
        let mut out = Sourcing {
            append_per_sec,
            append_p50_us: percentile(latencies.clone(), 0.5),
            append_p99_us: percentile(latencies, 0.99),
            loads: [0.0; 4],
        };
        let mut cell = 0;
        for size in [1_000u64, 10_000] {
            for snapshot in [false, true] {
                let id = format!("load-{size}-{snapshot}");
                // Written 1,000 events per command; a snapshot at every 1,000th.
                let writer =
                    bus.aggregates::<Account>()
                        .snapshot_every(if snapshot { 1000 } else { 0 });
                for _ in 0..size / 1000 {
                    writer
                        .execute(&id, |a| a.deposit_many(1000, 1))
                        .await
                        .expect("execute");
                }
                let mut times = Vec::with_capacity(loads);
                for _ in 0..loads {
                    let t = Instant::now();
                    let loaded = accounts.load(&id).expect("load");
                    assert_eq!(loaded.state.deposits, size);
                    times.push(t.elapsed().as_secs_f64() * 1e3);
                }
                out.loads[cell] = percentile(times, 0.5);
                cell += 1;
            }
        }
        out
    })
}

/// `events` on a PostgreSQL schema of its own (dropped after).
pub fn ours_postgres(commands: usize, loads: usize) -> Sourcing {
    use events::postgres::{PostgresOptions, PostgresStore};
    let schema = format!("events_bench_sourcing_{}", std::process::id());
    let store = PostgresStore::connect(
        &crate::postgres::config(),
        PostgresOptions::new().schema(&schema).temporary(),
    )
    .expect("store");
    ours(store, commands, loads)
}

/// `events` on a SQLite file (`synchronous = FULL`).
pub fn ours_sqlite(commands: usize, loads: usize) -> Sourcing {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = events::store::SqliteStore::open(dir.path().join("sourcing.db")).expect("store");
    ours(store, commands, loads)
}

/// The peer, built and run from `benches/es-peer` (release); `Err` with why when it cannot.
pub fn peer(commands: usize, loads: usize) -> Result<Sourcing, String> {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/es-peer/Cargo.toml");
    let url = std::env::var("EVENTS_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("cqrs_bench_{}", std::process::id());
    let output = std::process::Command::new(env!("CARGO"))
        .args(["run", "-q", "--release", "--manifest-path", manifest, "--"])
        .args([
            url.as_str(),
            &schema,
            &commands.to_string(),
            &loads.to_string(),
        ])
        .output()
        .map_err(|e| format!("cannot run the cqrs-es peer: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "the cqrs-es peer failed: {}",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut out = Sourcing::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let key = words.next().unwrap_or_default();
        let values: Vec<f64> = words.filter_map(|w| w.parse().ok()).collect();
        match key {
            "append" if values.len() == 3 => {
                out.append_per_sec = values[0];
                out.append_p50_us = values[1];
                out.append_p99_us = values[2];
            }
            _ => {
                if let (Some(i), Some(v)) = (LOADS.iter().position(|l| *l == key), values.first()) {
                    out.loads[i] = *v;
                }
            }
        }
    }
    Ok(out)
}
