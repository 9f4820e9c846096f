//! The `events` command line: look at and act on what a service keeps, without writing Rust.
//!
//! ```text
//! events [--store URL | --api URL --token TOKEN] [--json] <command>
//!
//!   store query [--name P] [--correlation-id ID] [--since 1h] [--after SEQ] [--limit N]
//!   dead-letters list [--event P] [--handler H] [--permanent true|false] [--limit N]
//!   dead-letters show ID
//!   dead-letters retry (ID [--patch JSON|@FILE] | --all [filters])
//!   dead-letters discard (ID | --all [filters])
//!   replay HANDLER          rebuild a projection, with a progress bar and an ETA
//!   lag [--max-behind N] [--max-age 5m]
//!   pause HANDLER / resume HANDLER
//!   tail [PATTERN] [--from-start]
//!   docs --out DIR
//!   compat check SNAPSHOT / compat save SNAPSHOT
//! ```
//!
//! Every command is a call of the admin API ([`events_http::admin`]): with `--api`, of a
//! running service over HTTP; with `--store` (a SQLite file as `sqlite:PATH`, or a
//! `postgresql://` URL), of a router over a bus this process builds on that store, with no
//! network. So both give the same answers, and `--json` prints exactly what the API
//! serves (one JSON document per line for lists).
//!
//! On the store directly, the command line knows the events and handlers linked into its
//! binary. Link it into one of yours, beside your events and handlers, to use them all
//! (feature `cli` of `events`):
//!
//! ```no_run
//! // src/bin/events.rs
//! fn main() -> std::process::ExitCode {
//!     events_cli::Cli::new(events::Bus::builder()).run()
//! }
//! ```
//!
//! The stand-alone `events` binary of this crate links none: it is for `--api`, and for
//! what needs no types on a store. Retrying a dead letter and rebuilding a projection run
//! handlers: on the store directly they run in this process (the handlers linked here);
//! with `--api`, in the service.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | done, and what it checked failed: a breaking schema change, lag past `--max-behind`/`--max-age`, a retried letter that failed again, a rebuild that ended in an error |
//! | 2 | the command line is wrong (unknown command or option, a bad value, `--store` without a store) |
//! | 3 | not found: no such dead letter, handler or event |
//! | 4 | refused: a bad credential (401/403), a conflict (409), an edited payload the schema refuses (422) |
//! | 5 | unavailable: the store or the service could not be reached, read or written |
//! | 6 | unknown: a request that changes something (retry, discard, pause, resume, replay) was sent and no answer came; it may have been carried out |

mod client;
mod commands;

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use events::BusBuilder;

use client::Admin;

/// The `events` command line over the events and handlers of `builder` (see the
/// [crate docs](crate)).
pub struct Cli {
    builder: BusBuilder,
    rebuildable: Vec<(String, Arc<dyn Fn() + Send + Sync>)>,
}

impl std::fmt::Debug for Cli {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cli")
            .field(
                "rebuildable",
                &self.rebuildable.iter().map(|(h, _)| h).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// What an exit code means (see the [crate docs](crate#exit-codes)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exit {
    /// 0: done.
    Ok = 0,
    /// 1: done, and what it checked failed.
    Check = 1,
    /// 2: the command line is wrong.
    Usage = 2,
    /// 3: no such dead letter, handler or event.
    NotFound = 3,
    /// 4: the service or store refused.
    Refused = 4,
    /// 5: the store or the service could not be reached, read or written.
    Unavailable = 5,
    /// 6: a request that changes something was sent and no answer came: it may have been
    /// carried out.
    Unknown = 6,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// A command that did not end well: its exit code and what to tell the user.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) exit: Exit,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure {
            exit,
            message: message.into(),
        }
    }
}

impl Cli {
    /// The command line over the events and handlers `builder` builds a bus of (its store
    /// is replaced by `--store`'s, when given). Give it a builder with your events and
    /// handlers, their states and policies, but no transport and no outbox: with `--store`
    /// the bus it builds runs in this process, and a transport's forwarder would start
    /// sending. It never calls `recover`, so no handler runs unless a command asks (a
    /// retry, a replay).
    pub fn new(builder: BusBuilder) -> Cli {
        Cli {
            builder,
            rebuildable: Vec::new(),
        }
    }

    /// `events replay handler` may rebuild durable handler `handler` on the store directly;
    /// `reset` clears what it built first (as `HttpOptions::rebuildable`).
    #[must_use]
    pub fn rebuildable(
        mut self,
        handler: impl Into<String>,
        reset: impl Fn() + Send + Sync + 'static,
    ) -> Cli {
        self.rebuildable.push((handler.into(), Arc::new(reset)));
        self
    }

    /// Runs the command of this process's arguments; the exit code to end with.
    pub fn run(self) -> ExitCode {
        self.run_from(std::env::args_os())
    }

