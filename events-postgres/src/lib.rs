//! [`PostgresStore`]: an [`EventStore`] on PostgreSQL, written only against the public store
//! seam of `events` (`EventStore`, `StoredEvent`, `StoreQuery::parts`). Applications reach it
//! as `events::postgres` (feature `postgres` of `events`).
//!
//! ```no_run
//! use events_postgres::{PostgresOptions, PostgresStore};
//!
//! let store = PostgresStore::connect(
//!     "host=127.0.0.1 user=postgres dbname=app",
//!     PostgresOptions::new().schema("orders"),
//! )?;
//! let bus = events::Bus::builder().store(store).build()?;
//! # let _ = bus;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! - **Ordering.** Appends are serialized across every process that shares the database: a
//!   commit takes a transaction-level advisory lock, reads the highest sequence and numbers
//!   its events after it. Sequences therefore commit in order, and a reader that follows the
//!   log by sequence never skips an event that commits later with a lower number (the
//!   classic failure of `SERIAL` columns under concurrent writers).
//! - **Group commit.** One thread owns the write connection and commits everything that
//!   arrived while the previous commit ran in one transaction; a run of appends is one
//!   lookup of the ids already stored and one multi-row insert (`UNNEST` of one array per
//!   column), so a commit costs the same few round trips whatever its size.
//! - **Migrations.** Versioned in `events_schema`, run under an advisory lock (two processes
//!   starting at once migrate once); a schema written by a newer version is refused with
//!   [`StoreError::TooNew`] and left unchanged.
//! - **Reads** run on a second connection, owned by a thread of its own: the store's
//!   synchronous reads work from inside an async runtime.
//!
//! - **Recovery in one process at a time.** [`Bus::recover`](events::Bus::recover) reads a
//!   durable handler's undelivered events under a session advisory lock for that handler,
//!   given back when it moves the handler's checkpoint (the end of recovery) or when the
//!   process's connection closes: two processes recovering at once never both deliver one
//!   stored event to one durable handler; the second skips that handler (logged at `INFO`)
//!   and what is left undelivered goes to the next `recover()` that takes the lock.

use std::sync::Mutex;
use std::sync::mpsc;
use std::thread::JoinHandle;

use events::store::{
    Backlog, EventStore, Order, Outbox, Row, Snapshot, StoreError, StoreFuture, StoreQuery,
    StoredDeadLetter, StoredEvent, StreamAppend, StreamEvent, StreamLoad, Streams,
};
use events::{EventId, Staged};
use postgres::types::{ToSql, Type};

use postgres::{Client, NoTls};
use tokio::sync::oneshot;
/// The asynchronous PostgreSQL client, for [`PostgresStore::commit`]'s
/// `tokio_postgres::Transaction` without a dependency of the application's own to keep in
/// step.
pub use tokio_postgres;

/// The schema, one migration per version; `events_schema` says how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: the event log, delivery records, checkpoints, dead letters. `time` is nanoseconds
    // since the Unix epoch stored order-preservingly in a signed column (see `time_key`).
    "CREATE TABLE events (
        sequence BIGINT PRIMARY KEY,
        id UUID NOT NULL UNIQUE,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        kind TEXT NOT NULL,
        time BIGINT NOT NULL,
        source TEXT NOT NULL,
        target TEXT,
        correlation_id UUID NOT NULL,
        causation_id UUID,
        depth INTEGER NOT NULL,
        priority INTEGER NOT NULL,
        metadata TEXT NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE INDEX events_by_name ON events (name, sequence);
    CREATE INDEX events_by_correlation ON events (correlation_id, sequence);
    CREATE INDEX events_by_time ON events (time);
    CREATE TABLE deliveries (
        handler TEXT NOT NULL,
        sequence BIGINT NOT NULL,
        PRIMARY KEY (handler, sequence)
    );
    CREATE TABLE checkpoints (
        handler TEXT NOT NULL,
        event TEXT NOT NULL,
        sequence BIGINT NOT NULL,
        PRIMARY KEY (handler, event)
    );
    CREATE TABLE dead_letters (
        id BIGINT PRIMARY KEY,
        letter TEXT NOT NULL
    );
    CREATE TABLE store_counters (
        key TEXT PRIMARY KEY,
        value BIGINT NOT NULL
    );",
    // 2: the outbox: an entry per event not yet acknowledged by the broker, in a
    // partition; a lease per partition says which process forwards it until when.
    "CREATE TABLE outbox (
        sequence BIGINT PRIMARY KEY,
        partition TEXT NOT NULL
    );
    CREATE INDEX outbox_by_partition ON outbox (partition, sequence);
    CREATE TABLE outbox_leases (
        partition TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        until TIMESTAMPTZ NOT NULL
    );",
    // 3: the inbox: what `#[handler(inbox)]` handlers recorded, with when.
    "CREATE TABLE inbox (
        handler TEXT NOT NULL,
        source TEXT NOT NULL,
        id TEXT NOT NULL,
        at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (handler, source, id)
    );",
    // 4: streams of aggregates: each event's stream and version in it, each stream's
    // version (checked under the append lock), snapshots.
    "ALTER TABLE events ADD COLUMN stream TEXT, ADD COLUMN stream_version BIGINT;
    CREATE UNIQUE INDEX events_by_stream ON events (stream, stream_version)
        WHERE stream IS NOT NULL;
    CREATE TABLE streams (
        stream TEXT PRIMARY KEY,
        version BIGINT NOT NULL
    );
    CREATE TABLE snapshots (
        stream TEXT PRIMARY KEY,
        version BIGINT NOT NULL,
        shape TEXT NOT NULL,
        state TEXT NOT NULL
    );",
    // 5: the data keys of personal data, one per data subject (deleted by `forget`).
    "CREATE TABLE subject_keys (
        subject TEXT PRIMARY KEY,
        id BYTEA NOT NULL UNIQUE,
        secret BYTEA NOT NULL,
        created BIGINT NOT NULL
    );",
];

/// The advisory lock keys: appends, and migrations.
const APPEND_LOCK: i64 = 0x6576_656e_7473_0001;
const MIGRATE_LOCK: i64 = 0x6576_656e_7473_0002;

/// The most writes one transaction takes: a bound on one commit's latency.
const MAX_BATCH: usize = 4096;

/// How a [`PostgresStore`] is set up.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct PostgresOptions {
    schema: Option<String>,
    temporary: bool,
    kms: Option<std::sync::Arc<dyn events::store::Kms>>,
}

impl PostgresOptions {
    /// The defaults: the connection's own `search_path`.
    pub fn new() -> PostgresOptions {
        PostgresOptions::default()
    }

    /// Keeps the store's tables in schema `name` (created when missing): one database can
    /// hold several stores. Lower-case letters, digits and `_`, not starting with a digit.
    pub fn schema(mut self, name: impl Into<String>) -> PostgresOptions {
        self.schema = Some(name.into());
        self
    }

    /// Keeps every data key encrypted by `kms`'s master key (envelope encryption): a copy
    /// of the database (a backup, a replica, dead tuples not yet vacuumed) holds no usable
    /// key. Without it (the default), data keys are kept as they are.
    pub fn kms(mut self, kms: impl events::store::Kms) -> PostgresOptions {
        self.kms = Some(std::sync::Arc::new(kms));
        self
    }

    /// Drops the [`schema`](Self::schema) (with everything in it) when the store is
    /// dropped: a store of a test's own. Without a schema it does nothing.
    pub fn temporary(mut self) -> PostgresOptions {
        self.temporary = true;
        self
    }
}

/// An [`EventStore`] on PostgreSQL. See the [crate docs](crate).
pub struct PostgresStore {
    /// The `(handler, event)` pairs whose recovery lock this store's reader session holds.
    recovering: std::sync::Arc<Mutex<std::collections::HashSet<(String, String)>>>,
    writer: Mutex<Option<mpsc::Sender<Command>>>,
    reader: Mutex<Option<mpsc::Sender<Read>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// `"schema".` when the store has a schema of its own: what an application's
    /// transaction prefixes the store's tables with.
    prefix: String,
    /// Encrypts the data keys it keeps, if given.
    kms: Option<std::sync::Arc<dyn events::store::Kms>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Command {
    /// An append; with a partition, an outbox entry in it too.
    Append(Box<StoredEvent>, Option<Box<str>>, Reply<u64>),
    Forwarded(Vec<i64>, Reply<()>),
    Delivered(String, u64),
    Checkpoint(String, String, Reply<u64>),
    PutDeadLetter(Box<StoredDeadLetter>),
    RemoveDeadLetter(u64),
    Flush(Reply<()>),
    /// Events appended to a stream if it is at the expected version.
    AppendStream(Box<StreamAppend>, Reply<Vec<u64>>),
    PutSnapshot(Box<Snapshot>, Reply<()>),
    /// A durable handler's records and checkpoint for an event forgotten.
    Reset(String, String, Reply<()>),
}

/// A read, run on the reader's connection.
type Read = Box<dyn FnOnce(&mut Client) + Send>;

/// The error and its causes: a `postgres::Error` says only "db error", its source says what
/// the server said.
fn backend(e: impl std::error::Error) -> StoreError {
    let mut reason = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    StoreError::Backend(reason)
}

impl PostgresStore {
    /// Connects twice (a writer and a reader) with a libpq-style `config`
    /// (`host=127.0.0.1 user=postgres dbname=app`, or a `postgresql://` URL), creates the
    /// schema when asked, and migrates.
    ///
    /// # Errors
    /// [`StoreError::Open`] when a connection or a migration fails (a failed migration is
    /// rolled back); [`StoreError::TooNew`] when the schema was written by a newer version.
    pub fn connect(config: &str, options: PostgresOptions) -> Result<PostgresStore, StoreError> {
        // The synchronous client connects by blocking on a runtime of its own, which panics
        // on a thread that drives one (in `#[tokio::main]`, say): it connects on a thread of
        // its own.
        std::thread::scope(|scope| {
            scope
                .spawn(|| PostgresStore::connect_here(config, options))
                .join()
                .unwrap_or_else(|_| {
                    Err(StoreError::Open {
                        path: redact(config),
                        reason: "the connecting thread panicked".into(),
                    })
                })
        })
    }

