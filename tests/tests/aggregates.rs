//! Event-sourced aggregates: commands decide events, the stream's version guards
//! concurrent writers, snapshots shortcut loading, old versions are upcast, and the test
//! kit checks an aggregate without a store.

use std::sync::atomic::{AtomicU64, Ordering};

use events::store::{EventStore, MemoryStore, Snapshot, SqliteStore, StoreQuery};
use events::testing::{AggregateTest, check_aggregate, check_aggregates};
use events::{Bus, CommandError, Event, LoadError, aggregate, handler};

/// An account was opened (version 1: no currency).
#[derive(Debug, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "es.account.opened", version = 1)]
struct OpenedV1 {
    owner: String,
}

/// An account was opened.
#[derive(Debug, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "es.account.opened", version = 2, upcast_from = OpenedV1)]
struct Opened {
    owner: String,
    currency: String,
}

impl From<OpenedV1> for Opened {
    fn from(v1: OpenedV1) -> Opened {
        Opened {
            owner: v1.owner,
            currency: "EUR".into(),
        }
    }
}

/// Money came in.
#[derive(Debug, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "es.account.deposited")]
struct Deposited {
    cents: u64,
}

/// Money went out.
#[derive(Debug, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "es.account.withdrawn")]
struct Withdrawn {
    cents: u64,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Account {
    owner: Option<String>,
    currency: String,
    balance: u64,
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum AccountError {
    #[error("the account is not open")]
    NotOpen,
    #[error("the account is open already")]
    AlreadyOpen,
    #[error("insufficient funds: {balance} < {wanted}")]
    Insufficient { balance: u64, wanted: u64 },
}

#[aggregate(name = "es.account", snapshot_every = 10)]
impl Account {
    #[apply]
    fn opened(&mut self, e: &Opened) {
        self.owner = Some(e.owner.clone());
        self.currency = e.currency.clone();
    }

    #[apply]
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.cents;
    }

    #[apply]
    fn withdrawn(&mut self, e: &Withdrawn) {
        self.balance -= e.cents;
    }

    #[command]
    fn open(&self, owner: &str, first: u64) -> Result<(Opened, Option<Deposited>), AccountError> {
        if self.owner.is_some() {
            return Err(AccountError::AlreadyOpen);
        }
        let opened = Opened {
            owner: owner.into(),
            currency: "EUR".into(),
        };
        Ok((opened, (first > 0).then_some(Deposited { cents: first })))
    }

    #[command]
    fn deposit(&self, cents: u64) -> Result<Deposited, AccountError> {
        self.owner.as_ref().ok_or(AccountError::NotOpen)?;
        Ok(Deposited { cents })
    }

    #[command]
    fn withdraw(&self, cents: u64) -> Result<Withdrawn, AccountError> {
        self.owner.as_ref().ok_or(AccountError::NotOpen)?;
        if cents > self.balance {
            return Err(AccountError::Insufficient {
                balance: self.balance,
                wanted: cents,
            });
        }
        Ok(Withdrawn { cents })
    }
}

static DEPOSITS_SEEN: AtomicU64 = AtomicU64::new(0);

#[handler(name = "aggregates.on_deposit")]
fn on_deposit(e: &Deposited) {
    DEPOSITS_SEEN.fetch_add(e.cents, Ordering::SeqCst);
}

fn bus(store: impl EventStore) -> Bus {
    Bus::builder()
        .scope("aggregates")
        .store(store)
        .build()
        .unwrap()
}

fn id(s: &str) -> String {
    s.to_owned()
}

#[test]
fn the_test_kit_checks_commands_without_a_store() {
    AggregateTest::<Account>::new()
        .when(|a| a.open("ada", 0))
        .then((
            Opened {
                owner: "ada".into(),
                currency: "EUR".into(),
            },
            None::<Deposited>,
        ));
    let state = AggregateTest::<Account>::given((
        Opened {
            owner: "ada".into(),
            currency: "EUR".into(),
        },
        Deposited { cents: 300 },
    ))
    .when(|a| a.withdraw(100))
    .then(Withdrawn { cents: 100 });
    assert_eq!(state.balance, 200);
    let refused = AggregateTest::<Account>::given(Opened {
        owner: "ada".into(),
        currency: "EUR".into(),
    })
    .when(|a| a.withdraw(1))
    .then_error();
    assert_eq!(
        refused,
        AccountError::Insufficient {
            balance: 0,
            wanted: 1
        }
    );
    let kit = AggregateTest::<Account>::given(Opened {
        owner: "bob".into(),
        currency: "CHF".into(),
    });
    assert_eq!(kit.state().currency, "CHF");
}

#[test]
#[should_panic(expected = "the command decided")]
fn the_test_kit_reports_other_events() {
    AggregateTest::<Account>::given(Opened {
        owner: "ada".into(),
        currency: "EUR".into(),
    })
    .when(|a| a.deposit(5))
    .then(Deposited { cents: 6 });
}

#[test]
fn every_aggregate_round_trips_through_json_and_upcasting() {
    check_aggregate::<Account>().unwrap();
    assert!(check_aggregates().unwrap() >= 1);
    let info = events::aggregate::aggregates()
        .into_iter()
        .find(|a| a.name() == "es.account")
        .unwrap();
    let names: Vec<_> = info
        .events()
        .iter()
        .map(|e| (e.name(), e.version()))
        .collect();
    assert_eq!(
        names,
        [
            ("es.account.opened", 2),
            ("es.account.deposited", 1),
            ("es.account.withdrawn", 1)
        ]
    );
}

async fn commands_append_and_publish(store: impl EventStore) {
    let bus = bus(store);
    let accounts = bus.aggregates::<Account>();
    let before = DEPOSITS_SEEN.load(Ordering::SeqCst);
    let done = accounts
        .execute(&id("ada"), |a| a.open("ada", 250))
        .await
        .unwrap();
    assert_eq!(
        (done.version, done.attempts, done.receipts.len()),
        (2, 1, 2)
    );
    assert_eq!(done.state.balance, 250);
    // Published like any other event: the local handler ran.
    assert!(DEPOSITS_SEEN.load(Ordering::SeqCst) >= before + 250);
    let refused = accounts
        .execute(&id("ada"), |a| a.withdraw(1_000))
        .await
        .unwrap_err();
    assert!(matches!(
        refused,
        CommandError::Rejected(AccountError::Insufficient { balance: 250, .. })
    ));
    accounts
        .execute(&id("ada"), |a| a.withdraw(50))
        .await
        .unwrap();
    let loaded = accounts.load(&id("ada")).unwrap();
    assert_eq!((loaded.version, loaded.state.balance), (3, 200));
    // In the store's log too, with lineage from the options.
    let stored = bus
        .store()
        .unwrap()
        .query(&StoreQuery::all().name("es.account.withdrawn").unwrap())
        .unwrap();
    assert_eq!(stored.len(), 1);
    // Another instance is another stream.
    assert_eq!(accounts.load(&id("bob")).unwrap().version, 0);
    // Nothing decided: nothing appended.
    let none = accounts
        .execute(&id("ada"), |_| Ok::<_, AccountError>(()))
        .await
        .unwrap();
    assert_eq!((none.version, none.receipts.len()), (3, 0));
}

#[tokio::test]
async fn commands_append_and_publish_in_memory() {
    commands_append_and_publish(MemoryStore::new()).await;
}

#[tokio::test]
async fn commands_append_and_publish_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    commands_append_and_publish(SqliteStore::open(dir.path().join("e.db")).unwrap()).await;
}

