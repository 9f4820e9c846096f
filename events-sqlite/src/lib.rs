//! [`SqliteStore`]: the durable store, one SQLite file in WAL mode, written by one thread
//! that commits many appends with one `fsync` (group commit).

use std::io::Read;
#[cfg(not(unix))]
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

/// The SQLite bindings the store is built on, for [`SqliteStore::transaction`]'s
/// `rusqlite::Transaction` without a dependency of the application's own to keep in step.
pub use rusqlite;
use tokio::sync::oneshot;

use events::store::TransactionError;
use events::store::{
    Backlog, EventStore, Order, Outbox, Row, Snapshot, StoreError, StoreFuture, StoreQuery,
    StoredDeadLetter, StoredEvent, StreamAppend, StreamEvent, StreamLoad, Streams,
};
use events::{EventId, Staged};

/// How hard SQLite works to make a commit survive (its `synchronous` setting).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Synchronous {
    /// `FULL` (the default): a commit is on disk when `publish` resolves; it survives a
    /// crash of the process and of the machine.
    #[default]
    Full,
    /// `NORMAL`: a commit survives a crash of the process (it is in the WAL, in the OS's
    /// cache) but the last commits may be lost if the machine loses power. Faster.
    Normal,
}

/// How a [`SqliteStore`] is opened: durability, checks at open, dead-letter retention.
///
/// ```
/// use events_sqlite::{SqliteOptions, Synchronous}; // `events::store::..` in an application
/// let options = SqliteOptions::new()
///     .synchronous(Synchronous::Normal)
///     .quick_check(true)
///     .max_dead_letters(10_000);
/// # let _ = options;
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct SqliteOptions {
    synchronous: Synchronous,
    quick_check: bool,
    accept_lost_tail: bool,
    max_dead_letters: u64,
    kms: Option<std::sync::Arc<dyn events::store::Kms>>,
}

impl SqliteOptions {
    /// The default dead-letter retention.
    pub const DEFAULT_MAX_DEAD_LETTERS: u64 = 100_000;

    /// `synchronous = FULL`, no `quick_check`, a lost tail refused, at most 100,000 dead
    /// letters.
    pub fn new() -> SqliteOptions {
        SqliteOptions {
            synchronous: Synchronous::Full,
            quick_check: false,
            accept_lost_tail: false,
            max_dead_letters: SqliteOptions::DEFAULT_MAX_DEAD_LETTERS,
            kms: None,
        }
    }
    /// Keeps every data key encrypted by `kms`'s master key (envelope encryption): a copy
    /// of the file holds no usable key. Without it (the default), data keys are kept as they
    /// are, in the same file as the data they seal.
    pub fn kms(mut self, kms: impl events::store::Kms) -> SqliteOptions {
        self.kms = Some(std::sync::Arc::new(kms));
        self
    }
    /// How hard SQLite works to make a commit survive.
    pub fn synchronous(mut self, synchronous: Synchronous) -> SqliteOptions {
        self.synchronous = synchronous;
        self
    }
    /// Runs SQLite's `PRAGMA quick_check` at open: [`StoreError::Damaged`] when it finds
    /// the file's structure damaged (pages, b-trees, records; it does not read every value,
    /// and nothing in SQLite checks a value's bits). Its cost grows with the file: about a
    /// second per few hundred MB.
    pub fn quick_check(mut self, on: bool) -> SqliteOptions {
        self.quick_check = on;
        self
    }
    /// Opens a store that lost acknowledged events ([`StoreError::LostTail`]) anyway, with
    /// an error in the log: for after the loss has been looked at. The high-water mark then
    /// moves down to what is readable.
    pub fn accept_lost_tail(mut self, accept: bool) -> SqliteOptions {
        self.accept_lost_tail = accept;
        self
    }
    /// Keeps at most the newest `n` dead letters (by id; at least 1): an older one is
    /// deleted when a new one is stored (default 100,000).
    pub fn max_dead_letters(mut self, n: u64) -> SqliteOptions {
        self.max_dead_letters = n.max(1);
        self
    }
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions::new()
    }
}

impl From<Synchronous> for SqliteOptions {
    fn from(synchronous: Synchronous) -> SqliteOptions {
        SqliteOptions::new().synchronous(synchronous)
    }
}

/// The schema, one migration per version; `PRAGMA user_version` says how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: the event log, delivery records, checkpoints, dead letters.
    "CREATE TABLE events (
        sequence INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        kind TEXT NOT NULL,
        time INTEGER NOT NULL,
        source TEXT NOT NULL,
        target TEXT,
        correlation_id TEXT NOT NULL,
        causation_id TEXT,
        depth INTEGER NOT NULL,
        priority INTEGER NOT NULL,
        metadata TEXT NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE INDEX events_by_name ON events (name, sequence);
    CREATE INDEX events_by_correlation ON events (correlation_id, sequence);
    CREATE INDEX events_by_time ON events (time);
    CREATE TABLE handlers (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    CREATE TABLE deliveries (
        handler INTEGER NOT NULL,
        sequence INTEGER NOT NULL,
        PRIMARY KEY (handler, sequence)
    ) WITHOUT ROWID;
    CREATE TABLE checkpoints (
        handler TEXT NOT NULL,
        event TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        PRIMARY KEY (handler, event)
    ) WITHOUT ROWID;
    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        letter TEXT NOT NULL
    );",
    // 2: the outbox: an entry per event the forwarder has not had acknowledged.
    "CREATE TABLE outbox (
        sequence INTEGER PRIMARY KEY,
        partition TEXT NOT NULL
    );",
    // 3: the inbox: what `#[handler(inbox)]` handlers recorded, with when.
    "CREATE TABLE inbox (
        handler TEXT NOT NULL,
        source TEXT NOT NULL,
        id TEXT NOT NULL,
        time INTEGER NOT NULL,
        PRIMARY KEY (handler, source, id)
    ) WITHOUT ROWID;",
    // 4: streams of aggregates: each event's stream and version in it, each stream's
    // version (the row an append's expected version is checked against), snapshots.
    "ALTER TABLE events ADD COLUMN stream TEXT;
    ALTER TABLE events ADD COLUMN stream_version INTEGER;
    CREATE UNIQUE INDEX events_by_stream ON events (stream, stream_version)
        WHERE stream IS NOT NULL;
    CREATE TABLE streams (
        stream TEXT PRIMARY KEY,
        version INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE snapshots (
        stream TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        shape TEXT NOT NULL,
        state TEXT NOT NULL
    ) WITHOUT ROWID;",
];

/// The schema of the key file (`<file>-keys`): the data keys of personal data, one per data
/// subject (deleted by `forget`). A file of its own: a key is made while the event that
/// needs it is being written, and an application's transaction may hold the event file's
/// write lock then.
const KEYS_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS subject_keys (
        subject TEXT PRIMARY KEY,
        id BLOB NOT NULL UNIQUE,
        secret BLOB NOT NULL,
        created INTEGER NOT NULL
    ) WITHOUT ROWID;";

/// The most writes one transaction takes: a bound on one commit's latency.
const MAX_BATCH: usize = 4096;