    fn connect_here(config: &str, options: PostgresOptions) -> Result<PostgresStore, StoreError> {
        let open = |reason: String| StoreError::Open {
            path: redact(config),
            reason,
        };
        if let Some(schema) = &options.schema {
            let valid = schema
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                && schema
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && schema.len() <= 63;
            if !valid {
                return Err(open(format!(
                    "schema name {schema:?} is not lower-case letters, digits and `_`"
                )));
            }
        }
        let connect = || -> Result<Client, StoreError> {
            let mut client = Client::connect(config, NoTls).map_err(|e| open(e.to_string()))?;
            if let Some(schema) = &options.schema {
                client
                    .batch_execute(&format!(
                        "CREATE SCHEMA IF NOT EXISTS \"{schema}\"; SET search_path TO \"{schema}\""
                    ))
                    .map_err(|e| open(e.to_string()))?;
            }
            Ok(client)
        };
        let mut writer = connect()?;
        migrate(&mut writer).map_err(|e| match e {
            StoreError::TooNew { found, known, .. } => StoreError::TooNew {
                path: redact(config),
                found,
                known,
            },
            other => open(other.to_string()),
        })?;
        let mut reader = connect()?;
        let temporary = options.schema.clone().filter(|_| options.temporary);
        let (wtx, wrx) = mpsc::channel::<Command>();
        let (rtx, rrx) = mpsc::channel::<Read>();
        let write_thread = std::thread::Builder::new()
            .name("events-postgres-writer".into())
            .spawn(move || {
                write_loop(&mut writer, &wrx);
                if let Some(schema) = temporary {
                    if let Err(e) =
                        writer.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    {
                        tracing::warn!(schema, error = %e, "a temporary store's schema was not dropped");
                    }
                }
            })
            .map_err(|e| open(e.to_string()))?;
        let read_thread = std::thread::Builder::new()
            .name("events-postgres-reader".into())
            .spawn(move || {
                while let Ok(read) = rrx.recv() {
                    read(&mut reader);
                }
            })
            .map_err(|e| open(e.to_string()))?;
        Ok(PostgresStore {
            kms: options.kms.clone(),
            prefix: options
                .schema
                .as_ref()
                .map_or_else(String::new, |s| format!("\"{s}\".")),
            recovering: std::sync::Arc::default(),
            writer: Mutex::new(Some(wtx)),
            reader: Mutex::new(Some(rtx)),
            threads: Mutex::new(vec![write_thread, read_thread]),
        })
    }

    fn send(&self, command: Command) -> Result<(), StoreError> {
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        match &*writer {
            Some(tx) => tx.send(command).map_err(|_| StoreError::Closed),
            None => Err(StoreError::Closed),
        }
    }

    fn ask<T: Send + 'static>(&self, make: impl FnOnce(Reply<T>) -> Command) -> StoreFuture<'_, T> {
        let (tx, rx) = oneshot::channel();
        let sent = self.send(make(tx));
        Box::pin(async move {
            sent?;
            rx.await.map_err(|_| StoreError::Closed)?
        })
    }

    /// Writes the staged events (`bus.stage()`, then `staged.publish(..)`) in the
    /// application's own transaction, on its own connection, and commits it: the
    /// application's rows and the events (with the outbox entries of those that leave the
    /// process) commit together or not at all. Then publishes them
    /// ([`Staged::committed`]): the forwarder sends those that leave the process, this
    /// process's handlers get the others. The receipts, one per event. To publish nothing,
    /// roll the transaction back (or drop it) instead, and drop `staged`.
    ///
    /// The store's append lock is taken just before the commit (events commit in sequence
    /// order across processes), so it is held for the commit's round trips only, not for
    /// the application's transaction.
    ///
    /// ```no_run
    /// # #[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    /// # #[event(name = "doc.order.placed")]
    /// # struct OrderPlaced { order_id: i64 }
    /// # async fn run(
    /// #     bus: events::Bus,
    /// #     store: std::sync::Arc<events_postgres::PostgresStore>,
    /// #     client: &mut events_postgres::tokio_postgres::Client,
    /// # ) -> Result<(), Box<dyn std::error::Error>> {
    /// let tx = client.transaction().await?;
    /// tx.execute("INSERT INTO orders (id) VALUES ($1)", &[&7_i64]).await?;
    /// let mut staged = bus.stage();
    /// staged.publish(OrderPlaced { order_id: 7 })?;
    /// let receipts = store.commit(tx, staged).await?;
    /// # let _ = receipts; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// When a statement or the commit fails: nothing is committed (the transaction is
    /// rolled back as it is dropped) and nothing is published. An id already stored is
    /// [`StoreError::Duplicate`].
    pub async fn commit(
        &self,
        tx: tokio_postgres::Transaction<'_>,
        staged: Staged,
    ) -> Result<Vec<events::Receipt>, StoreError> {
        let prefix = &self.prefix;
        let mut sequences = Vec::with_capacity(staged.len());
        if !staged.is_empty() {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPEND_LOCK])
                .await
                .map_err(backend)?;
            let mut previous: i64 = tx
                .query_one(
                    &format!("SELECT COALESCE(MAX(sequence), 0) FROM {prefix}events"),
                    &[],
                )
                .await
                .map_err(backend)?
                .get(0);
            let ids: Vec<uuid::Uuid> = staged
                .rows()
                .map(|r| uuid::Uuid::from(r.event.id))
                .collect();
            let stored = tx
                .query(
                    &format!("SELECT id, sequence FROM {prefix}events WHERE id = ANY($1)"),
                    &[&ids],
                )
                .await
                .map_err(backend)?;
            if let Some(r) = stored.first() {
                return Err(StoreError::Duplicate {
                    id: EventId::from(r.get::<_, uuid::Uuid>(0)),
                    sequence: r.get::<_, i64>(1) as u64,
                });
            }
            let mut rows = Columns::default();
            let (mut entries, mut partitions) = (Vec::new(), Vec::new());
            for (row, id) in staged.rows().zip(ids) {
                previous += 1;
                rows.push(previous, id, row.event)?;
                rows.stream.push(None);
                rows.stream_version.push(None);
                if let Some(p) = row.outbox {
                    entries.push(previous);
                    partitions.push(p.to_owned());
                }
                sequences.push(previous as u64);
            }
            tx.execute(&insert_events(prefix), &rows.params())
                .await
                .map_err(backend)?;
            if !entries.is_empty() {
                let [add, leases] = outbox_statements(prefix);
                tx.execute(&add, &[&entries, &partitions])
                    .await
                    .map_err(backend)?;
                tx.execute(&leases, &[&partitions]).await.map_err(backend)?;
            }
        }
        tx.commit().await.map_err(backend)?;
        Ok(staged.committed(&sequences).await)
    }

    /// Records an `#[handler(inbox)]` handler's key in `tx`, the application's transaction
    /// of its writes: `Ok(false)` when it is recorded already (the event was handled, or is
    /// being handled by a concurrent delivery that committed first: write nothing, return
    /// `Ok`). Once `tx` commits, a redelivery of the event skips the handler.
    ///
    /// # Errors
    /// When the insert fails.
    pub async fn record_inbox(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        key: &events::outbox::InboxKey,
    ) -> Result<bool, StoreError> {
        let added = tx
            .execute(
                &format!(
                    "INSERT INTO {}inbox (handler, source, id) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                    self.prefix
                ),
                &[&key.handler, &key.source, &key.id],
            )
            .await
            .map_err(backend)?;
        Ok(added == 1)
    }

    /// Runs `read` on the reader's connection; its result, without blocking the caller.
    fn read_async<T: Send + 'static>(
        &self,
        read: impl FnOnce(&mut Client) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let (tx, rx) = oneshot::channel();
        let sent = {
            let reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
            match &*reader {
                Some(reader) => reader
                    .send(Box::new(move |client: &mut Client| {
                        let _ = tx.send(read(client));
                    }))
                    .map_err(|_| StoreError::Closed),
                None => Err(StoreError::Closed),
            }
        };
        Box::pin(async move {
            sent?;
            rx.await.map_err(|_| StoreError::Closed)?
        })
    }

    /// Runs `read` on the reader's connection and waits for its result.
    fn read_with<T: Send + 'static>(
        &self,
        read: impl FnOnce(&mut Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = mpsc::channel();
        {
            let reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
            let Some(reader) = &*reader else {
                return Err(StoreError::Closed);
            };
            reader
                .send(Box::new(move |client: &mut Client| {
                    let _ = tx.send(read(client));
                }))
                .map_err(|_| StoreError::Closed)?;
        }
        rx.recv().map_err(|_| StoreError::Closed)?
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Closing the channels ends the threads once they have done what was sent.
        self.reader.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        for t in self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = t.join();
        }
    }
}

