//! The store conformance suite on PostgreSQL (the machine's server: `127.0.0.1:5432`, trust
//! auth, database `test`), each test in a schema of its own, dropped after.

use std::sync::atomic::{AtomicU32, Ordering};

use events_postgres::{PostgresOptions, PostgresStore};

/// The server the tests use; `EVENTS_POSTGRES` overrides it.
pub fn config() -> String {
    std::env::var("EVENTS_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned())
}

/// A store in a fresh schema, dropped with the store.
pub fn store() -> PostgresStore {
    static N: AtomicU32 = AtomicU32::new(0);
    let schema = format!(
        "events_test_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    PostgresStore::connect(&config(), PostgresOptions::new().schema(schema).temporary())
        .unwrap_or_else(|e| panic!("PostgreSQL at `{}`: {e}", config()))
}

events::store_conformance!(store());

/// A schema written by a newer version is refused and left unchanged; a bad schema name is
/// refused before any SQL; errors say what the server said.
#[test]
fn a_newer_schema_is_refused_and_left_unchanged() {
    let schema = format!("events_newer_{}", std::process::id());
    let first = PostgresStore::connect(&config(), PostgresOptions::new().schema(&schema)).unwrap();
    drop(first);
    let mut client = postgres::Client::connect(&config(), postgres::NoTls).unwrap();
    client
        .batch_execute(&format!(
            "UPDATE \"{schema}\".events_schema SET version = 99"
        ))
        .unwrap();
    let err =
        PostgresStore::connect(&config(), PostgresOptions::new().schema(&schema)).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            events::store::StoreError::TooNew {
                found: 99,
                known: 5,
                ..
            }
        ),
        "{text}"
    );
    let version: i32 = client
        .query_one(
            &format!("SELECT version FROM \"{schema}\".events_schema"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(version, 99, "left unchanged");
    client
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .unwrap();

    let err = PostgresStore::connect(
        &config(),
        PostgresOptions::new().schema("x\"; DROP TABLE y; --"),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("is not lower-case letters"),
        "{err}"
    );
    let err = PostgresStore::connect(
        "host=127.0.0.1 port=5432 user=postgres password=hunter2 dbname=no_such_database",
        PostgresOptions::new(),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("no_such_database"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}