/// The durable [`EventStore`]: one SQLite file (feature `sqlite`; SQLite is compiled in).
///
/// - WAL journal, `synchronous = FULL` unless [`open_with`](Self::open_with) says
///   otherwise: an append is on disk when its future resolves.
/// - Data keys of personal data in a file beside it (`<file>-keys`; see
///   [`EventStore::keys`]).
/// - A high-water mark beside the file (`<file>-hwm`, the last acknowledged sequence,
///   written after each commit): a store that opens with fewer events than it acknowledged
///   is refused with [`StoreError::LostTail`] instead of opening "ok" without them.
/// - Dead letters kept up to a retention ([`SqliteOptions::max_dead_letters`]).
/// - Group commit: one thread owns the write connection and commits everything that
///   arrived while the previous commit ran in one transaction, so concurrent publishers
///   share one `fsync`.
/// - Versioned schema migrations (`PRAGMA user_version`); a file from a newer version is
///   refused, not changed.
/// - Reads use their own connection and do not wait for the writer.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = events_sqlite::SqliteStore::open("events.db")?; // `events::store::SqliteStore`
/// let bus = events::Bus::builder().store(store).build()?;
/// # let _ = bus; Ok(()) }
/// ```
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<Command>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    reader: Mutex<Connection>,
    keys: SqliteKeys,
}

/// The store's data keys ([`EventStore::keys`]), in a file of their own beside the store's
/// (`<file>-keys`), with `secure_delete` on, so that a forgotten key's bytes are
/// overwritten in the file, and a WAL checkpoint after each `forget`, so that no earlier
/// copy stays in the log.
struct SqliteKeys {
    conn: Mutex<Connection>,
    kms: Option<std::sync::Arc<dyn events::store::Kms>>,
}