/// The configuration as errors show it: a password is not repeated.
fn redact(config: &str) -> String {
    if let Some((scheme, rest)) = config.split_once("://") {
        if let Some((userinfo, host)) = rest.split_once('@') {
            let user = userinfo.split(':').next().unwrap_or("");
            return format!("{scheme}://{user}@{host}");
        }
        return config.to_owned();
    }
    config
        .split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=***"
            } else {
                kv
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction().map_err(backend)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .map_err(backend)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS events_schema (version INTEGER NOT NULL)")
        .map_err(backend)?;
    let found: Option<i32> = tx
        .query_opt("SELECT version FROM events_schema", &[])
        .map_err(backend)?
        .map(|r| r.get(0));
    let found = i64::from(found.unwrap_or(0));
    let known = MIGRATIONS.len() as i64;
    if found > known {
        return Err(StoreError::TooNew {
            path: String::new(),
            found,
            known,
        });
    }
    for migration in &MIGRATIONS[found as usize..] {
        tx.batch_execute(migration).map_err(backend)?;
    }
    if found == 0 {
        tx.execute(
            "INSERT INTO events_schema (version) VALUES ($1)",
            &[&(known as i32)],
        )
        .map_err(backend)?;
    } else if found < known {
        tx.execute("UPDATE events_schema SET version = $1", &[&(known as i32)])
            .map_err(backend)?;
    }
    tx.commit().map_err(backend)
}

/// The text whose hash is the advisory lock of recovering `handler` for `event`.
fn recovery_key(handler: &str, event: &str) -> String {
    format!("events.recover\u{1f}{handler}\u{1f}{event}")
}

/// `time` (nanoseconds, unsigned) as a signed column value that sorts the same way.
fn time_key(nanos: u64) -> i64 {
    (nanos ^ (1 << 63)) as i64
}

fn time_of_key(key: i64) -> u64 {
    (key as u64) ^ (1 << 63)
}

fn sql_count(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

/// Who waits for a command's result, told once the transaction commits (or fails).
enum Waiter {
    Value(Reply<u64>),
    /// A stream append's caller, and its sequences (told if the transaction commits).
    Sequences(Reply<Vec<u64>>, Vec<u64>),
    Done(Reply<()>),
    Nobody,
}

impl Waiter {
    fn tell(self, result: Result<u64, StoreError>) {
        match self {
            Waiter::Value(tx) => drop(tx.send(result)),
            Waiter::Sequences(tx, sequences) => drop(tx.send(result.map(|_| sequences))),
            Waiter::Done(tx) => drop(tx.send(result.map(|_| ()))),
            Waiter::Nobody => {}
        }
    }
}

/// Statements prepared once on the writer's connection (planned once, not per append).
#[derive(Default)]
struct Prepared {
    append_stream: Option<postgres::Statement>,
    max: Option<postgres::Statement>,
}

impl Prepared {
    /// The last sequence's statement.
    fn max(&mut self, tx: &mut Client) -> Result<postgres::Statement, StoreError> {
        if let Some(s) = &self.max {
            return Ok(s.clone());
        }
        let max = tx
            .prepare("SELECT COALESCE(MAX(sequence), 0) FROM events")
            .map_err(backend)?;
        self.max = Some(max.clone());
        Ok(max)
    }

    fn append_stream(&mut self, tx: &mut Client) -> Result<postgres::Statement, StoreError> {
        if let Some(s) = &self.append_stream {
            return Ok(s.clone());
        }
        let mut types = vec![Type::TEXT, Type::INT8, Type::INT8, Type::UUID_ARRAY];
        types.extend(COLUMN_TYPES.into_iter().skip(1));
        types.extend([Type::INT8_ARRAY, Type::TEXT_ARRAY]);
        let statement = tx.prepare_typed(APPEND_STREAM, &types).map_err(backend)?;
        self.append_stream = Some(statement.clone());
        Ok(statement)
    }
}

fn write_loop(client: &mut Client, commands: &mpsc::Receiver<Command>) {
    let mut prepared = Prepared::default();
    while let Ok(first) = commands.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match commands.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let mut results = Vec::with_capacity(batch.len());
        let committed = commit(client, &mut prepared, batch, &mut results);
        if let Err(e) = &committed {
            tracing::error!(error = %e, "an event store commit failed; nothing of it was stored");
        }
        for (waiter, result) in results {
            match &committed {
                Ok(()) => waiter.tell(result),
                Err(e) => waiter.tell(Err(e.clone())),
            }
        }
    }
}

/// Applies `batch` in one transaction; every command's waiter lands in `results` with its
/// own result, which stands only if the transaction commits.
fn commit(
    client: &mut Client,
    prepared: &mut Prepared,
    batch: Vec<Command>,
    results: &mut Vec<(Waiter, Result<u64, StoreError>)>,
) -> Result<(), StoreError> {
    // A batch with appends takes the append lock with its `BEGIN`, in one round trip:
    // held until the commit, it orders every process's appends.
    let appends = batch
        .iter()
        .any(|c| matches!(c, Command::Append(..) | Command::AppendStream(..)));
    let commands = batch.into_iter();
    let begin = match appends {
        true => format!("BEGIN; SELECT pg_advisory_xact_lock({APPEND_LOCK})"),
        false => "BEGIN".to_owned(),
    };
    if let Err(e) = client.batch_execute(&begin) {
        results.extend(commands.map(|c| (waiter_of(c), Ok(0))));
        return Err(backend(e));
    }
    let done = write(client, prepared, commands, results);
    match done {
        Ok(()) => client.batch_execute("COMMIT").map_err(backend),
        Err(e) => {
            // Nothing of the batch stays; a broken connection fails the next batch too.
            let _ = client.batch_execute("ROLLBACK");
            Err(e)
        }
    }
}

