//! cqrs-es + postgres-es doing what row (13) of the comparison runner measures for
//! `events`: one command appending one event at a time, and loading aggregates of 1,000 and
//! 10,000 events, without and with a snapshot. Prints one `key value..` line per cell.
//!
//! `events-es-peer <postgres url> <schema> <commands> <loads>`

use std::time::Instant;

use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateContext, CqrsFramework, DomainEvent, EventStore};
use cqrs_es::event_sink::EventSink;
use postgres_es::PostgresEventRepository;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum AccountEvent {
    Deposited { cents: u64 },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> String {
        "Deposited".into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

enum AccountCommand {
    Deposit { cents: u64 },
    DepositMany { count: u64, cents: u64 },
}

#[derive(Debug, thiserror::Error)]
#[error("refused")]
struct Refused;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Account {
    balance: u64,
    deposits: u64,
}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = Refused;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        // Written through a scratch state: cqrs-es 0.5's snapshot store applies the
        // written events to the loaded state again when it takes a snapshot (with `self`
        // here, a snapshot would count every event twice).
        let mut scratch = Account::default();
        match command {
            AccountCommand::Deposit { cents } => {
                sink.write(AccountEvent::Deposited { cents }, &mut scratch).await;
            }
            AccountCommand::DepositMany { count, cents } => {
                for _ in 0..count {
                    sink.write(AccountEvent::Deposited { cents }, &mut scratch).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            AccountEvent::Deposited { cents } => {
                self.balance += cents;
                self.deposits += 1;
            }
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, schema, commands, loads] = &args[..] else {
        panic!("usage: events-es-peer <postgres url> <schema> <commands> <loads>");
    };
    let commands: usize = commands.parse().unwrap();
    let loads: usize = loads.parse().unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(url)
        .await
        .unwrap();
    sqlx::raw_sql(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
         CREATE TABLE {schema}.events (
            aggregate_type text NOT NULL, aggregate_id text NOT NULL,
            sequence bigint CHECK (sequence >= 0) NOT NULL, event_type text NOT NULL,
            event_version text NOT NULL, payload json NOT NULL, metadata json NOT NULL,
            PRIMARY KEY (aggregate_type, aggregate_id, sequence));
         CREATE TABLE {schema}.snapshots (
            aggregate_type text NOT NULL, aggregate_id text NOT NULL,
            last_sequence bigint CHECK (last_sequence >= 0) NOT NULL,
            current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
            payload json NOT NULL,
            PRIMARY KEY (aggregate_type, aggregate_id, last_sequence));"
    ))
    .execute(&pool)
    .await
    .unwrap();
    let repo = || {
        PostgresEventRepository::new(pool.clone())
            .with_tables(&format!("{schema}.events"), &format!("{schema}.snapshots"))
    };
    let plain = || PersistedEventStore::<_, Account>::new_event_store(repo());
    let snapshotted = || PersistedEventStore::<_, Account>::new_snapshot_store(repo(), 1000);

    // (a) One command, one event, on 100 streams in turn (each loads its stream first).
    let cqrs = CqrsFramework::new(plain(), vec![], ());
    let mut latencies = Vec::with_capacity(commands);
    let start = Instant::now();
    for i in 0..commands {
        let id = format!("append-{}", i % 100);
        let t = Instant::now();
        cqrs.execute(&id, AccountCommand::Deposit { cents: 1 })
            .await
            .unwrap();
        latencies.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let per_sec = commands as f64 / start.elapsed().as_secs_f64();
    println!(
        "append {per_sec:.1} {:.1} {:.1}",
        percentile(latencies.clone(), 0.5),
        percentile(latencies, 0.99)
    );

    // (b) Loads of 1,000 and 10,000 events, without and with a snapshot (taken every
    // 1,000 events, so at the last one).
    for size in [1_000u64, 10_000] {
        for (label, snapshot) in [("plain", false), ("snapshot", true)] {
            let id = format!("load-{size}-{label}");
            let writer = if snapshot {
                CqrsFramework::new(snapshotted(), vec![], ())
            } else {
                CqrsFramework::new(plain(), vec![], ())
            };
            for _ in 0..size / 1000 {
                writer
                    .execute(&id, AccountCommand::DepositMany { count: 1000, cents: 1 })
                    .await
                    .unwrap();
            }
            let store = if snapshot { snapshotted() } else { plain() };
            let mut times = Vec::with_capacity(loads);
            for _ in 0..loads {
                let t = Instant::now();
                let mut context = store.load_aggregate(&id).await.unwrap();
                let account = context.aggregate();
                assert_eq!(account.deposits, size);
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
            println!("load{size}{label} {:.3}", median(times));
        }
    }
    sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
}