impl SqliteKeys {
    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl events::store::KeyStore for SqliteKeys {
    fn key_for(&self, subject: &str) -> Result<events::personal::DataKey, StoreError> {
        let conn = self.lock();
        let read = |conn: &Connection| {
            conn.query_row(
                "SELECT id, secret FROM subject_keys WHERE subject = ?1",
                [subject],
                |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?)),
            )
            .optional()
            .map_err(backend)
        };
        let found = match read(&conn)? {
            Some(found) => found,
            None => {
                let key = events::personal::DataKey::generate()
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                conn.execute(
                    "INSERT INTO subject_keys (subject, id, secret, created) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (subject) DO NOTHING",
                    rusqlite::params![subject, &key.id.0[..], events::store::wrap_secret(self.kms.as_deref(), &key.secret)?, now],
                )
                .map_err(backend)?;
                read(&conn)?
                    .ok_or_else(|| StoreError::Backend("a new data key was not kept".into()))?
            }
        };
        events::store::stored_key(self.kms.as_deref(), &found.0, &found.1)
    }

    fn key(
        &self,
        id: &events::personal::KeyId,
    ) -> Result<Option<events::personal::DataKey>, StoreError> {
        let stored: Option<Vec<u8>> = self
            .lock()
            .query_row(
                "SELECT secret FROM subject_keys WHERE id = ?1",
                [&id.0[..]],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        stored
            .map(|s| events::store::stored_key(self.kms.as_deref(), &id.0, &s))
            .transpose()
    }

    fn forget(&self, subject: &str) -> Result<usize, StoreError> {
        let conn = self.lock();
        let n = conn
            .execute("DELETE FROM subject_keys WHERE subject = ?1", [subject])
            .map_err(backend)?;
        // The log may hold the page as it was: copy the overwritten page into the file
        // and truncate the log. A reader in the way leaves it for the next checkpoint.
        let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        Ok(n)
    }
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// An application's transaction, run by the writer: it answers its caller itself.
type Job = Box<dyn FnOnce(&mut Connection, &mut HighWater) + Send>;

enum Command {
    Append(Box<StoredEvent>, Reply<u64>),
    /// An append with an outbox entry in `partition`.
    AppendOutbox(Box<StoredEvent>, Box<str>, Reply<u64>),
    Forwarded(Vec<u64>, Reply<()>),
    /// An application's transaction: run on the writer's connection, alone.
    Transaction(Job),
    Delivered(Box<str>, u64),
    Checkpoint(Box<str>, Box<str>, Reply<u64>),
    PutDeadLetter(Box<StoredDeadLetter>),
    RemoveDeadLetter(u64),
    Flush(Reply<()>),
    /// Events appended to a stream if it is at the expected version.
    AppendStream(Box<StreamAppend>, Reply<Vec<u64>>),
    PutSnapshot(Box<Snapshot>, Reply<()>),
    /// A durable handler's records and checkpoint for an event forgotten.
    Reset(Box<str>, Box<str>, Reply<()>),
    /// Events deleted by a retention rule.
    Purge(Box<events::store::Purge>, Reply<u64>),
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SqliteStore {
    /// Opens (or creates) the store at `path` with `synchronous = FULL`.
    ///
    /// # Errors
    /// When the file cannot be opened or migrated, or was written by a newer version.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, Synchronous::Full)
    }

    /// Opens (or creates) the store at `path` with `options` (or a [`Synchronous`]).
    ///
    /// # Errors
    /// As [`open`](Self::open); [`StoreError::LostTail`] when acknowledged events are gone
    /// (unless [accepted](SqliteOptions::accept_lost_tail)); [`StoreError::Damaged`] when
    /// a [`quick_check`](SqliteOptions::quick_check) fails.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: impl Into<SqliteOptions>,
    ) -> Result<SqliteStore, StoreError> {
        let options = options.into();
        let path = path.as_ref().to_path_buf();
        let shown = path.display().to_string();
        let opening = |e: rusqlite::Error| StoreError::Open {
            path: shown.clone(),
            reason: e.to_string(),
        };
        let mut conn = Connection::open(&path).map_err(opening)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(opening)?;
        // The first statement that reads the file: a file that is not a database is
        // refused here, before anything is written to it.
        let version = conn
            .pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
            .map_err(opening)?;
        if options.quick_check {
            quick_check(&conn, &shown)?;
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(opening)?;
        conn.pragma_update(
            None,
            "synchronous",
            match options.synchronous {
                Synchronous::Full => "FULL",
                Synchronous::Normal => "NORMAL",
            },
        )
        .map_err(opening)?;
        migrate(&mut conn, &path).map_err(|e| match e {
            StoreError::Backend(reason) => StoreError::Open {
                path: shown.clone(),
                reason,
            },
            e => e,
        })?;
        let readable: i64 = conn
            .query_row("SELECT COALESCE(MAX(sequence), 0) FROM events", [], |r| {
                r.get(0)
            })
            .map_err(opening)?;
        // A new file (deleted to start afresh, say) has nothing to lose: a mark left by an
        // earlier file is reset.
        let accept = options.accept_lost_tail || version == 0;
        let mark = HighWater::open(&path, readable as u64, accept)?;
        let reader = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(opening)?;
        reader
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(opening)?;
        let keys = Connection::open(keys_path(&path)).map_err(opening)?;
        keys.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(opening)?;
        keys.pragma_update(None, "secure_delete", "ON")
            .map_err(opening)?;
        keys.pragma_update(None, "journal_mode", "WAL")
            .map_err(opening)?;
        keys.pragma_update(None, "synchronous", "FULL")
            .map_err(opening)?;
        keys.execute_batch(KEYS_SCHEMA).map_err(opening)?;
        let keys = SqliteKeys {
            conn: Mutex::new(keys),
            kms: options.kms.clone(),
        };
        let (tx, rx) = mpsc::channel();
        let max_dead_letters = options.max_dead_letters;
        let thread = std::thread::Builder::new()
            .name("events-sqlite-writer".into())
            .spawn(move || write_loop(conn, rx, mark, max_dead_letters))
            .map_err(|e| StoreError::Backend(format!("cannot start the writer thread: {e}")))?;
        Ok(SqliteStore {
            path,
            writer: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            reader: Mutex::new(reader),
            keys,
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version this build of `events` writes.
    pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

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

    /// Runs `work` in one SQLite transaction on the store's write connection, with the
    /// events it stages (`staged.publish(..)`): the application's rows and the events (with
    /// the outbox entries of those that leave the process) commit together, or not at all.
    /// `Err` from `work` rolls everything back. After the commit the events are published
    /// ([`Staged::committed`]): the forwarder sends those that leave the process, this
    /// process's handlers get the others. The receipts, one per event.
    ///
    /// `work` runs on the store's writer thread, between two group commits: keep it short
    /// (appends wait meanwhile).
    ///
    /// ```no_run
    /// # #[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    /// # #[event(name = "doc.order.placed")]
    /// # struct OrderPlaced { order_id: u64 }
    /// # async fn run(bus: events::Bus, store: std::sync::Arc<events_sqlite::SqliteStore>) -> anyhow::Result<()> {
    /// let (order, _receipts) = store
    ///     .transaction(&bus, |tx, staged| {
    ///         tx.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY)", [])?;
    ///         tx.execute("INSERT INTO orders (id) VALUES (7)", [])?;
    ///         staged.publish(OrderPlaced { order_id: 7 })?;
    ///         Ok::<_, anyhow::Error>(7)
    ///     })
    ///     .await?;
    /// # let _ = order; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`TransactionError::RolledBack`] with `work`'s error; [`TransactionError::Store`]
    /// when the store cannot write or commit (nothing is committed).
    pub async fn transaction<T, E, F>(
        &self,
        bus: &events::Bus,
        work: F,
    ) -> Result<(T, Vec<events::Receipt>), TransactionError<E>>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>, &mut Staged) -> Result<T, E> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let mut staged = bus.stage();
        let job: Job = Box::new(move |conn, mark| {
            let result = run_transaction(conn, mark, &mut staged, work);
            let _ = reply.send(result.map(|(value, sequences)| (value, sequences, staged)));
        });
        self.send(Command::Transaction(job))?;
        let (value, sequences, staged) = answer.await.map_err(|_| StoreError::Closed)??;
        let receipts = staged.committed(&sequences).await;
        Ok((value, receipts))
    }

    /// Records an `#[handler(inbox)]` handler's key in `tx`, the transaction of its writes
    /// (`store.transaction(..)`): `Ok(false)` when it is recorded already (the event was
    /// handled: write nothing, return `Ok`). Once `tx` commits, a redelivery of the event
    /// skips the handler.
    ///
    /// # Errors
    /// When the insert fails.
    pub fn record_inbox(
        tx: &rusqlite::Transaction<'_>,
        key: &events::outbox::InboxKey,
    ) -> Result<bool, StoreError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let added = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO inbox (handler, source, id, time) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(params![key.handler, key.source, key.id, now]))
            .map_err(backend)?;
        Ok(added == 1)
    }

    fn read_connection(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for SqliteStore {
    /// Lets the writer commit what it has, then waits for it.
    fn drop(&mut self) {
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Runs the migrations the file has not had, each in its own transaction.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(backend)?;
    let known = SqliteStore::SCHEMA_VERSION;
    if found > known {
        return Err(StoreError::TooNew {
            path: path.display().to_string(),
            found,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction().map_err(backend)?;
        tx.execute_batch(sql).map_err(backend)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
    }
    Ok(())
}

/// `PRAGMA quick_check`: `ok`, or [`StoreError::Damaged`] with its first problems.
fn quick_check(conn: &Connection, path: &str) -> Result<(), StoreError> {
    let damaged = |problems: String| StoreError::Damaged {
        path: path.to_owned(),
        problems,
    };
    let mut stmt = conn
        .prepare("PRAGMA quick_check(8)")
        .map_err(|e| damaged(e.to_string()))?;
    let problems = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| damaged(e.to_string()))?;
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    Err(damaged(events::text::clip(&problems.join("; "), 1024)))
}

/// Where the data keys are kept: `<file>-keys`.
fn keys_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-keys");
    PathBuf::from(name)
}

/// The high-water mark: the last sequence the store acknowledged, in `<file>-hwm`, written
/// (not synced) after each commit that appended. It can only lag the database: a crash
/// between a commit and its mark leaves the mark lower, never higher. So a mark above the
/// last readable event means acknowledged events are gone.
struct HighWater {
    file: std::fs::File,
    last: u64,
}

impl HighWater {
    /// Opens (or creates) the mark of the store at `db`, whose last readable sequence is
    /// `readable`; refuses a store that lost acknowledged events unless `accept`.
    fn open(db: &Path, readable: u64, accept: bool) -> Result<HighWater, StoreError> {
        let mut name = db.as_os_str().to_owned();
        name.push("-hwm");
        let path = PathBuf::from(name);
        let open_error = |e: std::io::Error| StoreError::Open {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(open_error)?;
        let mut bytes = [0u8; 8];
        // A missing or short mark (a new store, one from an older version) says nothing.
        let acknowledged = match file.read_exact(&mut bytes) {
            Ok(()) => u64::from_le_bytes(bytes),
            Err(_) => 0,
        };
        if acknowledged > readable {
            let lost = StoreError::LostTail {
                path: db.display().to_string(),
                acknowledged,
                readable,
                lost: acknowledged - readable,
            };
            if !accept {
                return Err(lost);
            }
            if readable > 0 {
                tracing::error!(error = %lost, "opened anyway (`SqliteOptions::accept_lost_tail`)");
            } else {
                tracing::warn!(
                    path = %db.display(), acknowledged,
                    "a new event store: the high-water mark of an earlier file was reset"
                );
            }
        }
        let mut mark = HighWater { file, last: 0 };
        mark.set(readable).map_err(open_error)?;
        Ok(mark)
    }

    /// One `pwrite` per group commit (a seek and a write where there is no `pwrite`); no
    /// `fsync` of its own.
    fn set(&mut self, sequence: u64) -> std::io::Result<()> {
        if sequence != self.last {
            #[cfg(unix)]
            std::os::unix::fs::FileExt::write_all_at(&self.file, &sequence.to_le_bytes(), 0)?;
            #[cfg(not(unix))]
            {
                self.file.seek(SeekFrom::Start(0))?;
                self.file.write_all(&sequence.to_le_bytes())?;
            }
            self.last = sequence;
        }
        Ok(())
    }
}

/// The writer: takes everything waiting, writes it in one transaction, commits, answers.
fn write_loop(
    mut conn: Connection,
    rx: mpsc::Receiver<Command>,
    mut mark: HighWater,
    max_dead_letters: u64,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut handlers = HandlerIds::new();
    while let Ok(first) = rx.recv() {
        // An application's transaction runs alone, after the group commit before it.
        let mut job = None;
        match first {
            Command::Transaction(j) => job = Some(j),
            c => batch.push(c),
        }
        while job.is_none() && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Command::Transaction(j)) => job = Some(j),
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            if let Some(job) = job {
                job(&mut conn, &mut mark);
            }
            continue;
        }
        let mut answers = Vec::with_capacity(batch.len());
        let committed = write_batch(
            &mut conn,
            &mut handlers,
            &mut batch,
            &mut answers,
            max_dead_letters,
        );
        if committed.is_err() {
            // Ids made in the rolled-back transaction do not exist.
            handlers.clear();
        } else if let Some(last) = answers.iter().filter_map(Answer::appended).max() {
            // Before anyone hears of the commit: a mark never lags an acknowledged append
            // but by a crash.
            if let Err(e) = mark.set(last) {
                tracing::warn!(error = %e, "the store's high-water mark could not be written");
            }
        }
        for answer in answers {
            answer.send(&committed);
        }
        batch.clear();
        if let Some(job) = job {
            job(&mut conn, &mut mark);
        }
    }
}

/// What to tell a waiting caller once the transaction's fate is known.
enum Answer {
    /// A sequence: an append's (`true`) or a checkpoint's.
    Sequence(Reply<u64>, Result<u64, StoreError>, bool),
    /// The sequences of a stream append.
    Sequences(Reply<Vec<u64>>, Result<Vec<u64>, StoreError>),
    Done(Reply<()>),
}

impl Answer {
    /// The sequence of an append that succeeded.
    fn appended(&self) -> Option<u64> {
        match self {
            Answer::Sequence(_, Ok(sequence), true) => Some(*sequence),
            Answer::Sequences(_, Ok(sequences)) => sequences.last().copied(),
            _ => None,
        }
    }

    fn send(self, committed: &Result<(), StoreError>) {
        match (self, committed) {
            (Answer::Sequence(tx, result, _), Ok(())) => drop(tx.send(result)),
            (Answer::Sequence(tx, _, _), Err(e)) => drop(tx.send(Err(e.clone()))),
            (Answer::Sequences(tx, result), Ok(())) => drop(tx.send(result)),
            (Answer::Sequences(tx, _), Err(e)) => drop(tx.send(Err(e.clone()))),
            (Answer::Done(tx), Ok(())) => drop(tx.send(Ok(()))),
            (Answer::Done(tx), Err(e)) => drop(tx.send(Err(e.clone()))),
        }
    }
}

/// Handler names' ids in the `handlers` table, so that a delivery record is two integers.
type HandlerIds = std::collections::HashMap<Box<str>, i64>;

fn handler_id(
    tx: &rusqlite::Transaction<'_>,
    ids: &mut HandlerIds,
    name: &str,
) -> Result<i64, StoreError> {
    if let Some(&id) = ids.get(name) {
        return Ok(id);
    }
    tx.execute(
        "INSERT OR IGNORE INTO handlers (name) VALUES (?1)",
        params![name],
    )
    .map_err(backend)?;
    let id: i64 = tx
        .query_row(
            "SELECT id FROM handlers WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )
        .map_err(backend)?;
    ids.insert(name.into(), id);
    Ok(id)
}

fn write_batch(
    conn: &mut Connection,
    handlers: &mut HandlerIds,
    batch: &mut Vec<Command>,
    answers: &mut Vec<Answer>,
    max_dead_letters: u64,
) -> Result<(), StoreError> {
    let mut commands = batch.drain(..);
    // Immediate: the write lock first (waiting up to the busy timeout for another process
    // that has it), so that a stream's version read in this transaction is the latest.
    let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            answers.extend(commands.filter_map(Command::waiter));
            return Err(backend(e));
        }
    };
    if let Err(e) = write_commands(&tx, handlers, &mut commands, answers, max_dead_letters) {
        // Everyone still waiting hears why the transaction was rolled back.
        answers.extend(commands.filter_map(Command::waiter));
        return Err(e);
    }
    tx.commit().map_err(backend)
}

impl Command {
    /// The caller waiting for this command, told only the transaction's fate.
    fn waiter(self) -> Option<Answer> {
        match self {
            Command::Append(_, reply)
            | Command::AppendOutbox(_, _, reply)
            | Command::Checkpoint(_, _, reply)
            | Command::Purge(_, reply) => {
                Some(Answer::Sequence(reply, Err(StoreError::Closed), false))
            }
            Command::Flush(reply)
            | Command::Forwarded(_, reply)
            | Command::PutSnapshot(_, reply)
            | Command::Reset(_, _, reply) => Some(Answer::Done(reply)),
            Command::AppendStream(_, reply) => {
                Some(Answer::Sequences(reply, Err(StoreError::Closed)))
            }
            Command::Transaction(_) => None,
            Command::Delivered(..) | Command::PutDeadLetter(_) | Command::RemoveDeadLetter(_) => {
                None
            }
        }
    }
}

fn write_commands(
    tx: &rusqlite::Transaction<'_>,
    handlers: &mut HandlerIds,
    commands: &mut impl Iterator<Item = Command>,
    answers: &mut Vec<Answer>,
    max_dead_letters: u64,
) -> Result<(), StoreError> {
    for command in commands {
        match command {
            Command::Append(event, reply) => {
                let result = insert(tx, &event);
                let rolled_back = rolled_back(tx, &result);
                answers.push(Answer::Sequence(reply, result, true));
                rolled_back?;
            }
            Command::AppendOutbox(event, partition, reply) => {
                let result = insert(tx, &event)
                    .and_then(|sequence| add_outbox_entry(tx, sequence, &partition));
                let rolled_back = rolled_back(tx, &result);
                // An event without its entry would never be forwarded: the commit fails
                // (a duplicate id added neither).
                let failed = match &result {
                    Err(e @ StoreError::Backend(_)) => Some(e.clone()),
                    _ => None,
                };
                answers.push(Answer::Sequence(reply, result, true));
                rolled_back?;
                if let Some(e) = failed {
                    return Err(e);
                }
            }
            Command::Forwarded(sequences, reply) => {
                let mut delete = tx
                    .prepare_cached("DELETE FROM outbox WHERE sequence = ?1")
                    .map_err(backend)?;
                for sequence in sequences {
                    delete.execute(params![sequence as i64]).map_err(backend)?;
                }
                answers.push(Answer::Done(reply));
            }
            Command::Delivered(handler, sequence) => {
                let handler = handler_id(tx, handlers, &handler)?;
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO deliveries (handler, sequence) VALUES (?1, ?2)",
                )
                .and_then(|mut s| s.execute(params![handler, sequence as i64]))
                .map_err(backend)?;
            }
            Command::Purge(purge, reply) => {
                let result = purge_events(tx, &purge);
                let rolled_back = rolled_back(tx, &result);
                answers.push(Answer::Sequence(reply, result, false));
                rolled_back?;
            }
            Command::Checkpoint(handler, event, reply) => {
                let result = checkpoint(tx, &handler, &event);
                let rolled_back = rolled_back(tx, &result);
                answers.push(Answer::Sequence(reply, result, false));
                rolled_back?;
            }
            Command::PutDeadLetter(letter) => {
                let json = serde_json::to_string(&*letter)
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO dead_letters (id, letter) VALUES (?1, ?2)",
                )
                .and_then(|mut s| s.execute(params![letter.id as i64, json]))
                .map_err(backend)?;
                // The retention: the newest `max_dead_letters` ids (a range of the key).
                tx.prepare_cached("DELETE FROM dead_letters WHERE id <= ?1")
                    .and_then(|mut s| {
                        s.execute(params![letter.id.saturating_sub(max_dead_letters) as i64])
                    })
                    .map_err(backend)?;
            }
            Command::RemoveDeadLetter(id) => {
                tx.execute("DELETE FROM dead_letters WHERE id = ?1", params![id as i64])
                    .map_err(backend)?;
            }
            Command::Flush(reply) => answers.push(Answer::Done(reply)),
            Command::AppendStream(append, reply) => {
                // In a savepoint: a refused append leaves nothing in the group commit.
                tx.execute_batch("SAVEPOINT stream_append")
                    .map_err(backend)?;
                let result = append_stream(tx, &append);
                let undo = match &result {
                    Ok(_) => "RELEASE stream_append",
                    Err(_) => "ROLLBACK TO stream_append; RELEASE stream_append",
                };
                let rolled_back = rolled_back(tx, &result);
                answers.push(Answer::Sequences(reply, result));
                rolled_back?;
                tx.execute_batch(undo).map_err(backend)?;
            }
            Command::Reset(handler, event, reply) => {
                tx.execute(
                    "DELETE FROM checkpoints WHERE handler = ?1 AND event = ?2",
                    params![&*handler, &*event],
                )
                .map_err(backend)?;
                tx.execute(
                    "DELETE FROM deliveries
                     WHERE handler = (SELECT id FROM handlers WHERE name = ?1)
                       AND sequence IN (SELECT sequence FROM events WHERE name = ?2)",
                    params![&*handler, &*event],
                )
                .map_err(backend)?;
                answers.push(Answer::Done(reply));
            }
            Command::PutSnapshot(snapshot, reply) => {
                tx.prepare_cached(
                    "INSERT INTO snapshots (stream, version, shape, state) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (stream) DO UPDATE SET version = excluded.version,
                        shape = excluded.shape, state = excluded.state
                     WHERE excluded.version >= snapshots.version",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        snapshot.stream,
                        snapshot.version as i64,
                        snapshot.shape,
                        snapshot.state
                    ])
                })
                .map_err(backend)?;
                answers.push(Answer::Done(reply));
            }
            // Split off by the writer's loop: never in a batch.
            Command::Transaction(_) => {}
        }
    }
    Ok(())
}