/// The commands of a batch, in the open transaction (the append lock held if it has
/// appends); the first error fails them all.
fn write(
    client: &mut Client,
    prepared: &mut Prepared,
    commands: std::vec::IntoIter<Command>,
    results: &mut Vec<(Waiter, Result<u64, StoreError>)>,
) -> Result<(), StoreError> {
    let tx = client;
    let mut last = None;
    let mut commands = commands.peekable();
    while let Some(command) = commands.next() {
        // A run of appends is written with three statements, whatever its length.
        if let Command::Append(event, partition, reply) = command {
            let mut run = vec![(event, partition, reply)];
            while let Some(Command::Append(..)) = commands.peek() {
                if let Some(Command::Append(event, partition, reply)) = commands.next() {
                    run.push((event, partition, reply));
                }
            }
            let events: Vec<&StoredEvent> = run.iter().map(|(e, _, _)| &**e).collect();
            let appended = append_many(tx, prepared, &events, &mut last).and_then(|answers| {
                let entries = run.iter().zip(&answers).filter_map(|((_, p, _), a)| {
                    Some((*a.as_ref().ok()? as i64, p.as_deref()?.to_owned()))
                });
                add_outbox_entries(tx, entries.unzip())?;
                Ok(answers)
            });
            match appended {
                Ok(answers) => results.extend(
                    run.into_iter()
                        .zip(answers)
                        .map(|((_, _, reply), answer)| (Waiter::Value(reply), answer)),
                ),
                Err(e) => {
                    results.extend(
                        run.into_iter()
                            .map(|(_, _, reply)| (Waiter::Value(reply), Ok(0))),
                    );
                    results.extend(commands.map(|c| (waiter_of(c), Ok(0))));
                    return Err(e);
                }
            }
            continue;
        }
        let (waiter, applied) = apply(tx, prepared, command, &mut last);
        match applied {
            Ok(result) => results.push((waiter, result)),
            Err(e) => {
                results.push((waiter, Ok(0)));
                results.extend(commands.map(|c| (waiter_of(c), Ok(0))));
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Appends `events` in order: the append lock and the last sequence (once per
/// transaction), one query for the ids already stored, one multi-row insert (`UNNEST` of one
/// array per column). Each event's answer is its sequence, or `Duplicate` with the stored
/// sequence (of an earlier transaction, or of an earlier event of this run); sequences stay
/// without gaps.
fn append_many(
    tx: &mut Client,
    prepared: &mut Prepared,
    events: &[&StoredEvent],
    last: &mut Option<i64>,
) -> Result<Vec<Result<u64, StoreError>>, StoreError> {
    let mut previous = lock_appends(tx, prepared, last)?;

    let ids: Vec<uuid::Uuid> = events.iter().map(|e| uuid::Uuid::from(e.id)).collect();
    let mut known: std::collections::HashMap<uuid::Uuid, i64> = tx
        .query_typed(
            "SELECT id, sequence FROM events WHERE id = ANY($1)",
            &[(&ids, Type::UUID_ARRAY)],
        )
        .map_err(backend)?
        .iter()
        .map(|r| (r.get::<_, uuid::Uuid>(0), r.get::<_, i64>(1)))
        .collect();
    let mut answers = Vec::with_capacity(events.len());
    let mut rows = Columns::default();
    for (event, id) in events.iter().zip(ids) {
        if let Some(&sequence) = known.get(&id) {
            answers.push(Err(StoreError::Duplicate {
                id: event.id,
                sequence: sequence as u64,
            }));
            continue;
        }
        previous += 1;
        known.insert(id, previous);
        rows.push(previous, id, event)?;
        rows.stream.push(None);
        rows.stream_version.push(None);
        answers.push(Ok(previous as u64));
    }
    *last = Some(previous);
    if !rows.sequence.is_empty() {
        rows.insert(tx)?;
    }
    Ok(answers)
}

/// The append lock (held until commit: appends from every process commit in sequence
/// order) and the last sequence, once per transaction.
fn lock_appends(
    tx: &mut Client,
    prepared: &mut Prepared,
    last: &mut Option<i64>,
) -> Result<i64, StoreError> {
    if let Some(n) = *last {
        return Ok(n);
    }
    // The lock came with the batch's `BEGIN`; a statement of its own after it, so its
    // snapshot sees every commit made before the lock was granted.
    let max = prepared.max(tx)?;
    let n: i64 = tx.query_one(&max, &[]).map_err(backend)?.get(0);
    *last = Some(n);
    Ok(n)
}

/// Outbox entries (sequences and partitions) for events of this transaction, and a lease
/// row (free) for each partition that has none yet.
fn add_outbox_entries(
    tx: &mut Client,
    (sequences, partitions): (Vec<i64>, Vec<String>),
) -> Result<(), StoreError> {
    if sequences.is_empty() {
        return Ok(());
    }
    let [entries, leases] = outbox_statements("");
    tx.execute(&entries, &[&sequences, &partitions])
        .map_err(backend)?;
    tx.execute(&leases, &[&partitions]).map_err(backend)?;
    Ok(())
}

/// The multi-row insert of [`Columns`] into `<prefix>events`.
fn insert_events(prefix: &str) -> String {
    format!(
        "INSERT INTO {prefix}events (sequence, id, name, version, kind, time, source, target,
                                 correlation_id, causation_id, depth, priority, metadata, payload,
                                 stream, stream_version)
         SELECT * FROM UNNEST($1::int8[], $2::uuid[], $3::text[], $4::int4[], $5::text[],
                              $6::int8[], $7::text[], $8::text[], $9::uuid[], $10::uuid[],
                              $11::int4[], $12::int4[], $13::text[], $14::text[], $15::text[],
                              $16::int8[])"
    )
}

/// The statements that add outbox entries and free leases, for `<prefix>` tables.
fn outbox_statements(prefix: &str) -> [String; 2] {
    [
        format!(
            "INSERT INTO {prefix}outbox (sequence, partition)
             SELECT * FROM UNNEST($1::int8[], $2::text[])"
        ),
        format!(
            "INSERT INTO {prefix}outbox_leases (partition, owner, until)
             SELECT DISTINCT p, '', '-infinity'::timestamptz FROM UNNEST($1::text[]) AS p
             ON CONFLICT (partition) DO NOTHING"
        ),
    ]
}

/// The types of [`Columns::params`], in order.
const COLUMN_TYPES: [Type; 16] = [
    Type::INT8_ARRAY,
    Type::UUID_ARRAY,
    Type::TEXT_ARRAY,
    Type::INT4_ARRAY,
    Type::TEXT_ARRAY,
    Type::INT8_ARRAY,
    Type::TEXT_ARRAY,
    Type::TEXT_ARRAY,
    Type::UUID_ARRAY,
    Type::UUID_ARRAY,
    Type::INT4_ARRAY,
    Type::INT4_ARRAY,
    Type::TEXT_ARRAY,
    Type::TEXT_ARRAY,
    Type::TEXT_ARRAY,
    Type::INT8_ARRAY,
];

/// Rows to insert, one array per column.
#[derive(Default)]
struct Columns {
    sequence: Vec<i64>,
    id: Vec<uuid::Uuid>,
    name: Vec<String>,
    version: Vec<i32>,
    kind: Vec<String>,
    time: Vec<i64>,
    source: Vec<String>,
    target: Vec<Option<String>>,
    correlation_id: Vec<uuid::Uuid>,
    causation_id: Vec<Option<uuid::Uuid>>,
    depth: Vec<i32>,
    priority: Vec<i32>,
    metadata: Vec<String>,
    payload: Vec<String>,
    stream: Vec<Option<String>>,
    stream_version: Vec<Option<i64>>,
}

impl Columns {
    fn push(&mut self, sequence: i64, id: uuid::Uuid, e: &StoredEvent) -> Result<(), StoreError> {
        self.metadata
            .push(serde_json::to_string(&e.metadata).map_err(backend)?);
        self.sequence.push(sequence);
        self.id.push(id);
        self.name.push(e.name.clone());
        self.version.push(e.version as i32);
        self.kind.push(e.kind.clone());
        self.time.push(time_key(e.time));
        self.source.push(e.source.clone());
        self.target.push(e.target.clone());
        self.correlation_id.push(uuid::Uuid::from(e.correlation_id));
        self.causation_id.push(e.causation_id.map(uuid::Uuid::from));
        self.depth.push(e.depth as i32);
        self.priority.push(e.priority);
        self.payload.push(e.payload.clone());
        Ok(())
    }

    fn insert(&self, tx: &mut Client) -> Result<(), StoreError> {
        // Typed: one round trip, no statement to prepare first.
        let params: Vec<(&(dyn ToSql + Sync), Type)> =
            self.params().into_iter().zip(COLUMN_TYPES).collect();
        tx.query_typed(&insert_events(""), &params)
            .map_err(backend)?;
        Ok(())
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 16] {
        [
            &self.sequence,
            &self.id,
            &self.name,
            &self.version,
            &self.kind,
            &self.time,
            &self.source,
            &self.target,
            &self.correlation_id,
            &self.causation_id,
            &self.depth,
            &self.priority,
            &self.metadata,
            &self.payload,
            &self.stream,
            &self.stream_version,
        ]
    }
}

fn waiter_of(command: Command) -> Waiter {
    match command {
        Command::Append(_, _, reply) | Command::Checkpoint(_, _, reply) => Waiter::Value(reply),
        Command::Flush(reply)
        | Command::Forwarded(_, reply)
        | Command::PutSnapshot(_, reply)
        | Command::Reset(_, _, reply) => Waiter::Done(reply),
        Command::AppendStream(_, reply) => Waiter::Sequences(reply, Vec::new()),
        _ => Waiter::Nobody,
    }
}

/// One command in the open transaction: the outer `Err` fails the whole transaction, the
/// inner one is the command's own answer (a duplicate id). `last` is the highest sequence,
/// read once the append lock is held.
fn apply(
    tx: &mut Client,
    prepared: &mut Prepared,
    command: Command,
    last: &mut Option<i64>,
) -> (Waiter, Result<Result<u64, StoreError>, StoreError>) {
    match command {
        // Runs of appends are `commit`'s; one alone is a run of one.
        Command::Append(event, partition, reply) => (
            Waiter::Value(reply),
            append_many(tx, prepared, &[&event], last).and_then(|mut answers| {
                let answer = answers.remove(0);
                if let (Ok(sequence), Some(p)) = (&answer, partition) {
                    add_outbox_entries(tx, (vec![*sequence as i64], vec![p.into()]))?;
                }
                Ok(answer)
            }),
        ),
        Command::Forwarded(sequences, reply) => (
            Waiter::Done(reply),
            tx.execute("DELETE FROM outbox WHERE sequence = ANY($1)", &[&sequences])
                .map(|_| Ok(0))
                .map_err(backend),
        ),
        Command::Delivered(handler, sequence) => (
            Waiter::Nobody,
            tx.execute(
                "INSERT INTO deliveries (handler, sequence) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
                &[&handler, &sql_count(sequence)],
            )
            .map(|_| Ok(0))
            .map_err(backend),
        ),
        Command::Checkpoint(handler, event, reply) => (
            Waiter::Value(reply),
            checkpoint(tx, &handler, &event).map(Ok),
        ),
        Command::PutDeadLetter(letter) => (Waiter::Nobody, put_dead_letter(tx, &letter).map(Ok)),
        Command::RemoveDeadLetter(id) => (
            Waiter::Nobody,
            tx.execute("DELETE FROM dead_letters WHERE id = $1", &[&sql_count(id)])
                .map(|_| Ok(0))
                .map_err(backend),
        ),
        Command::Flush(reply) => (Waiter::Done(reply), Ok(Ok(0))),
        Command::AppendStream(append, reply) => match append_stream(tx, prepared, &append, last) {
            Ok(Ok(sequences)) => (Waiter::Sequences(reply, sequences), Ok(Ok(0))),
            Ok(Err(e)) => (Waiter::Sequences(reply, Vec::new()), Ok(Err(e))),
            Err(e) => (Waiter::Sequences(reply, Vec::new()), Err(e)),
        },
        Command::Reset(handler, event, reply) => (
            Waiter::Done(reply),
            tx.execute(
                "DELETE FROM checkpoints WHERE handler = $1 AND event = $2",
                &[&handler, &event],
            )
            .and_then(|_| {
                tx.execute(
                    "DELETE FROM deliveries WHERE handler = $1
                       AND sequence IN (SELECT sequence FROM events WHERE name = $2)",
                    &[&handler, &event],
                )
            })
            .map(|_| Ok(0))
            .map_err(backend),
        ),
        Command::PutSnapshot(snapshot, reply) => (
            Waiter::Done(reply),
            tx.execute(
                "INSERT INTO snapshots (stream, version, shape, state) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (stream) DO UPDATE SET version = excluded.version,
                    shape = excluded.shape, state = excluded.state
                 WHERE excluded.version >= snapshots.version",
                &[
                    &snapshot.stream,
                    &sql_count(snapshot.version),
                    &snapshot.shape,
                    &snapshot.state,
                ],
            )
            .map(|_| Ok(0))
            .map_err(backend),
        ),
    }
}

/// A stream append in the open transaction: the append lock (once per transaction), then
/// one statement that reads the ids already stored, the stream's version and the last
/// sequence (its snapshot is taken with the lock held), and only when the version is the
/// expected one and no id is stored, writes the new version, the events (numbered after
/// the last sequence) and their outbox entries. The inner `Err` (a conflict, a duplicate
/// id) is the append's own, and nothing of it was written.
fn append_stream(
    tx: &mut Client,
    prepared: &mut Prepared,
    append: &StreamAppend,
    last: &mut Option<i64>,
) -> Result<Result<Vec<u64>, StoreError>, StoreError> {
    // The append lock came with the batch's `BEGIN`.
    let mut rows = Columns::default();
    let mut ids = Vec::with_capacity(append.events.len());
    let (mut entries, mut partitions) = (Vec::new(), Vec::new());
    for (i, (event, partition)) in append.events.iter().enumerate() {
        let id = uuid::Uuid::from(event.id);
        ids.push(id);
        // The sequence is the statement's: the last one plus the position.
        rows.push(0, id, event)?;
        rows.stream.push(Some(append.stream.clone()));
        rows.stream_version
            .push(Some(sql_count(append.expected + 1 + i as u64)));
        if let Some(p) = partition {
            entries.push(i as i64 + 1);
            partitions.push(p.clone());
        }
    }
    let new_version = sql_count(append.expected + append.events.len() as u64);
    let expected = sql_count(append.expected);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&append.stream, &expected, &new_version, &ids];
    params.extend(rows.params().into_iter().skip(1));
    params.push(&entries);
    params.push(&partitions);
    let statement = prepared.append_stream(tx)?;
    let r = tx.query_one(&statement, &params).map_err(backend)?;
    let actual: i64 = r.get(0);
    let bumped: i64 = r.get(1);
    let dup_ids: Vec<uuid::Uuid> = r.get(2);
    let dup_sequences: Vec<i64> = r.get(3);
    let base: i64 = r.get(4);
    *last = Some(base);
    if let (Some(id), Some(sequence)) = (dup_ids.first(), dup_sequences.first()) {
        return Ok(Err(StoreError::Duplicate {
            id: EventId::from(*id),
            sequence: *sequence as u64,
        }));
    }
    if bumped == 0 {
        return Ok(Err(StoreError::Conflict {
            stream: append.stream.clone(),
            expected: append.expected,
            actual: actual as u64,
        }));
    }
    *last = Some(base + append.events.len() as i64);
    Ok(Ok((1..=append.events.len() as i64)
        .map(|i| (base + i) as u64)
        .collect()))
}

/// [`append_stream`]'s statement: `$1` stream, `$2` expected version, `$3` new version, `$4`
/// the events' ids, `$5`..`$19` the events' columns after the sequence ([`Columns::params`]),
/// `$20`/`$21` the outbox entries' positions (1-based) and partitions. It returns the
/// stream's version, whether it was bumped, the ids already stored with their sequences,
/// and the last sequence before the append.
const APPEND_STREAM: &str = "
WITH dup AS (
    SELECT id, sequence FROM events WHERE id = ANY($4::uuid[])
), current AS (
    SELECT COALESCE((SELECT version FROM streams WHERE stream = $1), 0) AS version
), base AS (
    SELECT COALESCE(MAX(sequence), 0) AS n FROM events
), ok AS (
    SELECT 1 FROM current WHERE current.version = $2 AND NOT EXISTS (SELECT 1 FROM dup)
), bump AS (
    INSERT INTO streams (stream, version) SELECT $1, $3 FROM ok
    ON CONFLICT (stream) DO UPDATE SET version = excluded.version
    RETURNING 1
), added AS (
    INSERT INTO events (sequence, id, name, version, kind, time, source, target, correlation_id,
                        causation_id, depth, priority, metadata, payload, stream, stream_version)
    SELECT (SELECT n FROM base) + u.ord, u.id, u.name, u.version, u.kind, u.time, u.source,
           u.target, u.correlation_id, u.causation_id, u.depth, u.priority, u.metadata,
           u.payload, u.stream, u.stream_version
      FROM UNNEST($5::uuid[], $6::text[], $7::int4[], $8::text[], $9::int8[], $10::text[],
                  $11::text[], $12::uuid[], $13::uuid[], $14::int4[], $15::int4[], $16::text[],
                  $17::text[], $18::text[], $19::int8[])
           WITH ORDINALITY AS u(id, name, version, kind, time, source, target, correlation_id,
                                causation_id, depth, priority, metadata, payload, stream,
                                stream_version, ord)
     WHERE EXISTS (SELECT 1 FROM ok)
    RETURNING 1
), entries AS (
    INSERT INTO outbox (sequence, partition)
    SELECT (SELECT n FROM base) + o.position, o.partition
      FROM UNNEST($20::int8[], $21::text[]) AS o(position, partition)
     WHERE EXISTS (SELECT 1 FROM ok)
    RETURNING 1
), leases AS (
    INSERT INTO outbox_leases (partition, owner, until)
    SELECT DISTINCT p, '', '-infinity'::timestamptz FROM UNNEST($21::text[]) AS p
    WHERE EXISTS (SELECT 1 FROM ok)
    ON CONFLICT (partition) DO NOTHING
    RETURNING 1
)
SELECT (SELECT version FROM current), (SELECT count(*) FROM bump),
       ARRAY(SELECT id FROM dup), ARRAY(SELECT sequence FROM dup), (SELECT n FROM base)";

/// What loading an aggregate reads, in one statement (one snapshot of the database, one
/// round trip): the snapshot's row first (`part` 0), then the events after it (`part` 1).
const LOAD_STREAM: &str = "
WITH snap AS (SELECT version, state FROM snapshots WHERE stream = $1 AND shape = $2)
SELECT 0 AS part, version AS v, NULL::text AS name, NULL::int4 AS ver, state AS body FROM snap
UNION ALL
SELECT 1, e.sequence, e.name, e.version, e.payload FROM events e
 WHERE e.stream = $1 AND e.stream_version > COALESCE((SELECT version FROM snap), 0)
ORDER BY part, v";

thread_local! {
    /// Statements prepared on the reader thread's connection: the thread holds that one
    /// connection for its whole life, so they stay valid.
    static READER_STATEMENTS: std::cell::RefCell<std::collections::HashMap<&'static str, postgres::Statement>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// `sql` prepared (once) on the reader's connection.
fn reader_statement(
    client: &mut Client,
    sql: &'static str,
    types: &[Type],
) -> Result<postgres::Statement, StoreError> {
    if let Some(s) = READER_STATEMENTS.with(|m| m.borrow().get(sql).cloned()) {
        return Ok(s);
    }
    let statement = client.prepare_typed(sql, types).map_err(backend)?;
    READER_STATEMENTS.with(|m| m.borrow_mut().insert(sql, statement.clone()));
    Ok(statement)
}

fn put_dead_letter(tx: &mut Client, letter: &StoredDeadLetter) -> Result<u64, StoreError> {
    let json = serde_json::to_string(letter).map_err(backend)?;
    let id = sql_count(letter.id);
    tx.execute(
        "INSERT INTO dead_letters (id, letter) VALUES ($1, $2)
         ON CONFLICT (id) DO UPDATE SET letter = excluded.letter",
        &[&id, &json],
    )
    .map_err(backend)?;
    tx.execute(
        "INSERT INTO store_counters (key, value) VALUES ('last_dead_letter_id', $1)
         ON CONFLICT (key) DO UPDATE SET value = GREATEST(store_counters.value, excluded.value)",
        &[&id],
    )
    .map_err(backend)?;
    Ok(0)
}

fn checkpoint(tx: &mut Client, handler: &str, event: &str) -> Result<u64, StoreError> {
    let old: i64 = tx
        .query_opt(
            "SELECT sequence FROM checkpoints WHERE handler = $1 AND event = $2",
            &[&handler, &event],
        )
        .map_err(backend)?
        .map_or(0, |r| r.get(0));
    let first_missing: Option<i64> = tx
        .query_one(
            "SELECT MIN(e.sequence) FROM events e
             WHERE e.name = $2 AND e.sequence > $3
               AND NOT EXISTS (SELECT 1 FROM deliveries d
                               WHERE d.handler = $1 AND d.sequence = e.sequence)",
            &[&handler, &event, &old],
        )
        .map_err(backend)?
        .get(0);
    let last: i64 = tx
        .query_one("SELECT COALESCE(MAX(sequence), 0) FROM events", &[])
        .map_err(backend)?
        .get(0);
    let new = first_missing.map_or(last, |s| s - 1).max(old);
    tx.execute(
        "INSERT INTO checkpoints (handler, event, sequence) VALUES ($1, $2, $3)
         ON CONFLICT (handler, event) DO UPDATE SET sequence = excluded.sequence",
        &[&handler, &event, &new],
    )
    .map_err(backend)?;
    tx.execute(
        "DELETE FROM deliveries WHERE handler = $1 AND sequence <= $2",
        &[&handler, &new],
    )
    .map_err(backend)?;
    Ok(new as u64)
}

const COLUMNS: &str = "sequence, id, name, version, kind, time, source, target, correlation_id, \
                       causation_id, depth, priority, metadata, payload";

/// One row as a stored event, or `Corrupt` naming its sequence.
fn row(r: &postgres::Row) -> Row {
    let sequence: i64 = r.try_get(0).map_err(backend)?;
    let corrupt = |reason: String| StoreError::Corrupt {
        sequence: sequence as u64,
        reason,
    };
    let read = || -> Result<StoredEvent, String> {
        let id: uuid::Uuid = r.try_get(1).map_err(|e| e.to_string())?;
        let name: String = r.try_get(2).map_err(|e| e.to_string())?;
        let mut e = StoredEvent::new(EventId::from(id), name);
        e.sequence = sequence as u64;
        e.version = r.try_get::<_, i32>(3).map_err(|e| e.to_string())? as u32;
        e.kind = r.try_get(4).map_err(|e| e.to_string())?;
        e.time = time_of_key(r.try_get(5).map_err(|e| e.to_string())?);
        e.source = r.try_get(6).map_err(|e| e.to_string())?;
        e.target = r.try_get(7).map_err(|e| e.to_string())?;
        e.correlation_id = EventId::from(r.try_get::<_, uuid::Uuid>(8).map_err(|e| e.to_string())?);
        e.causation_id = r
            .try_get::<_, Option<uuid::Uuid>>(9)
            .map_err(|e| e.to_string())?
            .map(EventId::from);
        e.depth = r.try_get::<_, i32>(10).map_err(|e| e.to_string())? as u32;
        e.priority = r.try_get(11).map_err(|e| e.to_string())?;
        let metadata: String = r.try_get(12).map_err(|e| e.to_string())?;
        e.metadata = serde_json::from_str(&metadata).map_err(|e| format!("metadata: {e}"))?;
        e.payload = r.try_get(13).map_err(|e| e.to_string())?;
        Ok(e)
    };
    read().map_err(corrupt)
}

/// The `WHERE` clause of `query`, its parameters, and the name pattern to match in Rust
/// (narrowed in SQL by its literal prefix).
fn where_clause(query: &StoreQuery) -> (String, Vec<Box<dyn ToSql + Sync + Send>>, Option<String>) {
    let q = query.parts();
    let mut sql = String::from(" WHERE TRUE");
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut arg = |sql: &mut String, clause: &str, v: Box<dyn ToSql + Sync + Send>| {
        params.push(v);
        sql.push_str(&clause.replace('?', &format!("${}", params.len())));
    };
    if let Some(id) = q.id {
        arg(&mut sql, " AND id = ?", Box::new(uuid::Uuid::from(id)));
    }
    let mut pattern = None;
    if let Some(name) = q.name {
        if name.split('.').any(|s| s == "*" || s == ">") {
            let prefix: String = name
                .split('.')
                .take_while(|s| *s != "*" && *s != ">")
                .map(|s| format!("{s}."))
                .collect();
            if !prefix.is_empty() {
                let like = prefix
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                arg(&mut sql, " AND name LIKE ?", Box::new(format!("{like}%")));
            }
            pattern = Some(name.to_owned());
        } else {
            arg(&mut sql, " AND name = ?", Box::new(name.to_owned()));
        }
    }
    if let Some(kind) = q.kind {
        arg(
            &mut sql,
            " AND kind = ?",
            Box::new(kind.as_str().to_owned()),
        );
    }
    if let Some(s) = q.source {
        arg(&mut sql, " AND source = ?", Box::new(s.to_owned()));
    }
    if let Some(t) = q.target {
        arg(&mut sql, " AND target = ?", Box::new(t.to_owned()));
    }
    if let Some(c) = q.correlation_id {
        arg(
            &mut sql,
            " AND correlation_id = ?",
            Box::new(uuid::Uuid::from(c)),
        );
    }
    if let Some(t) = q.since {
        arg(&mut sql, " AND time >= ?", Box::new(time_key(t)));
    }
    if let Some(t) = q.until {
        arg(&mut sql, " AND time < ?", Box::new(time_key(t)));
    }
    if let Some(s) = q.from_sequence {
        arg(&mut sql, " AND sequence >= ?", Box::new(sql_count(s)));
    }
    if let Some(s) = q.to_sequence {
        arg(&mut sql, " AND sequence <= ?", Box::new(sql_count(s)));
    }
    (sql, params, pattern)
}

fn params_of(params: &[Box<dyn ToSql + Sync + Send>]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect()
}

impl EventStore for PostgresStore {
    fn append(&self, event: StoredEvent) -> StoreFuture<'_, u64> {
        self.ask(|reply| Command::Append(Box::new(event), None, reply))
    }

    fn record_delivery(&self, handler: &str, sequence: u64) {
        // A record lost with a stopped writer costs one more delivery after recovery.
        let _ = self.send(Command::Delivered(handler.to_owned(), sequence));
    }

    fn read(&self, query: &StoreQuery) -> Result<Vec<Row>, StoreError> {
        let (clause, params, pattern) = where_clause(query);
        let parts = query.parts();
        let mut sql = format!("SELECT {COLUMNS} FROM events{clause}");
        sql.push_str(match parts.order {
            Order::NewestFirst => " ORDER BY sequence DESC",
            _ => " ORDER BY sequence ASC",
        });
        let limit = parts.limit;
        if let (Some(limit), None) = (limit, &pattern) {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        self.read_with(move |client| {
            // Streamed, and left at the limit: a name pattern filters in Rust, so a page of a
            // pattern query must not load every row its prefix selects.
            let mut rows = client
                .query_raw(&sql, params_of(&params))
                .map_err(backend)?;
            let mut out = Vec::new();
            while let Some(r) =
                postgres::fallible_iterator::FallibleIterator::next(&mut rows).map_err(backend)?
            {
                let row = row(&r);
                if let (Some(p), Ok(event)) = (&pattern, &row) {
                    if !events::store::pattern_matches(p, &event.name) {
                        continue;
                    }
                }
                if limit.is_some_and(|l| out.len() >= l) {
                    break;
                }
                out.push(row);
            }
            Ok(out)
        })
    }

    fn undelivered(
        &self,
        handler: &str,
        event: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let (handler, event) = (handler.to_owned(), event.to_owned());
        let recovering = std::sync::Arc::clone(&self.recovering);
        self.read_with(move |client| {
            // One process at a time recovers a durable handler: the first to ask takes a
            // session lock, given back by `checkpoint` (the end of `recover`) or when the
            // process's connection closes (a crash).
            let key = (handler.clone(), event.clone());
            let held = recovering
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&key);
            if !held {
                let taken: bool = client
                    .query_one(
                        "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                        &[&recovery_key(&handler, &event)],
                    )
                    .map_err(backend)?
                    .get(0);
                if !taken {
                    tracing::info!(
                        handler,
                        event,
                        "another process is recovering this durable handler; skipped here"
                    );
                    return Ok(Vec::new());
                }
                recovering
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key);
            }
            let rows = client
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM events e
                         WHERE e.name = $2
                           AND e.sequence > GREATEST($3, COALESCE(
                               (SELECT sequence FROM checkpoints
                                WHERE handler = $1 AND event = $2), 0))
                           AND NOT EXISTS (SELECT 1 FROM deliveries d
                                           WHERE d.handler = $1 AND d.sequence = e.sequence)
                         ORDER BY e.sequence ASC
                         LIMIT $4"
                    ),
                    &[
                        &handler,
                        &event,
                        &sql_count(after),
                        &sql_count(limit as u64),
                    ],
                )
                .map_err(backend)?;
            Ok(rows.iter().map(row).collect())
        })
    }

    fn checkpoint<'a>(&'a self, handler: &'a str, event: &'a str) -> StoreFuture<'a, u64> {
        let checkpoint =
            self.ask(|reply| Command::Checkpoint(handler.to_owned(), event.to_owned(), reply));
        Box::pin(async move {
            let result = checkpoint.await;
            // Recovery of this handler is over here: give its lock back.
            let key = (handler.to_owned(), event.to_owned());
            let held = self
                .recovering
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            if held {
                let lock = recovery_key(handler, event);
                self.read_with(move |client| {
                    client
                        .execute(
                            "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
                            &[&lock],
                        )
                        .map(|_| ())
                        .map_err(backend)
                })?;
            }
            result
        })
    }

    fn put_dead_letter(&self, letter: StoredDeadLetter) {
        if self.send(Command::PutDeadLetter(Box::new(letter))).is_err() {
            tracing::error!("the event store's writer has stopped: a dead letter was not stored");
        }
    }

    fn remove_dead_letter(&self, id: u64) {
        let _ = self.send(Command::RemoveDeadLetter(id));
    }

    fn dead_letters(&self, limit: usize) -> Result<Vec<StoredDeadLetter>, StoreError> {
        self.read_with(move |client| {
            let rows = client
                .query(
                    "SELECT id, letter FROM
                       (SELECT id, letter FROM dead_letters ORDER BY id DESC LIMIT $1) d
                     ORDER BY id",
                    &[&sql_count(limit as u64)],
                )
                .map_err(backend)?;
            let mut letters = Vec::new();
            for r in &rows {
                let id: i64 = r.get(0);
                match serde_json::from_str::<StoredDeadLetter>(r.get(1)) {
                    Ok(letter) => letters.push(letter),
                    Err(e) => tracing::error!(id, error = %e, "a stored dead letter is unreadable"),
                }
            }
            Ok(letters)
        })
    }

    fn last_dead_letter_id(&self) -> Result<u64, StoreError> {
        self.read_with(|client| {
            Ok(client
                .query_opt(
                    "SELECT value FROM store_counters WHERE key = 'last_dead_letter_id'",
                    &[],
                )
                .map_err(backend)?
                .map_or(0, |r| r.get::<_, i64>(0) as u64))
        })
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        self.ask(Command::Flush)
    }

    fn outbox(&self) -> Option<&dyn Outbox> {
        Some(self)
    }

    fn keys(&self) -> Option<&dyn events::store::KeyStore> {
        Some(self)
    }

    fn purge(&self, purge: events::store::Purge) -> StoreFuture<'_, u64> {
        let result = self.read_with(move |client| {
            let below = i64::try_from(purge.below).unwrap_or(i64::MAX);
            let before = time_key(purge.before);
            let keep = i64::try_from(purge.keep).unwrap_or(i64::MAX);
            let mut left = purge.limit;
            let mut deleted = 0u64;
            for name in &purge.names {
                if left == 0 {
                    break;
                }
                // Never a stream's event, never the newest of the log, never the newest
                // `keep` of the name (only what is older than the keep-th newest); the
                // oldest `left` of the rest, with their records.
                let row = client
                    .query_one(
                        "WITH kept AS (
                           SELECT CASE WHEN $4::bigint = 0 THEN 9223372036854775807
                                  ELSE COALESCE((SELECT sequence FROM events WHERE name = $1
                                                 ORDER BY sequence DESC LIMIT 1 OFFSET $4::bigint - 1), 0)
                                  END AS below
                         ), gone AS (
                           DELETE FROM events WHERE sequence IN (
                             SELECT sequence FROM events
                             WHERE name = $1 AND stream IS NULL AND sequence < $2 AND time < $3
                               AND sequence < (SELECT MAX(sequence) FROM events)
                               AND sequence < (SELECT below FROM kept)
                             ORDER BY sequence LIMIT $5)
                           RETURNING sequence
                         ), handlers AS (
                           -- The handlers with records, by skipping through the primary
                           -- key, so that the records go by it, not by a scan of them all.
                           WITH RECURSIVE h(handler) AS (
                             SELECT MIN(handler) FROM deliveries
                             UNION ALL
                             SELECT (SELECT MIN(d.handler) FROM deliveries d
                                     WHERE d.handler > h.handler)
                             FROM h WHERE h.handler IS NOT NULL
                           )
                           SELECT handler FROM h WHERE handler IS NOT NULL
                         ), records AS (
                           DELETE FROM deliveries d USING handlers, gone
                           WHERE d.handler = handlers.handler AND d.sequence = gone.sequence
                         )
                         SELECT COUNT(*) FROM gone",
                        &[
                            name,
                            &below,
                            &before,
                            &keep,
                            &i64::try_from(left).unwrap_or(i64::MAX),
                        ],
                    )
                    .map_err(backend)?;
                let n = row.get::<_, i64>(0) as u64;
                deleted += n;
                left -= n.min(left);
            }
            Ok(deleted)
        });
        Box::pin(std::future::ready(result))
    }
    fn inbox(&self) -> Option<&dyn events::store::Inbox> {
        Some(self)
    }

    fn streams(&self) -> Option<&dyn Streams> {
        Some(self)
    }

    fn reset<'a>(&'a self, handler: &'a str, event: &'a str) -> StoreFuture<'a, ()> {
        self.ask(|reply| Command::Reset(handler.into(), event.into(), reply))
    }

    fn lag(&self, handler: &str, event: &str) -> Result<(u64, Option<u64>), StoreError> {
        let (handler, event) = (handler.to_owned(), event.to_owned());
        self.read_with(move |client| {
            let r = client
                .query_one(
                    "SELECT COUNT(*), MIN(e.time) FROM events e
                     WHERE e.name = $2
                       AND e.sequence > COALESCE((SELECT sequence FROM checkpoints
                                                  WHERE handler = $1 AND event = $2), 0)
                       AND NOT EXISTS (SELECT 1 FROM deliveries d
                                       WHERE d.handler = $1 AND d.sequence = e.sequence)",
                    &[&handler, &event],
                )
                .map_err(backend)?;
            Ok((
                r.get::<_, i64>(0) as u64,
                r.get::<_, Option<i64>>(1).map(time_of_key),
            ))
        })
    }
}

