//! Personal data that can be forgotten, on SQLite and PostgreSQL: events of two data
//! subjects are published (handled, dead-lettered, appended to an aggregate's stream), one
//! subject is forgotten, and then replay, recovery, queries, dead letters and the aggregate
//! read that subject's `Personal` fields as forgotten and the other's intact; the raw SQLite
//! file and a dump of the PostgreSQL schema hold neither plain value, nor a redacted field's.

#![allow(unreachable_pub)]

use std::sync::Mutex;

use events::personal::Personal;
use events::store::{EventStore, SqliteStore, StoreQuery};
use events::{Bus, DeadLetterFilter, Event, aggregate, handler};

/// A customer signed up.
#[derive(Clone, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "crm.customer.registered")]
pub struct Registered {
    #[event(subject)]
    pub customer: String,
    pub email: Personal<String>,
    pub address: Personal<Address>,
    pub plan: String,
    #[event(redact)]
    pub card: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Address {
    pub street: String,
    pub city: String,
}

static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn shown(ev: &Registered) -> String {
    format!(
        "{} {} {} {}",
        ev.customer,
        ev.email.get().map_or("<forgotten>", String::as_str),
        ev.address.get().map_or("<forgotten>", |a| a.city.as_str()),
        ev.card
    )
}

mod handlers {
    use super::*;

    #[handler(durable)]
    fn crm(ev: &Registered) {
        SEEN.lock().unwrap().push(shown(ev));
    }

    /// Fails for good: every event leaves a dead letter.
    #[handler]
    fn mailer(_: &Registered) -> Result<(), events::HandlerError> {
        Err(events::HandlerError::permanent("the mail server said no"))
    }
}

static LATE: Mutex<Vec<String>> = Mutex::new(Vec::new());

mod late {
    use super::*;

    #[handler(durable)]
    fn crm_late(ev: &Registered) {
        LATE.lock().unwrap().push(shown(ev));
    }
}

/// A customer's profile as an aggregate.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Profile {
    email: Option<Personal<String>>,
}

#[aggregate(name = "crm.profile")]
impl Profile {
    #[apply]
    fn registered(&mut self, e: &Registered) {
        self.email = Some(e.email.clone());
    }

    #[command]
    fn register(&self, e: Registered) -> Result<Registered, std::convert::Infallible> {
        Ok(e)
    }
}

fn customer(id: &str, email: &str, city: &str) -> Registered {
    Registered {
        customer: id.into(),
        email: Personal::new(email.into()),
        address: Personal::new(Address {
            street: format!("1 {city} Road"),
            city: city.into(),
        }),
        plan: "gold".into(),
        card: format!("4111-{id}-card"),
    }
}

fn make_bus(store: impl EventStore) -> Bus {
    Bus::builder()
        .scope("personal::handlers")
        .store(store)
        .no_retries()
        .audit(true)
        .build()
        .unwrap()
}

fn take() -> Vec<String> {
    let mut seen = std::mem::take(&mut *SEEN.lock().unwrap());
    seen.sort();
    seen
}

/// The plain values that must never be at rest.
const PLAIN: [&str; 6] = [
    "ada@example.com",
    "bob@example.com",
    "Lovelace Road",
    "Babbage Road",
    "4111-ada-card",
    "4111-bob-card",
];