    /// Runs the command of `args` (the first is the program's name).
    pub fn run_from(self, args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> ExitCode {
        let parsed = match Command::try_parse_from(args) {
            Ok(parsed) => parsed,
            Err(e) => {
                let _ = e.print();
                return if e.use_stderr() {
                    Exit::Usage.into()
                } else {
                    Exit::Ok.into()
                };
            }
        };
        let json = parsed.global.json;
        match self.execute(parsed) {
            Ok(exit) => exit.into(),
            Err(failure) if failure.exit == Exit::Ok => Exit::Ok.into(),
            Err(failure) => {
                if json {
                    eprintln!(
                        "{}",
                        serde_json::json!({ "error": failure.message, "exit": failure.exit as u8 })
                    );
                } else {
                    eprintln!("error: {}", commands::printable(&failure.message));
                }
                failure.exit.into()
            }
        }
    }

    fn execute(self, parsed: Command) -> Result<Exit, Failure> {
        let admin = self.admin(&parsed.global)?;
        commands::run(&admin, &parsed.global, parsed.command)
    }

    /// The admin API the flags point at.
    fn admin(self, global: &Global) -> Result<Admin, Failure> {
        if let Some(api) = &global.api {
            if !api.starts_with("http://") {
                return Err(Failure::new(
                    Exit::Usage,
                    "`--api` is an `http://host:port` address (put TLS in front of the service, or use a tunnel)",
                ));
            }
            return Ok(Admin::remote(
                api,
                global.token.clone(),
                Duration::from_secs(global.timeout),
            ));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Failure::new(Exit::Unavailable, format!("no async runtime: {e}")))?;
        let mut builder = self.builder;
        if let Some(url) = &global.store {
            let store = {
                let _guard = runtime.enter();
                open_store(url, global.schema.as_deref())?
            };
            builder = store(builder);
        }
        let bus = {
            let _guard = runtime.enter();
            builder.build().map_err(|e| {
                Failure::new(Exit::Unavailable, format!("the bus cannot be built: {e}"))
            })?
        };
        if bus.store().is_none() {
            return Err(Failure::new(
                Exit::Usage,
                "no store: give `--store sqlite:PATH` or `--store postgresql://..` (or EVENTS_STORE), or `--api http://..` for a running service",
            ));
        }
        let token = format!("cli-{}", events::EventId::new());
        let mut options = events_http::HttpOptions::new().admin(&token);
        for (handler, reset) in self.rebuildable {
            options = options.rebuildable(handler, move || reset());
        }
        let router = {
            let _guard = runtime.enter();
            events_http::router(bus, options)
        };
        Ok(Admin::Local {
            router,
            token,
            runtime,
        })
    }
}

/// Puts a store on a builder.
type WithStore = Box<dyn FnOnce(BusBuilder) -> BusBuilder>;

/// Opens the store `url` names: `sqlite:PATH` (an existing file) or `postgres://..` /
/// `postgresql://..`.
fn open_store(url: &str, schema: Option<&str>) -> Result<WithStore, Failure> {
    let unavailable = |e: &dyn std::fmt::Display| {
        Failure::new(
            Exit::Unavailable,
            format!("the store cannot be opened: {e}"),
        )
    };
    if let Some(path) = url.strip_prefix("sqlite:") {
        #[cfg(feature = "sqlite")]
        {
            let path = path.strip_prefix("//").unwrap_or(path);
            // Never a new, empty store in place of a mistyped path.
            if !std::path::Path::new(path).is_file() {
                return Err(Failure::new(
                    Exit::Unavailable,
                    format!("no store file at {}", commands::printable(path)),
                ));
            }
            let store = events_sqlite::SqliteStore::open(path).map_err(|e| unavailable(&e))?;
            return Ok(Box::new(move |b: BusBuilder| b.store(store)));
        }
        #[cfg(not(feature = "sqlite"))]
        {
            let _ = path;
            return Err(Failure::new(
                Exit::Usage,
                "this binary was built without SQLite (feature `sqlite` of events-cli)",
            ));
        }
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        {
            let mut options = events_postgres::PostgresOptions::new();
            if let Some(schema) = schema {
                options = options.schema(schema);
            }
            let store = events_postgres::PostgresStore::connect(url, options)
                .map_err(|e| unavailable(&e))?;
            return Ok(Box::new(move |b: BusBuilder| b.store(store)));
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = schema;
            return Err(Failure::new(
                Exit::Usage,
                "this binary was built without PostgreSQL (feature `postgres` of events-cli)",
            ));
        }
    }
    Err(Failure::new(
        Exit::Usage,
        "`--store` is `sqlite:PATH` or a `postgresql://` URL",
    ))
}

#[derive(Parser)]
#[command(
    name = "events",
    version,
    about = "Look at and act on what an `events` service keeps: its store, dead letters, durable handlers and documents",
    after_help = "Exit codes: 0 done; 1 a check failed (breaking change, lag past the limit, a retry that failed again); \
                  2 bad command line; 3 not found; 4 refused (credential, conflict, invalid payload); 5 store or service unavailable; \
                  6 a change was sent and no answer came (it may have been carried out)"
)]
struct Command {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Commands,
}

