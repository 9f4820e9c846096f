//! Event sourcing: bank accounts as aggregates on the embedded SQLite store.
//!
//! `cargo run --example ledger [path/to/ledger.db]`
//!
//! - accounts are opened and credited by commands (`#[aggregate]`, `#[command]`);
//! - two writers race on one account: the stale one gets a typed conflict, and `execute`
//!   reloads and runs its command again;
//! - a snapshot every 25 events keeps loading short;
//! - a projection (a durable handler) of every balance is rebuilt from the log with a
//!   progress bar, while payments keep coming, then checked against the aggregates.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use events::store::SqliteStore;
use events::{Bus, CommandError, Event, State, aggregate, handler};

/// An account was opened.
#[derive(Debug, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "ledger.account.opened")]
struct Opened {
    owner: String,
}

/// Money came in.
#[derive(Debug, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "ledger.account.credited")]
struct Credited {
    cents: u64,
}

/// Money went out.
#[derive(Debug, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "ledger.account.debited")]
struct Debited {
    cents: u64,
}

/// An account: its state is what its events made of it.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Account {
    owner: Option<String>,
    balance: u64,
}

#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("no such account")]
    NotOpen,
    #[error("the account exists already")]
    Exists,
    #[error("insufficient funds: {balance} cents, {wanted} wanted")]
    Insufficient { balance: u64, wanted: u64 },
}

#[aggregate(name = "ledger.account", snapshot_every = 25)]
impl Account {
    #[apply]
    fn opened(&mut self, e: &Opened) {
        self.owner = Some(e.owner.clone());
    }

    #[apply]
    fn credited(&mut self, e: &Credited) {
        self.balance += e.cents;
    }

    #[apply]
    fn debited(&mut self, e: &Debited) {
        self.balance -= e.cents;
    }

    #[command]
    fn open(&self, owner: &str, first: u64) -> Result<(Opened, Credited), Refused> {
        if self.owner.is_some() {
            return Err(Refused::Exists);
        }
        Ok((
            Opened {
                owner: owner.into(),
            },
            Credited { cents: first },
        ))
    }

    #[command]
    fn credit(&self, cents: u64) -> Result<Credited, Refused> {
        self.owner.as_ref().ok_or(Refused::NotOpen)?;
        Ok(Credited { cents })
    }

    #[command]
    fn debit(&self, cents: u64) -> Result<Debited, Refused> {
        self.owner.as_ref().ok_or(Refused::NotOpen)?;
        if cents > self.balance {
            return Err(Refused::Insufficient {
                balance: self.balance,
                wanted: cents,
            });
        }
        Ok(Debited { cents })
    }
}

/// The projection: every account's balance, by stream, built from the log.
#[derive(Default, Clone)]
struct Balances(Arc<Mutex<BTreeMap<String, i64>>>);

fn add(balances: &Balances, stream: &str, cents: i64) {
    *balances.0.lock().unwrap().entry(stream.into()).or_default() += cents;
}

/// Which account an event belongs to: its stream (`ledger.account-<id>`), which the
/// repository puts in every event's metadata.
fn account_of(ctx: &events::Context) -> String {
    let stream = ctx
        .meta()
        .metadata()
        .get(events::aggregate::STREAM_KEY)
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    stream
        .strip_prefix("ledger.account-")
        .unwrap_or(stream)
        .to_owned()
}

#[handler(durable, name = "ledger.balances.credited")]
fn on_credited(e: &Credited, ctx: &events::Context, balances: State<Balances>) {
    add(&balances, &account_of(ctx), e.cents as i64);
}