/// Everything the test checks, on one store, opened as `open` says (twice: the second
/// time as after a restart, with the keys of the first).
async fn forget_one_of_two(open: impl Fn() -> std::sync::Arc<dyn EventStore>) {
    take();
    let bus = make_bus(open());
    bus.publish(customer("ada", "ada@example.com", "Lovelace"))
        .await
        .unwrap();
    bus.publish(customer("bob", "bob@example.com", "Babbage"))
        .await
        .unwrap();
    let profiles = bus.aggregates::<Profile>();
    for (id, email, city) in [
        ("ada", "ada@example.com", "Lovelace"),
        ("bob", "bob@example.com", "Babbage"),
    ] {
        profiles
            .execute(&id.to_owned(), |p| p.register(customer(id, email, city)))
            .await
            .unwrap();
    }
    assert_eq!(
        take(),
        [
            "ada ada@example.com Lovelace 4111-ada-card",
            "ada ada@example.com Lovelace 4111-ada-card",
            "bob bob@example.com Babbage 4111-bob-card",
            "bob bob@example.com Babbage 4111-bob-card",
        ],
        "handlers get the values as published"
    );
    assert_eq!(bus.dead_letters().list(&DeadLetterFilter::all()).len(), 4);
    assert_eq!(bus.forget("ada").unwrap(), 1);
    assert_eq!(
        bus.forget("ada").unwrap(),
        0,
        "forgetting twice deletes nothing more"
    );
    drop(bus);

    // After a restart: only the store (and its keys) is left.
    let bus = make_bus(open());
    // Recovery: the durable handler has every event; reset it so that it gets them again.
    bus.rebuild("personal::handlers::crm").await.unwrap();
    let rebuilt = take();
    assert_eq!(
        rebuilt,
        [
            "ada <forgotten> <forgotten> 4111-ada-card",
            "ada <forgotten> <forgotten> 4111-ada-card",
            "bob bob@example.com Babbage 4111-bob-card",
            "bob bob@example.com Babbage 4111-bob-card",
        ]
    );
    // Recovery: a durable handler added now gets the whole history from the store.
    let late = Bus::builder()
        .handler("personal::late::crm_late")
        .store(open())
        .build()
        .unwrap();
    late.recover().await.unwrap();
    let mut recovered = std::mem::take(&mut *LATE.lock().unwrap());
    recovered.sort();
    assert_eq!(recovered, rebuilt);
    drop(late);
    // Replay.
    bus.replay(StoreQuery::all().name("crm.customer.registered").unwrap())
        .only(["personal::handlers::crm"])
        .await
        .unwrap();
    assert_eq!(take(), rebuilt);
    // Queries, read as the type.
    let rows = bus
        .store()
        .unwrap()
        .query(&StoreQuery::all().name("crm.customer.registered").unwrap())
        .unwrap();
    let read: Vec<String> = rows
        .iter()
        .map(|r| shown(&bus.decode::<Registered>(r).unwrap()))
        .collect();
    assert_eq!(read.len(), 4);
    assert_eq!(read[0], "ada <forgotten> <forgotten> 4111-ada-card");
    assert_eq!(read[1], "bob bob@example.com Babbage 4111-bob-card");
    // Dead letters: the forgotten subject's fields read as forgotten, the other's intact.
    let letters = bus.dead_letters().list(&DeadLetterFilter::all());
    assert_eq!(letters.len(), 4);
    let mut read: Vec<String> = letters
        .iter()
        .map(|l| shown(&bus.dead_letters().event::<Registered>(l.id).unwrap()))
        .collect();
    read.sort();
    assert_eq!(read, rebuilt);
    for letter in &letters {
        let dump = format!("{letter:?}");
        for plain in PLAIN {
            assert!(
                !dump.contains(plain),
                "a dead letter's dump shows {plain}: {dump}"
            );
        }
    }
    // The aggregate.
    let ada = profiles_of(&bus, "ada");
    let bob = profiles_of(&bus, "bob");
    assert_eq!(ada, Some(None), "ada's email is forgotten");
    assert_eq!(bob, Some(Some("bob@example.com".to_owned())));
    // No snapshot keeps personal data in plain text.
    let refused = bus
        .aggregates::<Profile>()
        .snapshot(&"bob".to_owned())
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("holds `Personal` data"),
        "{refused}"
    );
    // The audit trail has the forget.
    let forgets = bus
        .store()
        .unwrap()
        .query(&StoreQuery::all().name("events.audit.forgotten").unwrap())
        .unwrap();
    assert_eq!(forgets.len(), 2);
    assert_eq!(forgets[0].payload_json().unwrap()["subject"], "ada");
    bus.store().unwrap().flush().await.unwrap();
}

fn profiles_of(bus: &Bus, id: &str) -> Option<Option<String>> {
    let loaded = bus.aggregates::<Profile>().load(&id.to_owned()).unwrap();
    loaded.state.email.map(|e| e.into_inner())
}