/// Streams in the database: appends go through the group commit, each in a savepoint, its
/// version checked under the append lock that every process's appends take, so exactly
/// one of two writers at one version wins across processes.
impl Streams for PostgresStore {
    fn append_to_stream(&self, append: StreamAppend) -> StoreFuture<'_, Vec<u64>> {
        self.ask(|reply| Command::AppendStream(Box::new(append), reply))
    }

    fn read_stream(&self, stream: &str, after: u64) -> Result<Vec<Row>, StoreError> {
        let stream = stream.to_owned();
        self.read_with(move |client| {
            let rows = client
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM events WHERE stream = $1 AND stream_version > $2
                         ORDER BY stream_version"
                    ),
                    &[&stream, &sql_count(after)],
                )
                .map_err(backend)?;
            Ok(rows.iter().map(row).collect())
        })
    }

    fn load(&self, stream: &str, shape: &str) -> Result<StreamLoad, StoreError> {
        let (stream, shape) = (stream.to_owned(), shape.to_owned());
        self.read_with(move |client| {
            // One statement (one snapshot of the database, one round trip): the snapshot's
            // row first, then the events after it.
            let statement = reader_statement(client, LOAD_STREAM, &[Type::TEXT, Type::TEXT])?;
            let rows = client
                .query(&statement, &[&stream, &shape])
                .map_err(backend)?;
            let mut snapshot = None;
            let mut events = Vec::with_capacity(rows.len());
            for r in &rows {
                let v: i64 = r.try_get(1).map_err(backend)?;
                if r.try_get::<_, i32>(0).map_err(backend)? == 0 {
                    let state: String = r.try_get(4).map_err(backend)?;
                    snapshot = Some(Snapshot::new(
                        stream.clone(),
                        v as u64,
                        shape.clone(),
                        state,
                    ));
                    continue;
                }
                let read = || -> Result<StreamEvent, String> {
                    Ok(StreamEvent::new(
                        r.try_get::<_, String>(2).map_err(|e| e.to_string())?,
                        r.try_get::<_, i32>(3).map_err(|e| e.to_string())? as u32,
                        r.try_get::<_, String>(4).map_err(|e| e.to_string())?,
                    ))
                };
                events.push(read().map_err(|reason| StoreError::Corrupt {
                    sequence: v as u64,
                    reason,
                }));
            }
            Ok(StreamLoad::new(snapshot, events))
        })
    }

    fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        let stream = stream.to_owned();
        self.read_with(move |client| {
            Ok(client
                .query_opt("SELECT version FROM streams WHERE stream = $1", &[&stream])
                .map_err(backend)?
                .map_or(0, |r| r.get::<_, i64>(0) as u64))
        })
    }

    fn snapshot(&self, stream: &str) -> Result<Option<Snapshot>, StoreError> {
        let stream = stream.to_owned();
        self.read_with(move |client| {
            Ok(client
                .query_opt(
                    "SELECT version, shape, state FROM snapshots WHERE stream = $1",
                    &[&stream],
                )
                .map_err(backend)?
                .map(|r| {
                    Snapshot::new(
                        stream.clone(),
                        r.get::<_, i64>(0) as u64,
                        r.get::<_, String>(1),
                        r.get::<_, String>(2),
                    )
                }))
        })
    }

    fn put_snapshot(&self, snapshot: Snapshot) -> StoreFuture<'_, ()> {
        self.ask(|reply| Command::PutSnapshot(Box::new(snapshot), reply))
    }
}