#[handler(durable, name = "ledger.balances.debited")]
fn on_debited(e: &Debited, ctx: &events::Context, balances: State<Balances>) {
    add(&balances, &account_of(ctx), -(e.cents as i64));
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let given = std::env::args().nth(1).map(std::path::PathBuf::from);
    let path = given.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("events-ledger-{}.db", std::process::id()))
    });
    let fresh = !path.exists();
    let balances = Balances::default();
    let bus = Bus::builder()
        .scope("ledger")
        .state(balances.clone())
        .store(SqliteStore::open(&path)?)
        .build()?;
    bus.recover().await?;
    let accounts = bus.aggregates::<Account>();
    println!("ledger on {}", path.display());

    // Open two accounts (a second run finds them open: the command refuses).
    for (owner, first) in [("alice", 10_000), ("bob", 500)] {
        let id = owner.to_owned();
        match accounts.execute(&id, |a| a.open(owner, first)).await {
            Ok(done) => println!("opened {owner}: version {}", done.version),
            Err(CommandError::Rejected(e)) => println!("{owner}: {e}"),
            Err(e) => return Err(e.into()),
        }
    }

    // Two writers read alice at the same version; the second to append conflicts.
    let alice = "alice".to_owned();
    let first = accounts.load(&alice)?;
    let second = accounts.load(&alice)?;
    let at = first.version;
    accounts
        .append(&alice, first, Debited { cents: 100 })
        .await?;
    match accounts
        .append(&alice, second, Debited { cents: 100 })
        .await
    {
        Err(CommandError::Conflict {
            expected, actual, ..
        }) => println!(
            "stale writer refused: it read version {expected}, alice is at {actual} (was {at})"
        ),
        other => println!("unexpected: {other:?}"),
    }
    // `execute` resolves conflicts itself: two tasks debit alice at once, 40 times each.
    let mut writers = Vec::new();
    for _ in 0..2 {
        let accounts = accounts.clone().retries(10);
        writers.push(tokio::spawn(async move {
            let alice = "alice".to_owned();
            let mut retried = 0;
            for _ in 0..40 {
                let done = accounts
                    .execute(&alice, |a| a.debit(10))
                    .await
                    .expect("a debit");
                retried += done.attempts - 1;
            }
            retried
        }));
    }
    let mut retried = 0;
    for w in writers {
        retried += w.await?;
    }
    println!("two concurrent writers: 80 debits, {retried} conflicts retried");
    let loaded = accounts.load(&alice)?;
    println!(
        "alice: {} cents at version {} (from the snapshot at {:?}, then {} events)",
        loaded.state.balance, loaded.version, loaded.snapshot, loaded.read
    );

    // A projection rebuilt from the log while bob keeps being paid.
    let payer = {
        let accounts = accounts.clone();
        tokio::spawn(async move {
            let bob = "bob".to_owned();
            for _ in 0..50 {
                accounts
                    .execute(&bob, |a| a.credit(1))
                    .await
                    .expect("a credit");
            }
        })
    };
    let bar = indicatif::ProgressBar::new(0).with_style(indicatif::ProgressStyle::with_template(
        "rebuilding {bar:30} {pos}/{len} events ({eta})",
    )?);
    let mut rebuilt = 0;
    for handler in ["ledger.balances.credited", "ledger.balances.debited"] {
        let report = bus
            .rebuild(handler)
            .reset(|| {
                // Both handlers build one map: clear it before the first.
                if handler.ends_with("credited") {
                    balances.0.lock().unwrap().clear();
                }
            })
            .on_progress(|p| {
                bar.set_length(p.total);
                bar.set_position(p.done);
            })
            .await?;
        rebuilt += report.events;
    }
    bar.finish_and_clear();
    payer.await?;
    println!("projection rebuilt from {rebuilt} events");
    for lag in bus.lag()? {
        println!("  {} behind by {} event(s)", lag.handler, lag.behind);
    }
    for id in ["alice", "bob"] {
        let state = accounts.load(&id.to_owned())?.state;
        let projected = balances.0.lock().unwrap().get(id).copied().unwrap_or(0);
        println!(
            "{id}: aggregate {} cents, projection {projected} cents",
            state.balance
        );
        if fresh {
            assert_eq!(
                state.balance as i64, projected,
                "the projection agrees with the aggregate"
            );
        }
    }
    if given.is_none() {
        drop(bus);
        for suffix in ["", "-wal", "-shm", "-hwm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
    Ok(())
}