fn assert_no_plain_value(bytes: &[u8], what: &str) {
    for plain in PLAIN {
        assert!(
            !bytes.windows(plain.len()).any(|w| w == plain.as_bytes()),
            "{what} holds `{plain}` in plain text"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_a_subject_on_sqlite() {
    let _g = LOCK.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crm.db");
    let open = || -> std::sync::Arc<dyn EventStore> {
        std::sync::Arc::new(SqliteStore::open(&path).unwrap())
    };
    forget_one_of_two(open).await;
    // Every byte the store left on disk: the file, its log, its mark.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        assert_no_plain_value(&std::fs::read(&path).unwrap(), &path.display().to_string());
    }
}

fn pg_config() -> String {
    std::env::var("EVENTS_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_a_subject_on_postgres() {
    use events::postgres::{PostgresOptions, PostgresStore};
    let _g = LOCK.lock().await;
    let schema = format!("events_personal_{}", std::process::id());
    let open = || -> std::sync::Arc<dyn EventStore> {
        std::sync::Arc::new(
            PostgresStore::connect(&pg_config(), PostgresOptions::new().schema(&schema)).unwrap(),
        )
    };
    forget_one_of_two(open).await;
    // A dump of the schema: every row of every table.
    let dump = std::process::Command::new("pg_dump")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-n",
            &schema,
            "--data-only",
        ])
        .output()
        .expect("pg_dump (Debian package `postgresql-client`)");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    assert!(String::from_utf8_lossy(&dump.stdout).contains("subject_keys"));
    assert_no_plain_value(&dump.stdout, "the PostgreSQL schema");
    drop(
        PostgresStore::connect(
            &pg_config(),
            PostgresOptions::new().schema(&schema).temporary(),
        )
        .unwrap(),
    );
}

/// On the wire: sealed by the publisher, opened by a consumer with the shared key store; a
/// subject forgotten meanwhile reads as forgotten there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_travels_sealed_and_is_forgotten_on_the_consumer_too() {
    use events::nats::{Nats, NatsOptions};
    use futures_util::StreamExt;
    let _g = LOCK.lock().await;
    take();
    let server = events_tests::NatsServer::start();
    let keys = std::sync::Arc::new(events::store::MemoryKeys::new());
    let nats = || async {
        Nats::connect(&server.url(), NatsOptions::new("p1").memory_storage())
            .await
            .unwrap()
    };
    let publisher = Bus::builder()
        .no_handlers()
        .keys(std::sync::Arc::clone(&keys))
        .transport(nats().await)
        .build()
        .unwrap();
    let consumer = Bus::builder()
        .handler("personal::handlers::crm")
        .keys(std::sync::Arc::clone(&keys))
        .transport(nats().await)
        .build()
        .unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let mut raw = client
        .subscribe("p1.crm.customer.registered")
        .await
        .unwrap();
    client.flush().await.unwrap();
    publisher
        .publish(customer("ada", "ada@example.com", "Lovelace"))
        .await
        .unwrap();
    publisher
        .publish(customer("bob", "bob@example.com", "Babbage"))
        .await
        .unwrap();
    for _ in 0..2 {
        let message = raw.next().await.unwrap();
        for plain in &PLAIN[..4] {
            assert!(
                !String::from_utf8_lossy(&message.payload).contains(plain),
                "`{plain}` on the wire in plain text"
            );
        }
        let body = String::from_utf8_lossy(&message.payload).into_owned();
        assert!(body.contains("\"$personal\":\"v1."), "{body}");
    }
    assert_eq!(publisher.forget("ada").unwrap(), 1);
    let _consumers = consumer.consume().await.unwrap();
    events_tests::until("both events", || SEEN.lock().unwrap().len() == 2).await;
    assert_eq!(
        take(),
        [
            "ada <forgotten> <forgotten> 4111-ada-card",
            "bob bob@example.com Babbage 4111-bob-card"
        ]
    );
}