#[tokio::test]
async fn a_stale_writer_conflicts_and_execute_retries() {
    let bus = bus(MemoryStore::new());
    let accounts = bus.aggregates::<Account>();
    accounts
        .execute(&id("c"), |a| a.open("c", 100))
        .await
        .unwrap();
    // Two writers load version 2; the first appends; the second is refused.
    let first = accounts.load(&id("c")).unwrap();
    let second = accounts.load(&id("c")).unwrap();
    accounts
        .append(&id("c"), first, Withdrawn { cents: 60 })
        .await
        .unwrap();
    let conflict = accounts
        .append(&id("c"), second, Withdrawn { cents: 60 })
        .await
        .unwrap_err();
    assert!(
        matches!(
            &conflict,
            CommandError::Conflict {
                expected: 2,
                actual: 3,
                ..
            }
        ),
        "{conflict:?}"
    );
    // `execute` reloads and runs the command again on the state the other writer left.
    let other = accounts.clone();
    let mut runs = 0;
    let done = accounts
        .execute(&id("c"), |a| {
            runs += 1;
            if runs == 1 {
                // Someone else deposits between this load and the append.
                let stale = other.load(&id("c")).unwrap();
                ready(other.append(&id("c"), stale, Deposited { cents: 5 })).unwrap();
            }
            a.deposit(1)
        })
        .await
        .unwrap();
    assert_eq!((runs, done.attempts, done.state.balance), (2, 2, 46));
    // The second run decides from the new state: here it refuses.
    let mut runs = 0;
    let refused = accounts
        .execute(&id("c"), |a| {
            runs += 1;
            if runs == 1 {
                let stale = other.load(&id("c")).unwrap();
                ready(other.append(&id("c"), stale, Withdrawn { cents: 30 })).unwrap();
            }
            a.withdraw(20)
        })
        .await
        .unwrap_err();
    assert_eq!(runs, 2);
    assert!(
        matches!(
            refused,
            CommandError::Rejected(AccountError::Insufficient { balance: 16, .. })
        ),
        "{refused:?}"
    );
    // With no retries, the conflict is the caller's.
    let strict = bus.aggregates::<Account>().retries(0);
    let mut once = false;
    let err = strict
        .execute(&id("c"), |a| {
            if !once {
                once = true;
                let stale = other.load(&id("c")).unwrap();
                ready(other.append(&id("c"), stale, Deposited { cents: 1 })).unwrap();
            }
            a.deposit(1)
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, CommandError::Conflict { attempts: 1, .. }),
        "{err:?}"
    );
}