impl events::store::Inbox for PostgresStore {
    fn seen(&self, key: &events::outbox::InboxKey) -> Result<bool, StoreError> {
        let key = key.clone();
        self.read_with(move |client| {
            client
                .query_opt(
                    "SELECT 1 FROM inbox WHERE handler = $1 AND source = $2 AND id = $3",
                    &[&key.handler, &key.source, &key.id],
                )
                .map(|r| r.is_some())
                .map_err(backend)
        })
    }
}

/// The outbox shared by every process on the database. A claim, in one transaction on the
/// reader's connection: takes the leases of the caller's own partition and of every
/// partition whose lease ran out (`FOR UPDATE SKIP LOCKED`: a claim never waits for
/// another), renews them, gives back adopted partitions that are empty (so that their own
/// process, restarted, gets them back), and reads the oldest entries of what it holds. Two
/// live processes therefore never forward one partition at once; one that dies leaves its
/// partition to whoever claims after its lease ran out, which sends its unacknowledged
/// entries again (dropped as duplicates by a broker inside its deduplication window).
impl Outbox for PostgresStore {
    fn append<'a>(&'a self, event: StoredEvent, partition: &'a str) -> StoreFuture<'a, u64> {
        self.ask(|reply| Command::Append(Box::new(event), Some(partition.into()), reply))
    }

