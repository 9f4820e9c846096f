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
