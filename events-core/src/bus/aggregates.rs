//! Event-sourced aggregates on a bus with a store: [`Aggregates`], made by
//! [`Bus::aggregates`].

use std::marker::PhantomData;

use super::{Bus, PublishError};
use crate::aggregate::{Aggregate, Changes, Decision, STREAM_KEY, STREAM_VERSION_KEY, stream_name};
use crate::options::PublishOptions;
use crate::receipt::Receipt;
use crate::store::{Snapshot, StoreError, StreamAppend, Streams};

/// The repository of aggregate `A` on a bus: loads instances from their streams (snapshot,
/// then the events after it), runs commands, and appends and publishes what they decide.
///
/// ```no_run
/// # use events::{Event, aggregate};
/// # #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// # #[event(name = "doc.deposited")]
/// # struct Deposited { cents: u64 }
/// # #[derive(Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// # struct Account { balance: u64 }
/// # #[aggregate(name = "doc.account")]
/// # impl Account {
/// #     #[apply] fn deposited(&mut self, e: &Deposited) { self.balance += e.cents; }
/// #     #[command] fn deposit(&self, cents: u64) -> Result<Deposited, String> { Ok(Deposited { cents }) }
/// # }
/// # async fn run(bus: events::Bus) -> Result<(), Box<dyn std::error::Error>> {
/// let accounts = bus.aggregates::<Account>();
/// let done = accounts.execute(&"alice".to_string(), |a| a.deposit(500)).await?;
/// assert_eq!(done.state.balance, 500);
/// # Ok(()) }
/// ```
pub struct Aggregates<A: Aggregate> {
    bus: Bus,
    retries: u32,
    snapshot_every: u64,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate> Clone for Aggregates<A> {
    fn clone(&self) -> Self {
        Aggregates {
            bus: self.bus.clone(),
            retries: self.retries,
            snapshot_every: self.snapshot_every,
            _aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate> std::fmt::Debug for Aggregates<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregates")
            .field("aggregate", &A::NAME)
            .field("retries", &self.retries)
            .field("snapshot_every", &self.snapshot_every)
            .finish_non_exhaustive()
    }
}

/// An aggregate instance as loaded: its state and its stream's version.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Loaded<A> {
    /// The state.
    pub state: A,
    /// How many events of its stream the state includes.
    pub version: u64,
    /// The version of the snapshot it started from, if one was used.
    pub snapshot: Option<u64>,
    /// How many events were read after the snapshot (or from the start).
    pub read: u64,
}

/// A command that was run and whose events were appended and published.
#[derive(Debug)]
#[non_exhaustive]
pub struct Executed<A> {
    /// The state after the new events.
    pub state: A,
    /// The stream's version after them.
    pub version: u64,
    /// One receipt per new event, in order (none when the command decided nothing).
    pub receipts: Vec<Receipt>,
    /// How many times the command ran: 1, plus one per conflict retried.
    pub attempts: u32,
}

/// Why an aggregate could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The bus has no store, or its store keeps no streams.
    #[error("aggregates need a store that keeps streams (memory, SQLite or PostgreSQL)")]
    NoStreams,
    /// The id cannot name a stream.
    #[error("invalid aggregate id: {0}")]
    InvalidId(String),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An event of the stream cannot be applied: it does not deserialize, cannot be
    /// upcast, or the aggregate has no `#[apply]` for it. Nothing was loaded.
    #[error("event {version} of stream `{stream}` cannot be applied: {reason}")]
    Unreadable {
        /// The stream.
        stream: String,
        /// The event's version in the stream.
        version: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Why a command's events were not appended: nothing of them was stored or published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<E> {
    /// The command refused: its own error.
    #[error("the command was refused: {0}")]
    Rejected(E),
    /// Other writers kept appending first: every attempt conflicted.
    #[error(
        "stream `{stream}` kept changing under the command: {attempts} attempt(s) conflicted \
         (last: expected version {expected}, found {actual})"
    )]
    Conflict {
        /// The stream.
        stream: String,
        /// The version the last attempt read.
        expected: u64,
        /// The version the stream was at.
        actual: u64,
        /// How many times the command ran.
        attempts: u32,
    },
    /// The aggregate could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A decided event could not be published (the bus refused it: stopped, too deep, an
    /// event that leaves the process without the outbox, ...).
    #[error(transparent)]
    Publish(PublishError),
    /// The store could not append them.
    #[error(transparent)]
    Store(StoreError),
}