/// Whether a failed write took the whole transaction with it. Some errors (a full disk, an
/// I/O error, a trigger's `RAISE(ROLLBACK)`) roll it back; going on would commit each later
/// write on its own while its caller is told that the batch failed. So the batch stops, and
/// every write in it fails with this error.
/// Deletes what a retention rule says, with the deleted events' delivery records: never an
/// event of a stream, never the newest event (the high-water mark's), at most
/// `purge.limit` events (oldest first), so that memory and the transaction stay bounded
/// whatever the backlog.
fn purge_events(
    tx: &rusqlite::Transaction<'_>,
    purge: &events::store::Purge,
) -> Result<u64, StoreError> {
    let newest: i64 = tx
        .query_row("SELECT COALESCE(MAX(sequence), 0) FROM events", [], |r| {
            r.get(0)
        })
        .map_err(backend)?;
    let below = i64::try_from(purge.below).unwrap_or(i64::MAX).min(newest);
    let before = i64::try_from(purge.before).unwrap_or(i64::MAX);
    let mut left = purge.limit;
    let mut deleted = 0u64;
    for name in &purge.names {
        if left == 0 {
            break;
        }
        // The newest `keep` of the name stay: only what is older than the keep-th newest
        // goes (no event at all when there are fewer).
        let below = match purge.keep {
            0 => below,
            keep => tx
                .prepare_cached(
                    "SELECT sequence FROM events WHERE name = ?1
                     ORDER BY sequence DESC LIMIT 1 OFFSET ?2",
                )
                .and_then(|mut s| {
                    s.query_row(
                        params![name, i64::try_from(keep - 1).unwrap_or(i64::MAX)],
                        |r| r.get::<_, i64>(0),
                    )
                    .optional()
                })
                .map_err(backend)?
                .map_or(0, |kept| kept.min(below)),
        };
        let sequences: Vec<i64> = tx
            .prepare_cached(
                "DELETE FROM events WHERE sequence IN (
                   SELECT sequence FROM events
                   WHERE name = ?1 AND stream IS NULL AND sequence < ?2 AND time < ?3
                   ORDER BY sequence LIMIT ?4)
                 RETURNING sequence",
            )
            .and_then(|mut s| {
                s.query_map(
                    params![name, below, before, i64::try_from(left).unwrap_or(i64::MAX)],
                    |r| r.get(0),
                )?
                .collect::<Result<Vec<i64>, _>>()
            })
            .map_err(backend)?;
        let mut forget = tx
            // By the primary key (handler, sequence), one look-up per handler: by the
            // sequence alone, each delete scans every record.
            .prepare_cached(
                "DELETE FROM deliveries
                 WHERE handler IN (SELECT id FROM handlers) AND sequence = ?1",
            )
            .map_err(backend)?;
        for sequence in &sequences {
            forget.execute([sequence]).map_err(backend)?;
        }
        deleted += sequences.len() as u64;
        left -= sequences.len() as u64;
    }
    Ok(deleted)
}