/// Polls a future that needs no runtime to completion (the memory store's are ready).
fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    loop {
        if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::yield_now();
    }
}

#[tokio::test]
async fn snapshots_are_taken_on_the_policy_and_ignored_when_the_shape_changed() {
    let store = std::sync::Arc::new(MemoryStore::new());
    let bus = bus(store.clone());
    let accounts = bus.aggregates::<Account>();
    accounts
        .execute(&id("s"), |a| a.open("s", 1))
        .await
        .unwrap();
    for _ in 0..23 {
        accounts.execute(&id("s"), |a| a.deposit(1)).await.unwrap();
    }
    // 25 events, snapshot every 10: the last at 20.
    let streams = store.streams().unwrap();
    let snapshot = streams.snapshot("es.account-s").unwrap().unwrap();
    assert_eq!(snapshot.version, 20);
    let loaded = accounts.load(&id("s")).unwrap();
    assert_eq!(
        (
            loaded.version,
            loaded.snapshot,
            loaded.read,
            loaded.state.balance
        ),
        (25, Some(20), 5, 24)
    );
    // A snapshot of another shape (an older type) is not read: the stream is.
    streams
        .put_snapshot(Snapshot::new(
            "es.account-s",
            25,
            "another shape",
            r#"{"balance": 999999}"#,
        ))
        .await
        .unwrap();
    let loaded = accounts.load(&id("s")).unwrap();
    assert_eq!(
        (loaded.snapshot, loaded.read, loaded.state.balance),
        (None, 25, 24)
    );
    // An explicit snapshot.
    assert_eq!(accounts.snapshot(&id("s")).await.unwrap(), 25);
    assert_eq!(accounts.load(&id("s")).unwrap().read, 0);
}

#[tokio::test]
async fn old_versions_in_a_stream_are_upcast_and_bad_ids_refused() {
    let store = std::sync::Arc::new(MemoryStore::new());
    let bus = bus(store.clone());
    // A v1 event written by an older build of the service.
    let mut staged = bus.stage();
    staged
        .publish(OpenedV1 {
            owner: "old".into(),
        })
        .unwrap();
    let rows: Vec<_> = staged
        .rows()
        .map(|r| (r.event.clone(), None::<String>))
        .collect();
    store
        .streams()
        .unwrap()
        .append_to_stream(events::store::StreamAppend::new("es.account-old", 0, rows))
        .await
        .unwrap();
    let accounts = bus.aggregates::<Account>();
    let loaded = accounts.load(&id("old")).unwrap();
    assert_eq!(loaded.state.currency, "EUR");
    assert_eq!(loaded.state.owner.as_deref(), Some("old"));
    for bad in ["", "a\nb", &"x".repeat(201)] {
        assert!(matches!(
            accounts.load(&id(bad)),
            Err(LoadError::InvalidId(_))
        ));
    }
}

/// A command arrives as an event; its handler runs the aggregate's command.
#[derive(Debug, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "es.account.deposit.requested", kind = "command")]
struct DepositRequested {
    account: String,
    cents: u64,
}

#[handler(name = "aggregates.deposit")]
async fn deposit(
    cmd: &DepositRequested,
    ctx: &events::Context,
) -> Result<(), events::HandlerError> {
    ctx.bus()
        .aggregates::<Account>()
        .execute(&cmd.account, |a| a.deposit(cmd.cents))
        .await
        .map_err(|e| events::HandlerError::permanent(e.to_string()))?;
    Ok(())
}