    fn claim<'a>(
        &'a self,
        owner: &'a str,
        partition: &'a str,
        after: u64,
        limit: usize,
        lease: std::time::Duration,
    ) -> StoreFuture<'a, Vec<Row>> {
        let (owner, partition) = (owner.to_owned(), partition.to_owned());
        let after = sql_count(after);
        let lease_ms = lease.as_millis().min(i64::MAX as u128) as i64;
        let limit = limit.min(i64::MAX as usize) as i64;
        self.read_async(move |client| {
            let mut tx = client.transaction().map_err(backend)?;
            tx.execute(
                "INSERT INTO outbox_leases (partition, owner, until)
                 VALUES ($1, '', '-infinity'::timestamptz) ON CONFLICT (partition) DO NOTHING",
                &[&partition],
            )
            .map_err(backend)?;
            let held: Vec<String> = tx
                .query(
                    "WITH free AS (
                        SELECT partition FROM outbox_leases
                        WHERE owner = $1 OR until < now()
                        FOR UPDATE SKIP LOCKED
                     )
                     UPDATE outbox_leases l
                     SET owner = $1, until = now() + $2 * interval '1 millisecond'
                     FROM free WHERE l.partition = free.partition
                     RETURNING l.partition",
                    &[&owner, &(lease_ms as f64)],
                )
                .map_err(backend)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            tx.execute(
                "UPDATE outbox_leases l SET owner = '', until = '-infinity'::timestamptz
                 WHERE l.owner = $1 AND l.partition <> $2
                   AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.partition = l.partition)",
                &[&owner, &partition],
            )
            .map_err(backend)?;
            let rows = tx
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM events WHERE sequence IN (
                            SELECT sequence FROM outbox
                            WHERE partition = ANY($1) AND sequence > $3
                            ORDER BY sequence LIMIT $2
                         ) ORDER BY sequence"
                    ),
                    &[&held, &limit, &after],
                )
                .map_err(backend)?
                .iter()
                .map(row)
                .collect();
            tx.commit().map_err(backend)?;
            Ok(rows)
        })
    }

    fn forwarded(&self, sequences: Vec<u64>) -> StoreFuture<'_, ()> {
        if sequences.is_empty() {
            return Box::pin(std::future::ready(Ok(())));
        }
        let sequences = sequences.into_iter().map(sql_count).collect();
        self.ask(|reply| Command::Forwarded(sequences, reply))
    }

    fn backlog(&self) -> Result<Backlog, StoreError> {
        self.read_with(|client| {
            let r = client
                .query_one(
                    "SELECT (SELECT COUNT(*) FROM outbox),
                            (SELECT time FROM events
                             WHERE sequence = (SELECT MIN(sequence) FROM outbox))",
                    &[],
                )
                .map_err(backend)?;
            let events: i64 = r.get(0);
            let oldest: Option<i64> = r.get(1);
            Ok(Backlog::new(events as u64, oldest.map(time_of_key)))
        })
    }
}