fn rolled_back<T>(
    tx: &rusqlite::Transaction<'_>,
    result: &Result<T, StoreError>,
) -> Result<(), StoreError> {
    match result {
        Err(e) if tx.is_autocommit() => Err(StoreError::Backend(format!(
            "a write in this group commit failed and SQLite rolled the whole commit \
             back: {e}"
        ))),
        _ => Ok(()),
    }
}

/// The outbox entry of the event at `sequence`; the sequence.
fn add_outbox_entry(
    tx: &rusqlite::Transaction<'_>,
    sequence: u64,
    partition: &str,
) -> Result<u64, StoreError> {
    tx.prepare_cached("INSERT INTO outbox (sequence, partition) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![sequence as i64, partition]))
        .map_err(backend)?;
    Ok(sequence)
}

/// Runs an application's transaction: `work` with the staged events it publishes, then
/// those events (and their outbox entries) in the same transaction, then the commit. The
/// events' sequences, or why nothing was committed.
fn run_transaction<T, E>(
    conn: &mut Connection,
    mark: &mut HighWater,
    staged: &mut Staged,
    work: impl FnOnce(&rusqlite::Transaction<'_>, &mut Staged) -> Result<T, E>,
) -> Result<(T, Vec<u64>), TransactionError<E>> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(backend)?;
    let value = work(&tx, staged).map_err(TransactionError::RolledBack)?;
    let mut sequences = Vec::with_capacity(staged.len());
    for row in staged.rows() {
        let sequence = insert(&tx, row.event)?;
        if let Some(partition) = row.outbox {
            add_outbox_entry(&tx, sequence, partition)?;
        }
        sequences.push(sequence);
    }
    tx.commit().map_err(backend)?;
    if let Some(&last) = sequences.last() {
        if let Err(e) = mark.set(last) {
            tracing::warn!(error = %e, "the store's high-water mark could not be written");
        }
    }
    Ok((value, sequences))
}

/// Appends to a stream at its expected version: the events, their outbox entries, the
/// stream's new version; their sequences, or the conflict (nothing written: the caller's
/// savepoint undoes a failure midway).
fn append_stream(
    tx: &rusqlite::Transaction<'_>,
    append: &StreamAppend,
) -> Result<Vec<u64>, StoreError> {
    let actual: i64 = tx
        .prepare_cached("SELECT version FROM streams WHERE stream = ?1")
        .and_then(|mut s| s.query_row(params![append.stream], |r| r.get(0)).optional())
        .map_err(backend)?
        .unwrap_or(0);
    if actual as u64 != append.expected {
        return Err(StoreError::Conflict {
            stream: append.stream.clone(),
            expected: append.expected,
            actual: actual as u64,
        });
    }
    let mut sequences = Vec::with_capacity(append.events.len());
    for (i, (event, partition)) in append.events.iter().enumerate() {
        let version = append.expected + i as u64 + 1;
        let sequence = insert_in(tx, event, Some((&append.stream, version)))?;
        if let Some(partition) = partition {
            add_outbox_entry(tx, sequence, partition)?;
        }
        sequences.push(sequence);
    }
    let version = append.expected + append.events.len() as u64;
    tx.prepare_cached(
        "INSERT INTO streams (stream, version) VALUES (?1, ?2)
         ON CONFLICT (stream) DO UPDATE SET version = excluded.version",
    )
    .and_then(|mut s| s.execute(params![append.stream, version as i64]))
    .map_err(backend)?;
    Ok(sequences)
}

/// Inserts one event; a duplicate id is that append's error, not the batch's.
fn insert(tx: &rusqlite::Transaction<'_>, e: &StoredEvent) -> Result<u64, StoreError> {
    insert_in(tx, e, None)
}

/// [`insert`], as event `version` of `stream` when it belongs to one.
fn insert_in(
    tx: &rusqlite::Transaction<'_>,
    e: &StoredEvent,
    stream: Option<(&str, u64)>,
) -> Result<u64, StoreError> {
    let metadata =
        serde_json::to_string(&e.metadata).map_err(|e| StoreError::Backend(e.to_string()))?;
    let inserted = tx
        .prepare_cached(
            "INSERT INTO events (id, name, version, kind, time, source, target, correlation_id,
                causation_id, depth, priority, metadata, payload, stream, stream_version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
             ON CONFLICT (id) DO NOTHING",
        )
        .and_then(|mut s| {
            s.execute(params![
                e.id.to_string(),
                e.name,
                e.version,
                e.kind,
                e.time as i64,
                e.source,
                e.target,
                e.correlation_id.to_string(),
                e.causation_id.map(|c| c.to_string()),
                e.depth,
                e.priority,
                metadata,
                e.payload,
                stream.map(|(s, _)| s),
                stream.map(|(_, v)| v as i64),
            ])
        })
        .map_err(backend)?;
    if inserted == 0 {
        let sequence: i64 = tx
            .query_row(
                "SELECT sequence FROM events WHERE id = ?1",
                params![e.id.to_string()],
                |r| r.get(0),
            )
            .map_err(backend)?;
        return Err(StoreError::Duplicate {
            id: e.id,
            sequence: sequence as u64,
        });
    }
    Ok(tx.last_insert_rowid() as u64)
}

fn checkpoint(
    tx: &rusqlite::Transaction<'_>,
    handler: &str,
    event: &str,
) -> Result<u64, StoreError> {
    let old: i64 = tx
        .query_row(
            "SELECT sequence FROM checkpoints WHERE handler = ?1 AND event = ?2",
            params![handler, event],
            |r| r.get(0),
        )
        .optional()
        .map_err(backend)?
        .unwrap_or(0);
    let first_missing: Option<i64> = tx
        .query_row(
            "SELECT MIN(e.sequence) FROM events e
             WHERE e.name = ?2 AND e.sequence > ?3
               AND NOT EXISTS (SELECT 1 FROM deliveries d
                               WHERE d.handler = (SELECT id FROM handlers WHERE name = ?1)
                                 AND d.sequence = e.sequence)",
            params![handler, event, old],
            |r| r.get(0),
        )
        .map_err(backend)?;
    let last: i64 = tx
        .query_row("SELECT COALESCE(MAX(sequence), 0) FROM events", [], |r| {
            r.get(0)
        })
        .map_err(backend)?;
    let new = first_missing.map_or(last, |s| s - 1).max(old);
    tx.execute(
        "INSERT INTO checkpoints (handler, event, sequence) VALUES (?1, ?2, ?3)
         ON CONFLICT (handler, event) DO UPDATE SET sequence = excluded.sequence",
        params![handler, event, new],
    )
    .map_err(backend)?;
    tx.execute(
        "DELETE FROM deliveries
         WHERE handler = (SELECT id FROM handlers WHERE name = ?1) AND sequence <= ?2",
        params![handler, new],
    )
    .map_err(backend)?;
    Ok(new as u64)
}

const COLUMNS: &str = "sequence, id, name, version, kind, time, source, target, correlation_id, \
                       causation_id, depth, priority, metadata, payload";

/// One row of the log: the event, or [`StoreError::Corrupt`] with its sequence when a
/// column does not read back as what was written. Only a row whose sequence is unreadable
/// fails the whole read.
fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let sequence: i64 = r.get(0)?;
    let corrupt = |reason: String| StoreError::Corrupt {
        sequence: sequence as u64,
        reason: events::text::clip(&reason, 80),
    };
    let column = |e: rusqlite::Error| corrupt(e.to_string());
    let parse_id = |s: &str| {
        s.parse::<EventId>()
            .map_err(|e| corrupt(format!("bad event id `{s}`: {e}")))
    };
    let event = (|| {
        let id: String = r.get(1).map_err(column)?;
        let correlation: String = r.get(8).map_err(column)?;
        let causation: Option<String> = r.get(9).map_err(column)?;
        let metadata: String = r.get(12).map_err(column)?;
        let mut e = StoredEvent::new(parse_id(&id)?, r.get::<_, String>(2).map_err(column)?);
        e.sequence = sequence as u64;
        e.version = r.get(3).map_err(column)?;
        e.kind = r.get(4).map_err(column)?;
        e.time = r.get::<_, i64>(5).map_err(column)? as u64;
        e.source = r.get(6).map_err(column)?;
        e.target = r.get(7).map_err(column)?;
        e.correlation_id = parse_id(&correlation)?;
        e.causation_id = causation.as_deref().map(parse_id).transpose()?;
        e.depth = r.get(10).map_err(column)?;
        e.priority = r.get(11).map_err(column)?;
        e.metadata =
            serde_json::from_str(&metadata).map_err(|e| corrupt(format!("bad metadata: {e}")))?;
        e.payload = r.get(13).map_err(column)?;
        Ok(e)
    })();
    Ok(event)
}