#[tokio::test]
async fn events_decided_in_a_handler_carry_its_lineage() {
    let bus = bus(MemoryStore::new());
    let accounts = bus.aggregates::<Account>();
    let correlation = events::EventId::new();
    let opened = accounts
        .execute_with(
            &id("l"),
            events::PublishOptions::new().correlation_id(correlation),
            |a| a.open("l", 0),
        )
        .await
        .unwrap();
    let store = bus.store().unwrap();
    let stored = |name: &str| store.query(&StoreQuery::all().name(name).unwrap()).unwrap();
    let event = stored("es.account.opened")
        .into_iter()
        .find(|e| e.id == opened.receipts[0].event_id())
        .unwrap();
    assert_eq!(event.correlation_id, correlation);
    let receipt = bus
        .publish(DepositRequested {
            account: id("l"),
            cents: 70,
        })
        .await
        .unwrap();
    assert_eq!(accounts.load(&id("l")).unwrap().state.balance, 70);
    let command = stored("es.account.deposit.requested").remove(0);
    assert_eq!(command.id, receipt.event_id());
    let deposited = stored("es.account.deposited")
        .into_iter()
        .find(|e| e.causation_id == Some(command.id))
        .expect("the deposit's cause is the command event");
    assert_eq!(deposited.correlation_id, command.correlation_id);
    assert_eq!(deposited.depth, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_leave_the_process_go_out_through_the_outbox_written_with_the_append() {
    use events::outbox::OutboxOptions;
    use events::transport::Loopback;
    let dir = tempfile::tempdir().unwrap();
    let broker = Loopback::new();
    broker.set_offline(true);
    let bus = Bus::builder()
        .no_handlers()
        .store(SqliteStore::open(dir.path().join("e.db")).unwrap())
        .transport(broker.clone())
        .outbox(
            OutboxOptions::new()
                .backoff(
                    std::time::Duration::from_millis(5),
                    std::time::Duration::from_millis(50),
                )
                .poll(std::time::Duration::from_millis(20)),
        )
        .build()
        .unwrap();
    let accounts = bus.aggregates::<Account>();
    let done = accounts
        .execute(&id("r"), |a| a.open("r", 40))
        .await
        .unwrap();
    assert_eq!(done.version, 2);
    // The entries were committed with the append: they wait while the broker is away.
    assert_eq!(bus.outbox().unwrap().unwrap().backlog.events, 2);
    broker.set_offline(false);
    bus.drain_outbox(std::time::Duration::from_millis(10))
        .await
        .unwrap();
    let sent = broker.messages();
    let wire: Vec<(&str, &str, &str)> = sent
        .iter()
        .map(|m| {
            (
                m["type"].as_str().unwrap(),
                m["stream"].as_str().unwrap(),
                m["streamversion"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        wire,
        [
            ("es.account.opened", "es.account-r", "1"),
            ("es.account.deposited", "es.account-r", "2")
        ]
    );

    // Without the outbox an event that leaves the process cannot go with the append: the
    // command is refused and nothing is stored.
    let bus = Bus::builder()
        .no_handlers()
        .store(MemoryStore::new())
        .transport(Loopback::new())
        .build()
        .unwrap();
    let refused = bus
        .aggregates::<Account>()
        .execute(&id("x"), |a| a.open("x", 0))
        .await
        .unwrap_err();
    assert!(matches!(refused, CommandError::Publish(_)), "{refused:?}");
    let store = bus.store().unwrap();
    assert_eq!(store.count(&StoreQuery::all()).unwrap(), 0);
    assert_eq!(
        store
            .streams()
            .unwrap()
            .stream_version("es.account-x")
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn an_unreadable_stored_event_is_a_typed_error_that_quotes_no_value() {
    let store = std::sync::Arc::new(MemoryStore::new());
    let bus = bus(store.clone());
    let mut event = events::store::StoredEvent::new(events::EventId::new(), "es.account.deposited");
    event.payload = r#"{"cents": "4111-1111-1111-1111"}"#.into();
    store
        .streams()
        .unwrap()
        .append_to_stream(events::store::StreamAppend::new(
            "es.account-bad",
            0,
            vec![(event, None)],
        ))
        .await
        .unwrap();
    match bus.aggregates::<Account>().load(&id("bad")) {
        Err(LoadError::Unreadable {
            stream,
            version,
            reason,
        }) => {
            assert_eq!((stream.as_str(), version), ("es.account-bad", 1));
            assert!(
                !reason.contains("4111"),
                "the value is not quoted: {reason}"
            );
            assert!(reason.contains("does not deserialize"), "{reason}");
        }
        other => panic!("expected an unreadable event, got {other:?}"),
    }
}