/// The data keys of personal data, in table `subject_keys`, read and written on the
/// reader's connection (each statement its own transaction). A forgotten key's row is
/// deleted; PostgreSQL keeps the dead tuple's bytes until the space is reused, and its WAL
/// and backups keep them longer: give the store a [`Kms`](events::store::Kms)
/// ([`PostgresOptions::kms`]) to make a forgotten key unusable everywhere.
impl events::store::KeyStore for PostgresStore {
    fn key_for(&self, subject: &str) -> Result<events::personal::DataKey, StoreError> {
        let fresh = events::personal::DataKey::generate()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let wrapped = events::store::wrap_secret(self.kms.as_deref(), &fresh.secret)?;
        let subject = subject.to_owned();
        let (id, secret): (Vec<u8>, Vec<u8>) = self.read_with(move |client| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            // Insert unless there is one, then read what is kept: two racing callers get
            // the same key.
            client
                .execute(
                    "INSERT INTO subject_keys (subject, id, secret, created) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (subject) DO NOTHING",
                    &[&subject, &&fresh.id.0[..], &wrapped, &now],
                )
                .map_err(backend)?;
            let row = client
                .query_one(
                    "SELECT id, secret FROM subject_keys WHERE subject = $1",
                    &[&subject],
                )
                .map_err(backend)?;
            Ok((row.get(0), row.get(1)))
        })?;
        events::store::stored_key(self.kms.as_deref(), &id, &secret)
    }

    fn key(
        &self,
        id: &events::personal::KeyId,
    ) -> Result<Option<events::personal::DataKey>, StoreError> {
        let wanted = id.0.to_vec();
        let stored: Option<Vec<u8>> = self.read_with(move |client| {
            client
                .query_opt("SELECT secret FROM subject_keys WHERE id = $1", &[&wanted])
                .map(|row| row.map(|r| r.get(0)))
                .map_err(backend)
        })?;
        stored
            .map(|s| events::store::stored_key(self.kms.as_deref(), &id.0, &s))
            .transpose()
    }

    fn forget(&self, subject: &str) -> Result<usize, StoreError> {
        let subject = subject.to_owned();
        self.read_with(move |client| {
            client
                .execute("DELETE FROM subject_keys WHERE subject = $1", &[&subject])
                .map(|n| n as usize)
                .map_err(backend)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{redact, time_key, time_of_key};

    #[test]
    fn time_keys_sort_as_the_times_do() {
        let times = [0, 1, 1 << 62, (1 << 63) - 1, 1 << 63, u64::MAX];
        for pair in times.windows(2) {
            assert!(time_key(pair[0]) < time_key(pair[1]), "{pair:?}");
        }
        for t in times {
            assert_eq!(time_of_key(time_key(t)), t);
        }
    }

    #[test]
    fn passwords_are_not_repeated() {
        assert_eq!(
            redact("host=db user=app password=hunter2 dbname=x"),
            "host=db user=app password=*** dbname=x"
        );
        assert_eq!(
            redact("postgresql://app:hunter2@db:5432/x"),
            "postgresql://app@db:5432/x"
        );
    }
}