impl Bus {
    /// The repository of aggregate `A`: see [`Aggregates`]. Needs a store that keeps
    /// streams (every store of this crate does).
    pub fn aggregates<A: Aggregate>(&self) -> Aggregates<A> {
        Aggregates {
            bus: self.clone(),
            retries: 3,
            snapshot_every: A::SNAPSHOT_EVERY,
            _aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate> Aggregates<A> {
    /// How many times [`execute`](Self::execute) reloads and runs a command again after a
    /// conflict (default 3; 0: never).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Takes a snapshot when an append brings a stream past a multiple of `every` events
    /// (0: only [`snapshot`](Self::snapshot)); overrides `#[aggregate(snapshot_every = ..)]`.
    pub fn snapshot_every(mut self, every: u64) -> Self {
        self.snapshot_every = every;
        self
    }

    fn streams(&self) -> Result<&dyn Streams, LoadError> {
        self.bus
            .inner
            .store
            .as_deref()
            .and_then(|s| s.streams())
            .ok_or(LoadError::NoStreams)
    }

    /// Loads instance `id`: its snapshot, if one of the state's current shape was taken,
    /// and the stream's events after it, read at once, each upcast to the version its
    /// `#[apply]` takes. A stream never written loads as the default state at version 0.
    ///
    /// # Errors
    /// [`LoadError`]: no streams, an invalid id, an unreadable store or event.
    pub fn load(&self, id: &A::Id) -> Result<Loaded<A>, LoadError> {
        let stream = stream_name::<A>(id).map_err(LoadError::InvalidId)?;
        self.load_stream(&stream)
    }

    fn load_stream(&self, stream: &str) -> Result<Loaded<A>, LoadError> {
        // Personal data in the stream's events is opened with the bus's keys: a forgotten
        // subject's values read as forgotten.
        self.bus.unsealed(|| self.load_stream_unsealed(stream))
    }

    fn load_stream_unsealed(&self, stream: &str) -> Result<Loaded<A>, LoadError> {
        let streams = self.streams()?;
        let load = streams.load(stream, A::shape())?;
        let (state, snapshot, load) = match load
            .snapshot
            .as_ref()
            .map(|s| (s.version, serde_json::from_str::<A>(&s.state)))
        {
            None => (A::default(), None, load),
            Some((version, Ok(state))) => (state, Some(version), load),
            Some((version, Err(e))) => {
                let error = crate::aggregate::without_values(&e);
                tracing::warn!(stream, version, %error, "a snapshot does not deserialize; the stream is read from the start");
                // No snapshot has an empty shape: the whole stream.
                (A::default(), None, streams.load(stream, "")?)
            }
        };
        let mut state = state;
        let start = snapshot.unwrap_or(0);
        let mut version = start;
        for event in load.events {
            version += 1;
            let applied = event
                .map_err(|e| e.to_string())
                .and_then(|event| state.apply_stored(&event.name, event.version, &event.payload));
            if let Err(reason) = applied {
                return Err(LoadError::Unreadable {
                    stream: stream.to_owned(),
                    version,
                    reason,
                });
            }
        }
        Ok(Loaded {
            state,
            version,
            snapshot,
            read: version - start,
        })
    }

    /// Loads `id`, runs `command` on its state, and appends what it decides at the version
    /// it loaded, publishing the new events like any other (one envelope each, lineage from
    /// the handler this runs in, if any): on a conflict (another writer appended first) it
    /// waits a little (at random, up to 1 ms, doubling with each attempt up to 32 ms),
    /// reloads and runs the command again, up to [`retries`](Self::retries) times.
    ///
    /// Each new event carries metadata `stream` (`<aggregate>-<id>`) and `streamversion`
    /// (its version in the stream, as text): what a projection keys its rows by, and what
    /// other services see as CloudEvents extensions.
    ///
    /// The events are stored and their outbox entries written in one transaction; this
    /// process's handlers of them run once it has committed (durable ones are recovered
    /// after a crash, as for [`Bus::publish`]); events that leave the process go through
    /// the outbox ([`BusBuilder::outbox`](crate::BusBuilder::outbox)).
    ///
    /// # Errors
    /// [`CommandError`]: the command's own refusal, conflicts past the retries, a load,
    /// publish or store error. Nothing of a failed command is stored or published.
    pub async fn execute<D, E>(
        &self,
        id: &A::Id,
        command: impl FnMut(&A) -> Result<D, E>,
    ) -> Result<Executed<A>, CommandError<E>>
    where
        D: Decision<A>,
    {
        self.execute_with(id, PublishOptions::new(), command).await
    }

    /// [`execute`](Self::execute) with publish options for the new events (a correlation
    /// id, metadata, ...).
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn execute_with<D, E>(
        &self,
        id: &A::Id,
        options: PublishOptions,
        mut command: impl FnMut(&A) -> Result<D, E>,
    ) -> Result<Executed<A>, CommandError<E>>
    where
        D: Decision<A>,
    {
        let stream =
            stream_name::<A>(id).map_err(|e| CommandError::Load(LoadError::InvalidId(e)))?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let loaded = self.load_stream(&stream)?;
            let decision = command(&loaded.state).map_err(CommandError::Rejected)?;
            match self
                .append_decision(&stream, loaded, decision, options.clone(), attempts)
                .await
            {
                Err(CommandError::Conflict {
                    stream: s,
                    expected,
                    actual,
                    ..
                }) => {
                    if attempts > self.retries {
                        return Err(CommandError::Conflict {
                            stream: s,
                            expected,
                            actual,
                            attempts,
                        });
                    }
                    tracing::debug!(stream = %s, expected, actual, attempts, "a command conflicted; it runs again on the reloaded state");
                    // A short random wait, growing with the attempts: two writers that keep
                    // colliding fall out of step.
                    let ceiling = 1u64 << attempts.min(6);
                    let random = crate::EventId::new().as_uuid().as_u64_pair().1;
                    tokio::time::sleep(std::time::Duration::from_micros(random % (ceiling * 500)))
                        .await;
                }
                done => return done,
            }
        }
    }

    /// Appends `decision` to instance `id` if its stream is at version `expected`, without
    /// a retry: for a caller that keeps the state itself (loaded with
    /// [`load`](Self::load)).
    ///
    /// # Errors
    /// [`CommandError::Conflict`] when the stream is not at `expected`; else as
    /// [`execute`](Self::execute).
    pub async fn append<D: Decision<A>>(
        &self,
        id: &A::Id,
        loaded: Loaded<A>,
        decision: D,
    ) -> Result<Executed<A>, CommandError<std::convert::Infallible>> {
        let stream =
            stream_name::<A>(id).map_err(|e| CommandError::Load(LoadError::InvalidId(e)))?;
        self.append_decision(&stream, loaded, decision, PublishOptions::new(), 1)
            .await
    }

    async fn append_decision<D: Decision<A>, E>(
        &self,
        stream: &str,
        loaded: Loaded<A>,
        decision: D,
        options: PublishOptions,
        attempts: u32,
    ) -> Result<Executed<A>, CommandError<E>> {
        let streams = self.streams()?;
        let Loaded {
            mut state, version, ..
        } = loaded;
        let mut changes = Changes::new(&mut state);
        decision.decide(&mut changes);
        let events = changes.into_events();
        if events.is_empty() {
            return Ok(Executed {
                state,
                version,
                receipts: Vec::new(),
                attempts,
            });
        }
        let mut staged = self.bus.stage();
        for (i, event) in events.into_iter().enumerate() {
            // Where it belongs, for handlers and other services (CloudEvents extensions).
            let options = options
                .clone()
                .metadata(STREAM_KEY, stream)
                .metadata(STREAM_VERSION_KEY, (version + i as u64 + 1).to_string());
            staged
                .publish_boxed(event, options)
                .map_err(CommandError::Publish)?;
        }
        let count = staged.len() as u64;
        let sequences = streams
            .append_to_stream(StreamAppend::new(stream, version, staged.stream_rows()))
            .await
            .map_err(|e| match e {
                StoreError::Conflict {
                    stream,
                    expected,
                    actual,
                } => CommandError::Conflict {
                    stream,
                    expected,
                    actual,
                    attempts,
                },
                e => CommandError::Store(e),
            })?;
        let receipts = staged.committed(&sequences).await;
        let new_version = version + count;
        let every = self.snapshot_every;
        if every > 0 && version / every != new_version / every {
            self.put_snapshot(streams, stream, &state, new_version)
                .await;
        }
        Ok(Executed {
            state,
            version: new_version,
            receipts,
            attempts,
        })
    }

    async fn put_snapshot(&self, streams: &dyn Streams, stream: &str, state: &A, version: u64) {
        match state_json(state) {
            Ok(json) => {
                if let Err(e) = streams
                    .put_snapshot(Snapshot::new(stream, version, A::shape(), json))
                    .await
                {
                    tracing::warn!(stream, version, error = %e, "a snapshot could not be stored; loading reads more events until the next one");
                }
            }
            Err(e) => {
                tracing::warn!(stream, version, error = %e, "the state does not serialize; no snapshot");
            }
        }
    }

    /// Takes a snapshot of instance `id` now (loaded as [`load`](Self::load) would); the
    /// version it is at.
    ///
    /// # Errors
    /// As [`load`](Self::load), or when the store cannot keep it.
    pub async fn snapshot(&self, id: &A::Id) -> Result<u64, LoadError> {
        let stream = stream_name::<A>(id).map_err(LoadError::InvalidId)?;
        let loaded = self.load_stream(&stream)?;
        let json = state_json(&loaded.state).map_err(|e| LoadError::Unreadable {
            stream: stream.clone(),
            version: loaded.version,
            reason: format!("the state does not serialize: {e}"),
        })?;
        self.streams()?
            .put_snapshot(Snapshot::new(&stream, loaded.version, A::shape(), json))
            .await?;
        Ok(loaded.version)
    }
}

/// A state as a snapshot keeps it. A state that holds `Personal` values fails: a snapshot
/// has no data subject to seal them with, and would keep them in plain text (the state is
/// then always rebuilt from its events, whose personal data is sealed).
fn state_json<A: serde::Serialize>(state: &A) -> Result<String, serde_json::Error> {
    crate::personal::at_rest(None, NO_SNAPSHOT, || serde_json::to_string(state))
}

const NO_SNAPSHOT: &str = "the state holds `Personal` data, which a snapshot would keep in \
                           plain text; such a state is rebuilt from its events instead";