/// The `WHERE` clause and arguments of `query`, and the name pattern to match in Rust
/// (narrowed in SQL by its literal prefix).
fn where_clause(query: &StoreQuery) -> (String, Vec<rusqlite::types::Value>, Option<&str>) {
    use rusqlite::types::Value as V;
    // Through `parts()`, as a store in another crate reads a query.
    let query = query.parts();
    let mut sql = String::from(" WHERE 1 = 1");
    let mut args: Vec<V> = Vec::new();
    let mut arg = |sql: &mut String, clause: &str, v: V| {
        args.push(v);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(id) = query.id {
        arg(&mut sql, " AND id = ?", V::Text(id.to_string()));
    }
    // Exact names use the index; patterns narrow by their literal prefix, then match.
    let mut pattern = None;
    if let Some(name) = query.name {
        match literal_prefix(name) {
            None => arg(&mut sql, " AND name = ?", V::Text(name.to_owned())),
            Some(prefix) => {
                if !prefix.is_empty() {
                    arg(
                        &mut sql,
                        " AND substr(name, 1, length(?)) = ",
                        V::Text(prefix.clone()),
                    );
                    arg(&mut sql, "?", V::Text(prefix));
                }
                pattern = Some(name);
            }
        }
    }
    if let Some(kind) = query.kind {
        arg(&mut sql, " AND kind = ?", V::Text(kind.as_str().to_owned()));
    }
    if let Some(s) = query.source {
        arg(&mut sql, " AND source = ?", V::Text(s.to_owned()));
    }
    if let Some(t) = query.target {
        arg(&mut sql, " AND target = ?", V::Text(t.to_owned()));
    }
    if let Some(c) = query.correlation_id {
        arg(&mut sql, " AND correlation_id = ?", V::Text(c.to_string()));
    }
    if let Some(t) = query.since {
        arg(&mut sql, " AND time >= ?", V::Integer(t as i64));
    }
    if let Some(t) = query.until {
        arg(&mut sql, " AND time < ?", V::Integer(t as i64));
    }
    if let Some(s) = query.from_sequence {
        arg(&mut sql, " AND sequence >= ?", V::Integer(s as i64));
    }
    if let Some(s) = query.to_sequence {
        arg(&mut sql, " AND sequence <= ?", V::Integer(s as i64));
    }
    (sql, args, pattern)
}

/// A name pattern's literal prefix (before the first `*` or `>` segment), for the index.
fn literal_prefix(pattern: &str) -> Option<String> {
    let mut prefix = String::new();
    for seg in pattern.split('.') {
        if seg == "*" || seg == ">" {
            return Some(prefix);
        }
        prefix.push_str(seg);
        prefix.push('.');
    }
    None
}

impl EventStore for SqliteStore {
    fn append(&self, event: StoredEvent) -> StoreFuture<'_, u64> {
        self.ask(|reply| Command::Append(Box::new(event), reply))
    }

    fn record_delivery(&self, handler: &str, sequence: u64) {
        // A record lost with a stopped writer costs one more delivery after recovery.
        let _ = self.send(Command::Delivered(handler.into(), sequence));
    }

    fn read(&self, query: &StoreQuery) -> Result<Vec<Row>, StoreError> {
        let (clause, args, pattern) = where_clause(query);
        let query = query.parts();
        let mut sql = format!("SELECT {COLUMNS} FROM events{clause}");
        sql.push_str(match query.order {
            Order::OldestFirst => " ORDER BY sequence ASC",
            Order::NewestFirst => " ORDER BY sequence DESC",
        });
        if let (Some(limit), None) = (query.limit, pattern) {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        let conn = self.read_connection();
        let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), row)
            .map_err(backend)?;
        let mut out = Vec::new();
        for r in rows {
            let row = r.map_err(backend)?;
            // A corrupt row whose name cannot be read is kept: the caller hears of it.
            if let (Some(p), Ok(event)) = (pattern, &row) {
                if !events::store::pattern_matches(p, &event.name) {
                    continue;
                }
            }
            out.push(row);
            if query.limit.is_some_and(|l| out.len() >= l) {
                break;
            }
        }
        Ok(out)
    }

    fn count(&self, query: &StoreQuery) -> Result<usize, StoreError> {
        let (clause, args, pattern) = where_clause(query);
        let conn = self.read_connection();
        let limit = query.parts().limit.unwrap_or(usize::MAX);
        let Some(pattern) = pattern else {
            let n: i64 = conn
                .prepare_cached(&format!("SELECT COUNT(*) FROM events{clause}"))
                .and_then(|mut s| s.query_row(rusqlite::params_from_iter(args), |r| r.get(0)))
                .map_err(backend)?;
            return Ok((n as usize).min(limit));
        };
        // Names only, matched one at a time: no row is held.
        let mut stmt = conn
            .prepare_cached(&format!("SELECT name FROM events{clause}"))
            .map_err(backend)?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(args))
            .map_err(backend)?;
        let mut n = 0;
        while let Some(r) = rows.next().map_err(backend)? {
            let matched = match r.get_ref(0).map_err(backend)?.as_str() {
                Ok(name) => events::store::pattern_matches(pattern, name),
                Err(_) => true, // unreadable: counted, as `read` returns it
            };
            n += usize::from(matched);
            if n >= limit {
                break;
            }
        }
        Ok(n)
    }

    fn undelivered(
        &self,
        handler: &str,
        event: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let conn = self.read_connection();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM events e
                 WHERE e.name = ?2
                   AND e.sequence > MAX(?3, COALESCE((SELECT sequence FROM checkpoints
                                                      WHERE handler = ?1 AND event = ?2), 0))
                   AND NOT EXISTS (SELECT 1 FROM deliveries d
                                   WHERE d.handler = (SELECT id FROM handlers WHERE name = ?1)
                                     AND d.sequence = e.sequence)
                 ORDER BY e.sequence ASC
                 LIMIT ?4"
            ))
            .map_err(backend)?;
        let rows = stmt
            .query_map(
                params![
                    handler,
                    event,
                    after.min(i64::MAX as u64) as i64,
                    limit.min(i64::MAX as usize) as i64
                ],
                row,
            )
            .map_err(backend)?;
        rows.map(|r| r.map_err(backend)).collect()
    }

    fn checkpoint<'a>(&'a self, handler: &'a str, event: &'a str) -> StoreFuture<'a, u64> {
        self.ask(|reply| Command::Checkpoint(handler.into(), event.into(), reply))
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
        let conn = self.read_connection();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, letter FROM
                   (SELECT id, letter FROM dead_letters ORDER BY id DESC LIMIT ?1)
                 ORDER BY id",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![limit.min(i64::MAX as usize) as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)))
            })
            .map_err(backend)?;
        let mut letters = Vec::new();
        for r in rows {
            let (id, json) = r.map_err(backend)?;
            match json
                .map_err(|e| e.to_string())
                .and_then(|j| serde_json::from_str(&j).map_err(|e| e.to_string()))
            {
                Ok(letter) => letters.push(letter),
                Err(reason) => tracing::error!(
                    dead_letter = id, reason = %events::text::clip(&reason, 80),
                    "a stored dead letter is unreadable; it stays in the store"
                ),
            }
        }
        Ok(letters)
    }

    fn last_dead_letter_id(&self) -> Result<u64, StoreError> {
        // AUTOINCREMENT keeps the highest id ever inserted in `sqlite_sequence`.
        let id: Option<i64> = self
            .read_connection()
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'dead_letters'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        Ok(id.unwrap_or(0) as u64)
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        self.ask(Command::Flush)
    }

    fn outbox(&self) -> Option<&dyn Outbox> {
        Some(self)
    }

    fn keys(&self) -> Option<&dyn events::store::KeyStore> {
        Some(&self.keys)
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

    fn purge(&self, purge: events::store::Purge) -> StoreFuture<'_, u64> {
        self.ask(|reply| Command::Purge(Box::new(purge), reply))
    }

    fn lag(&self, handler: &str, event: &str) -> Result<(u64, Option<u64>), StoreError> {
        self.read_connection()
            .prepare_cached(
                "SELECT COUNT(*), MIN(e.time) FROM events e
                 WHERE e.name = ?2
                   AND e.sequence > COALESCE((SELECT sequence FROM checkpoints
                                              WHERE handler = ?1 AND event = ?2), 0)
                   AND NOT EXISTS (SELECT 1 FROM deliveries d
                                   WHERE d.handler = (SELECT id FROM handlers WHERE name = ?1)
                                     AND d.sequence = e.sequence)",
            )
            .and_then(|mut s| {
                s.query_row(params![handler, event], |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        r.get::<_, Option<i64>>(1)?.map(|t| t as u64),
                    ))
                })
            })
            .map_err(backend)
    }
}