/// The schema accepts the value, the sealed form and the forgotten form, and says which
/// fields are personal; the catalog marks them.
#[test]
fn schemas_and_docs_mark_personal_fields() {
    let bus = Bus::builder().no_handlers().build().unwrap();
    let md = events::docs::markdown(&bus, &events::docs::Options::default()).unwrap();
    assert!(
        md.contains(
            "- personal data (encrypted per data subject, forgettable): `address`, `email`"
        ),
        "{md}"
    );
    let schema = serde_json::to_value(Registered::schema()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let base = serde_json::json!({
        "customer": "ada", "plan": "gold", "card": "c",
        "address": { "street": "s", "city": "c" }
    });
    for (email, ok) in [
        (serde_json::json!("ada@example.com"), true),
        (serde_json::json!({ "$personal": "v1.00.00.00" }), true),
        (serde_json::json!({ "$personal": "forgotten" }), true),
        (
            serde_json::json!({ "$personal": "forgotten", "x": 1 }),
            false,
        ),
        (serde_json::json!(7), false),
    ] {
        let mut doc = base.clone();
        doc["email"] = email.clone();
        assert_eq!(validator.is_valid(&doc), ok, "{email}");
        // What the schema accepts, the type accepts (without keys, a sealed value reads as
        // forgotten), and the other way round.
        assert_eq!(
            serde_json::from_value::<Registered>(doc).is_ok(),
            ok,
            "{email}"
        );
    }
    let forgotten: Registered = serde_json::from_value({
        let mut doc = base.clone();
        doc["email"] = serde_json::json!({ "$personal": "forgotten" });
        doc
    })
    .unwrap();
    assert!(forgotten.email.is_forgotten());
    assert_eq!(format!("{:?}", forgotten.email), "Personal(<forgotten>)");
    assert_eq!(
        format!("{:?}", Personal::new("secret")),
        "Personal(<personal>)",
        "Debug never shows the value"
    );
}

/// Inside an application's SQLite transaction (which holds the store's write lock), an
/// event with personal and redacted data gets its keys and is sealed: once, the key store
/// shared the file's lock, and the commit waited 10 s and failed with "database is locked".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_made_inside_an_application_transaction() {
    let _g = LOCK.lock().await;
    take();
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SqliteStore::open(dir.path().join("tx.db")).unwrap());
    let bus = Bus::builder()
        .handler("personal::handlers::crm")
        .store(std::sync::Arc::clone(&store))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let (rows, _) = store
        .transaction(&bus, |tx, staged| {
            tx.execute("CREATE TABLE signups (customer TEXT NOT NULL)", [])?;
            tx.execute("INSERT INTO signups VALUES ('cy')", [])?;
            staged
                .publish(customer("cy", "cy@example.com", "Ada"))
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            Ok::<_, rusqlite::Error>(1)
        })
        .await
        .unwrap();
    assert_eq!(rows, 1);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(take(), ["cy cy@example.com Ada 4111-cy-card"]);
    let stored = bus.store().unwrap().query(&StoreQuery::all()).unwrap();
    assert!(!stored[0].payload.contains("cy@example.com"));
    assert!(!stored[0].payload.contains("4111-cy-card"));
}

/// A customer moved: the personal value sits inside a field's own type, under
/// `rename_all`, where the derive cannot see it.
#[derive(Debug, Clone, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "crm.customer.moved")]
#[serde(rename_all = "camelCase")]
pub struct Moved {
    #[event(subject)]
    pub customer_id: String,
    pub new_home: Home,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Home {
    pub owner_email: Personal<String>,
    pub floor: u8,
}

/// Outside JSON that breaks a `Personal` field's schema is refused with an error that
/// names where, never what: no message, `Display` or `Debug`, quotes the personal value,
/// at the top level, inside a field's own type, or as the whole payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_never_quote_personal_values() {
    let _g = LOCK.lock().await;
    let bus = Bus::builder()
        .no_handlers()
        .keys(events::store::MemoryKeys::new())
        .build()
        .unwrap();
    let cases = [
        (
            "crm.customer.registered",
            serde_json::json!({
                "customer": "ada", "plan": "gold", "card": "c", "email": "ada@example.com",
                "address": { "street": "221B Baker Street", "city": 7 }
            }),
            "/address",
        ),
        (
            "crm.customer.registered",
            serde_json::json!([{ "customer": "ada", "email": "221B Baker Street" }]),
            "",
        ),
        (
            "crm.customer.moved",
            serde_json::json!({
                "customerId": "ada", "newHome": { "ownerEmail": ["221B Baker Street"], "floor": 2 }
            }),
            "/newHome/ownerEmail",
        ),
        (
            "crm.customer.moved",
            serde_json::json!({ "customerId": "ada", "newHome": "221B Baker Street" }),
            "/newHome",
        ),
    ];
    for (name, payload, path) in &cases {
        let text = payload.to_string();
        let err = bus
            .publish_json(name, 1, text.as_bytes(), events::PublishOptions::default())
            .await
            .unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains("221B"),
            "{name} at {path:?}: the error quotes the personal value: {shown}"
        );
        match &err {
            events::IngestError::Invalid { violations, .. } => {
                assert!(
                    violations.iter().any(|v| v.path == *path),
                    "{name}: no violation at {path:?}: {violations:?}"
                );
            }
            other => panic!("{name}: expected a schema violation, got {other:?}"),
        }
    }
    // Unmasked, each of these violations quotes the value: the check above is not vacuous.
    for (name, payload, _) in &cases {
        let schema = match *name {
            "crm.customer.moved" => Moved::schema(),
            _ => Registered::schema(),
        };
        let validator = jsonschema::validator_for(&serde_json::to_value(schema).unwrap()).unwrap();
        let quoted: Vec<String> = validator
            .iter_errors(payload)
            .map(|e| e.to_string())
            .collect();
        assert!(
            quoted.iter().any(|m| m.contains("221B")),
            "{name}: {quoted:?}"
        );
    }
    let info = Moved::info();
    assert_eq!(info.secret_keys(), [Box::<str>::from("newHome")]);
}