/// The options every command takes.
#[derive(Args)]
pub(crate) struct Global {
    /// The store: `sqlite:PATH` or `postgresql://user@host/db`.
    #[arg(long, env = "EVENTS_STORE", global = true, conflicts_with = "api")]
    store: Option<String>,
    /// The PostgreSQL schema the store's tables are in (`PostgresOptions::schema`).
    #[arg(long, env = "EVENTS_STORE_SCHEMA", global = true)]
    schema: Option<String>,
    /// A running service's admin API: `http://host:port`.
    #[arg(long, env = "EVENTS_API", global = true)]
    api: Option<String>,
    /// The admin token of `--api` (`HttpOptions::admin`).
    #[arg(
        long,
        env = "EVENTS_ADMIN_TOKEN",
        global = true,
        hide_env_values = true
    )]
    token: Option<String>,
    /// Seconds to wait for an answer of `--api`.
    #[arg(long, default_value_t = 30, global = true)]
    timeout: u64,
    /// JSON for scripts: one document per line, as the admin API serves it.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Subcommand)]
pub(crate) enum Commands {
    /// The event store.
    #[command(subcommand)]
    Store(StoreCommand),
    /// The dead letters: what failed for good.
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(LetterCommand),
    /// Rebuilds a projection (a durable handler) from the start of the log.
    Replay {
        /// The durable handler, as `crate::module::function`.
        handler: String,
    },
    /// How far each durable handler is behind.
    Lag {
        /// Exit with 1 when a handler has more unhandled events than this.
        #[arg(long)]
        max_behind: Option<u64>,
        /// Exit with 1 when a handler's oldest unhandled event is older than this (`30s`, `5m`).
        #[arg(long, value_parser = humantime::parse_duration)]
        max_age: Option<Duration>,
    },
    /// Pauses a durable handler of a running service: its events wait in the store.
    Pause {
        /// The durable handler.
        handler: String,
    },
    /// Resumes a paused durable handler: it catches up, then takes live events again.
    Resume {
        /// The durable handler.
        handler: String,
    },
    /// Prints stored events as they arrive, until interrupted.
    Tail {
        /// Only events whose name matches (`order.*`, `order.>`).
        pattern: Option<String>,
        /// From the first stored event, not from now.
        #[arg(long)]
        from_start: bool,
        /// How often to look, in milliseconds.
        #[arg(long, default_value_t = 500)]
        interval_ms: u64,
    },
    /// Writes the generated documents: JSON Schemas, catalog.md, asyncapi.json, index.html.
    Docs {
        /// The directory (created when missing).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Event schema compatibility against a saved snapshot.
    #[command(subcommand)]
    Compat(CompatCommand),
}

#[derive(Subcommand)]
pub(crate) enum StoreCommand {
    /// Stored events, oldest first.
    Query(QueryArgs),
}

#[derive(Args)]
pub(crate) struct QueryArgs {
    /// Only events whose name matches (`order.placed`, `order.*`, `order.>`).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Only events of this correlation id.
    #[arg(long)]
    pub(crate) correlation_id: Option<String>,
    /// Only events published in this last while (`90s`, `1h`, `2d`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) since: Option<Duration>,
    /// Only events after this sequence.
    #[arg(long)]
    pub(crate) after: Option<u64>,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    pub(crate) limit: u64,
    /// Newest first.
    #[arg(long)]
    pub(crate) newest_first: bool,
}

#[derive(Subcommand)]
pub(crate) enum LetterCommand {
    /// The dead letters, oldest first, payloads redacted.
    List(LetterFilter),
    /// One dead letter.
    Show {
        /// Its id.
        id: u64,
    },
    /// Runs a letter's handler again (in the service with `--api`).
    Retry {
        /// Its id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<u64>,
        /// Edits the payload first: a JSON Merge Patch (RFC 7396), or `@FILE`.
        #[arg(long, conflicts_with = "all")]
        patch: Option<String>,
        /// Every letter the filters select.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: LetterFilter,
    },
    /// Removes a letter, or every letter the filters select.
    Discard {
        /// Its id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<u64>,
        /// Every letter the filters select.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: LetterFilter,
    },
}

#[derive(Args, Clone)]
pub(crate) struct LetterFilter {
    /// Only letters of this event (name or pattern).
    #[arg(long)]
    pub(crate) event: Option<String>,
    /// Only letters of this handler.
    #[arg(long)]
    pub(crate) handler: Option<String>,
    /// Only permanent (`true`) or exhausted (`false`) failures.
    #[arg(long)]
    pub(crate) permanent: Option<bool>,
    /// At most this many.
    #[arg(long, default_value_t = 1000)]
    pub(crate) limit: u64,
}

#[derive(Subcommand)]
pub(crate) enum CompatCommand {
    /// Exits with 1 and lists every breaking change against the snapshot.
    Check {
        /// The snapshot (`events::compat::snapshot`, or `events compat save`).
        snapshot: std::path::PathBuf,
    },
    /// Writes the schemas now as a snapshot.
    Save {
        /// Where.
        snapshot: std::path::PathBuf,
    },
}