/// Streams in the file: appends go through the group commit (each in a savepoint, checked
/// against the `streams` row inside the writer's immediate transaction, so two processes
/// sharing the file cannot both append at one version).
impl Streams for SqliteStore {
    fn append_to_stream(&self, append: StreamAppend) -> StoreFuture<'_, Vec<u64>> {
        self.ask(|reply| Command::AppendStream(Box::new(append), reply))
    }

    fn read_stream(&self, stream: &str, after: u64) -> Result<Vec<Row>, StoreError> {
        let conn = self.read_connection();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM events WHERE stream = ?1 AND stream_version > ?2
                 ORDER BY stream_version"
            ))
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![stream, after as i64], row)
            .map_err(backend)?;
        rows.map(|r| r.map_err(backend)).collect()
    }

    fn load(&self, stream: &str, shape: &str) -> Result<StreamLoad, StoreError> {
        let conn = self.read_connection();
        // One read transaction: the snapshot and the events after it are of one moment.
        let tx = conn.unchecked_transaction().map_err(backend)?;
        let snapshot = tx
            .prepare_cached("SELECT version, state FROM snapshots WHERE stream = ?1 AND shape = ?2")
            .and_then(|mut s| {
                s.query_row(params![stream, shape], |r| {
                    Ok(Snapshot::new(
                        stream,
                        r.get::<_, i64>(0)? as u64,
                        shape,
                        r.get::<_, String>(1)?,
                    ))
                })
                .optional()
            })
            .map_err(backend)?;
        let after = snapshot.as_ref().map_or(0, |s| s.version);
        let mut stmt = tx
            .prepare_cached(
                "SELECT sequence, name, version, payload FROM events
                 WHERE stream = ?1 AND stream_version > ?2 ORDER BY stream_version",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![stream, after as i64], |r| {
                let sequence: i64 = r.get(0)?;
                let event = (|| {
                    Ok::<_, rusqlite::Error>(StreamEvent::new(
                        r.get::<_, String>(1)?,
                        r.get::<_, u32>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                })();
                Ok(event.map_err(|e| StoreError::Corrupt {
                    sequence: sequence as u64,
                    reason: events::text::clip(&e.to_string(), 80),
                }))
            })
            .map_err(backend)?;
        let events = rows
            .map(|r| r.map_err(backend))
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        tx.finish().map_err(backend)?;
        Ok(StreamLoad::new(snapshot, events))
    }

    fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        let version: Option<i64> = self
            .read_connection()
            .prepare_cached("SELECT version FROM streams WHERE stream = ?1")
            .and_then(|mut s| s.query_row(params![stream], |r| r.get(0)).optional())
            .map_err(backend)?;
        Ok(version.unwrap_or(0) as u64)
    }

    fn snapshot(&self, stream: &str) -> Result<Option<Snapshot>, StoreError> {
        self.read_connection()
            .prepare_cached("SELECT version, shape, state FROM snapshots WHERE stream = ?1")
            .and_then(|mut s| {
                s.query_row(params![stream], |r| {
                    Ok(Snapshot::new(
                        stream,
                        r.get::<_, i64>(0)? as u64,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .optional()
            })
            .map_err(backend)
    }

    fn put_snapshot(&self, snapshot: Snapshot) -> StoreFuture<'_, ()> {
        self.ask(|reply| Command::PutSnapshot(Box::new(snapshot), reply))
    }
}

impl events::store::Inbox for SqliteStore {
    fn seen(&self, key: &events::outbox::InboxKey) -> Result<bool, StoreError> {
        self.read_connection()
            .prepare_cached("SELECT 1 FROM inbox WHERE handler = ?1 AND source = ?2 AND id = ?3")
            .and_then(|mut s| s.exists(params![key.handler, key.source, key.id]))
            .map_err(backend)
    }
}

/// The outbox of one process's file: the entries are claimed in sequence order (commit
/// order: one writer), and partitions, owners and leases have nothing to arbitrate.
impl Outbox for SqliteStore {
    fn append<'a>(&'a self, event: StoredEvent, partition: &'a str) -> StoreFuture<'a, u64> {
        self.ask(|reply| Command::AppendOutbox(Box::new(event), partition.into(), reply))
    }

    fn claim<'a>(
        &'a self,
        _owner: &'a str,
        _partition: &'a str,
        after: u64,
        limit: usize,
        _lease: std::time::Duration,
    ) -> StoreFuture<'a, Vec<Row>> {
        let rows = (|| {
            let conn = self.read_connection();
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM events WHERE sequence IN \
                     (SELECT sequence FROM outbox WHERE sequence > ?1 ORDER BY sequence LIMIT ?2) \
                     ORDER BY sequence"
                ))
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![after as i64, limit as i64], row)
                .map_err(backend)?;
            rows.map(|r| r.map_err(backend)).collect()
        })();
        Box::pin(std::future::ready(rows))
    }

    fn forwarded(&self, sequences: Vec<u64>) -> StoreFuture<'_, ()> {
        if sequences.is_empty() {
            return Box::pin(std::future::ready(Ok(())));
        }
        self.ask(|reply| Command::Forwarded(sequences, reply))
    }

    fn backlog(&self) -> Result<Backlog, StoreError> {
        let conn = self.read_connection();
        let (events, oldest): (i64, Option<i64>) = conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM outbox), \
                 (SELECT time FROM events WHERE sequence = (SELECT MIN(sequence) FROM outbox))",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(backend)?;
        Ok(Backlog::new(events as u64, oldest.map(|t| t as u64)))
    }
}
