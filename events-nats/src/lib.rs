//! The bus on NATS JetStream (feature `nats`): the same events and handlers across processes
//! and machines; only the builder changes.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use events_nats::{Nats, NatsOptions}; // `events::nats` in an application
//! let nats = Nats::connect("127.0.0.1:4222", NatsOptions::new("shop")).await?;
//! let bus = events::Bus::builder().transport(nats).build()?;
//! let consumers = bus.consume().await?; // this process now takes its share of the work
//! # drop(consumers); Ok(()) }
//! ```
//!
//! | | |
//! |---|---|
//! | wire format | CloudEvents 1.0 JSON, structured mode: the whole envelope (id, source, time, correlation and causation ids, metadata as extensions) travels in the body, so one parser (the ingest path) reads it; `Nats-Msg-Id` (the event id) and `traceparent` (when the event has one) are headers too |
//! | subject | `<prefix>.<event name>`, e.g. `shop.order.placed` |
//! | stream | one per prefix (`NatsOptions::stream`, default the prefix in capitals), subjects `<prefix>.>`, created at connect or checked: a different existing stream is an error, never changed; dead letters go to a second stream, `<STREAM>_DLQ`, subjects `<prefix>-dlq.>` |
//! | publish | resolves once JetStream has stored the event (its ack); a second publish of one event id within the duplicate window is stored once; no ack within [`NatsOptions::publish_timeout`] is [`PublishError::Unconfirmed`](events::PublishError::Unconfirmed) (it may have been stored: publish it again with its id) |
//! | connection | credentials ([`NatsOptions::user_and_password`] or in the URL, [`token`](NatsOptions::token), [`nkey`](NatsOptions::nkey), [`credentials_file`](NatsOptions::credentials_file)) and TLS ([`root_certificates`](NatsOptions::root_certificates), [`client_certificate`](NatsOptions::client_certificate), [`require_tls`](NatsOptions::require_tls)); refused credentials are [`NatsError::Auth`] at once, an unreachable server [`NatsError::Connect`] within [`connect_timeout`](NatsOptions::connect_timeout) |
//! | consumers | one durable pull consumer per handler, named after it: processes running the same handler share its messages (competing consumers), different handlers each get every event |
//! | received messages | go through the ingest path (size and depth limits, JSON Schema, upcasting): a foreign or malformed message is terminated and dead-lettered with the reason; it never stops the consumer |
//! | fates | success or filtered: ack; transient error: nak with the retry policy's delay, until `max_deliver` (the policy's retries + 1); permanent error, panic, or retries exhausted: term and dead letter; long handlers send in-progress every half `ack_wait` |
//! | local events | `NatsOptions::local::<E>()`: published and handled in this process only, no network |
//!
//! Requests ([`Bus::request`](events::Bus::request)) stay in the process. The blocking API
//! cannot wait for JetStream's ack and refuses events that would go over NATS.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use events::Event;
use events::text::{clip, header_value, readable_header_value};
use events::transport::{
    BoxFuture, Consumer, ConsumerSpec, Delivery, Outgoing, SendError, Sent, Settle, Transport,
    TransportError, Wire,
};
use futures_util::StreamExt;

pub use events::transport::Consumers;

/// When the stream lets go of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Retention {
    /// When a limit (age, bytes, count) says so (the default): a handler added later can
    /// still read the history.
    #[default]
    Limits,
    /// Once every consumer that existed when it arrived has acknowledged it.
    Interest,
}

/// How an event is laid out in a NATS message (the CloudEvents NATS binding's two modes).
/// Received messages are read in either mode, whichever this bus sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ContentMode {
    /// The whole CloudEvent as JSON in the body, `Content-Type: application/cloudevents+json`
    /// (the default).
    #[default]
    Structured,
    /// The attributes as `ce-<name>` headers (percent-encoded), the data as the body,
    /// `Content-Type: application/json`.
    Binary,
}

/// How the bus uses JetStream: subject prefix, stream and its limits, consumers' ack wait,
/// and which events stay local.
#[derive(Debug, Clone)]
#[must_use]
pub struct NatsOptions {
    prefix: String,
    stream: String,
    max_age: Duration,
    max_bytes: i64,
    max_messages: i64,
    duplicate_window: Duration,
    memory: bool,
    retention: Retention,
    ack_wait: Duration,
    prefetch: usize,
    local: HashSet<&'static str>,
    mode: ContentMode,
    report_unrouted: bool,
    /// Bodies longer than this are sent zstd-compressed (`None`: never).
    compress_above: Option<usize>,
    /// The most a compressed body may expand to on receipt.
    max_decompressed: usize,
    /// Signs every message sent.
    signer: Option<events::security::SigningKey>,
    /// Verifies every message received: unsigned or badly signed ones are dead-lettered.
    keyring: Option<Arc<events::security::Keyring>>,
    connection: Connection,
}

/// How the bus reaches the server: credentials, TLS and timeouts. Its `Debug` shows which
/// kind of credentials, never their text.
#[derive(Clone)]
struct Connection {
    auth: Option<Auth>,
    root_certificates: Vec<PathBuf>,
    client_certificate: Option<(PathBuf, PathBuf)>,
    require_tls: bool,
    connect_timeout: Duration,
    publish_timeout: Duration,
}

/// Credentials, one kind at a time (the last one set wins).
#[derive(Clone)]
enum Auth {
    UserPassword(String, String),
    Token(String),
    NKey(String),
    CredentialsFile(PathBuf),
    Credentials(String),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = self.auth.as_ref().map(|a| match a {
            Auth::UserPassword(user, _) => format!("user `{user}` and a password"),
            Auth::Token(_) => "a token".to_owned(),
            Auth::NKey(_) => "an nkey seed".to_owned(),
            Auth::CredentialsFile(path) => format!("credentials file {}", path.display()),
            Auth::Credentials(_) => "credentials".to_owned(),
        });
        f.debug_struct("Connection")
            .field("auth", &auth)
            .field("root_certificates", &self.root_certificates)
            .field(
                "client_certificate",
                &self.client_certificate.as_ref().map(|(cert, _)| cert),
            )
            .field("require_tls", &self.require_tls)
            .field("connect_timeout", &self.connect_timeout)
            .field("publish_timeout", &self.publish_timeout)
            .finish()
    }
}

impl NatsOptions {
    /// The subject prefix (for the AsyncAPI document).
    fn prefix_name(&self) -> &str {
        &self.prefix
    }
    /// The stream's name: [`stream`](Self::stream)'s, else the prefix in upper case with
    /// every other character `_` (`orders-eu` → `ORDERS_EU`).
    pub fn stream_name(&self) -> &str {
        &self.stream
    }
    /// How sent events are laid out.
    fn mode(&self) -> ContentMode {
        self.mode
    }
    /// Subjects `<prefix>.<event name>` in stream `<PREFIX>` (the prefix in capitals, `.`
    /// and `-` as `_`); no age, size or count limit; a 2-minute duplicate window; file
    /// storage; consumers' ack wait 30 s and prefetch 64.
    pub fn new(prefix: impl Into<String>) -> NatsOptions {
        let prefix = prefix.into();
        let stream = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        NatsOptions {
            prefix,
            stream,
            max_age: Duration::ZERO,
            max_bytes: -1,
            max_messages: -1,
            duplicate_window: Duration::from_secs(120),
            memory: false,
            retention: Retention::Limits,
            ack_wait: Duration::from_secs(30),
            prefetch: 64,
            local: HashSet::new(),
            mode: ContentMode::Structured,
            report_unrouted: true,
            compress_above: None,
            max_decompressed: 16 * 1024 * 1024,
            signer: None,
            keyring: None,
            connection: Connection {
                auth: None,
                root_certificates: Vec::new(),
                client_certificate: None,
                require_tls: false,
                connect_timeout: Duration::from_secs(5),
                publish_timeout: Duration::from_secs(5),
            },
        }
    }
    /// The stream's name.
    pub fn stream(mut self, name: impl Into<String>) -> NatsOptions {
        self.stream = name.into();
        self
    }
    /// Events older than this are removed from the stream (0: kept).
    pub fn max_age(mut self, age: Duration) -> NatsOptions {
        self.max_age = age;
        self
    }
    /// The stream keeps at most this many bytes, oldest removed first.
    pub fn max_bytes(mut self, bytes: i64) -> NatsOptions {
        self.max_bytes = bytes;
        self
    }
    /// The stream keeps at most this many events, oldest removed first.
    pub fn max_messages(mut self, messages: i64) -> NatsOptions {
        self.max_messages = messages;
        self
    }
    /// A publish of an event id seen within this window is stored once.
    pub fn duplicate_window(mut self, window: Duration) -> NatsOptions {
        self.duplicate_window = window;
        self
    }
    /// When the stream lets go of events (default [`Retention::Limits`]).
    pub fn retention(mut self, retention: Retention) -> NatsOptions {
        self.retention = retention;
        self
    }
    /// Keep the stream in the server's memory instead of on disk (tests).
    pub fn memory_storage(mut self) -> NatsOptions {
        self.memory = true;
        self
    }
    /// How long the server waits for a consumer's ack before redelivering; handlers running
    /// longer send in-progress every half of it.
    pub fn ack_wait(mut self, wait: Duration) -> NatsOptions {
        self.ack_wait = wait;
        self
    }
    /// How many messages each consumer asks the server for at a time (at least 1). More
    /// means fewer round trips; but a message waiting in this process counts against
    /// [`ack_wait`](Self::ack_wait) before its handler starts, so for handlers slower than
    /// `ack_wait / prefetch` lower it (or raise the ack wait), or the server redelivers what
    /// is still waiting. Processes competing for a handler's work each hold up to this many.
    pub fn prefetch(mut self, messages: usize) -> NatsOptions {
        self.prefetch = messages.max(1);
        self
    }
    /// How sent events are laid out (default [`ContentMode::Structured`]).
    pub fn content_mode(mut self, mode: ContentMode) -> NatsOptions {
        self.mode = mode;
        self
    }
    /// Whether [`Bus::consume`](events::Bus::consume) also watches for messages that no
    /// consumer of the stream takes (an unknown type on its own subject), and reports them to
    /// the log and the dead-letter stream (`<prefix>-dlq.unrouted`: the subject's newest
    /// message, with the count waiting) (default on). Every 2 s it asks JetStream for the
    /// stream's subjects and their counts and compares them with the consumers' filters: one
    /// request per look, nothing per message.
    pub fn report_unrouted(mut self, on: bool) -> NatsOptions {
        self.report_unrouted = on;
        self
    }
    /// Sends bodies longer than `bytes` compressed with zstd (level 3), marked with the
    /// header `Content-Encoding: zstd` (default: never compressed). A receiving bus
    /// decompresses them before anything reads them (up to
    /// [`max_decompressed_bytes`](Self::max_decompressed_bytes)); a message without the
    /// header is read as it is, and one with another encoding is refused. A body that does
    /// not get smaller is sent as it is. Other consumers of the stream must understand the
    /// header: the AsyncAPI document says it.
    ///
    /// zstd, because it compresses JSON about as well as gzip at several times its speed,
    /// decompresses at memory speed, and is what Kafka, HTTP (`Content-Encoding: zstd`)
    /// and JetStream's own storage compression offer.
    pub fn compress_above(mut self, bytes: usize) -> NatsOptions {
        self.compress_above = Some(bytes);
        self
    }
    /// The largest a compressed body may decompress to (default 16 MiB): a message that
    /// would expand past it is refused and dead-lettered, so a small hostile message cannot
    /// take more memory than this. The bus's ingest limits then apply to what it expands to.
    pub fn max_decompressed_bytes(mut self, bytes: usize) -> NatsOptions {
        self.max_decompressed = bytes;
        self
    }
    /// Signs every message this bus sends with `key` (Ed25519, `ed25519-dalek`), in the
    /// `Events-Signature` header: over the headers a receiver reads (`ce-*`,
    /// `Content-Type`, `Content-Encoding`, `Nats-Msg-Id`, trace context) and the SHA-256 of
    /// the body as sent. A consumer with [`verify_with`](Self::verify_with) then knows
    /// which service published an event, not only that the broker passed it. Off by default.
    pub fn sign_with(mut self, key: events::security::SigningKey) -> NatsOptions {
        self.signer = Some(key);
        self
    }
    /// Verifies every message this bus consumes against `keyring`: a message that is not
    /// signed, is signed by a key the keyring does not trust, or does not match its
    /// signature (a changed header or body) is refused into the dead-letter stream with the
    /// reason, and no handler sees it. A verified message's events carry the key's principal
    /// ([`Meta::principal`](events::Meta::principal)), which the bus's
    /// [access rules](events::security::AccessRules) then check. Off by default: consumed
    /// events are then the anonymous principal's.
    pub fn verify_with(mut self, keyring: events::security::Keyring) -> NatsOptions {
        self.keyring = Some(Arc::new(keyring));
        self
    }
    /// `E` stays in this process: published and handled locally, never sent to NATS.
    pub fn local<E: Event>(mut self) -> NatsOptions {
        self.local.insert(E::NAME);
        self
    }
    /// Authenticates with a user name and password (the server's `authorization { user,
    /// password }`). Credentials in the URL (`nats://user:password@host`) do the same;
    /// these win over them.
    pub fn user_and_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> NatsOptions {
        self.connection.auth = Some(Auth::UserPassword(user.into(), password.into()));
        self
    }
    /// Authenticates with a token (the server's `authorization { token }`).
    pub fn token(mut self, token: impl Into<String>) -> NatsOptions {
        self.connection.auth = Some(Auth::Token(token.into()));
        self
    }
    /// Authenticates with an nkey: `seed` is the user's seed (`SU...`); the client signs
    /// the server's nonce with it and only the public key travels.
    pub fn nkey(mut self, seed: impl Into<String>) -> NatsOptions {
        self.connection.auth = Some(Auth::NKey(seed.into()));
        self
    }
    /// Authenticates with a JWT and nkey from a `.creds` file (decentralized auth), read at
    /// [`Nats::connect`].
    pub fn credentials_file(mut self, path: impl Into<PathBuf>) -> NatsOptions {
        self.connection.auth = Some(Auth::CredentialsFile(path.into()));
        self
    }
    /// [`credentials_file`](Self::credentials_file) with the file's text.
    pub fn credentials(mut self, creds: impl Into<String>) -> NatsOptions {
        self.connection.auth = Some(Auth::Credentials(creds.into()));
        self
    }
    /// Trusts the certificate authorities in this PEM file to sign the server's certificate
    /// (in addition to the system's roots); may be given several times. Implies TLS.
    pub fn root_certificates(mut self, pem: impl Into<PathBuf>) -> NatsOptions {
        self.connection.root_certificates.push(pem.into());
        self.connection.require_tls = true;
        self
    }
    /// Presents this client certificate and key (PEM files) to a server that verifies
    /// clients (mutual TLS). Implies TLS.
    pub fn client_certificate(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> NatsOptions {
        self.connection.client_certificate = Some((cert.into(), key.into()));
        self.connection.require_tls = true;
        self
    }
    /// Refuses to talk to a server without TLS (also set by a `tls://` URL and by
    /// [`root_certificates`](Self::root_certificates)).
    pub fn require_tls(mut self, required: bool) -> NatsOptions {
        self.connection.require_tls = required;
        self
    }
    /// How long [`Nats::connect`] waits for the server to answer (default 5 s): an
    /// unreachable server fails with [`NatsError::Connect`] after this.
    pub fn connect_timeout(mut self, timeout: Duration) -> NatsOptions {
        self.connection.connect_timeout = timeout;
        self
    }
    /// How long a publish waits for JetStream's ack (default 5 s) before it returns
    /// [`PublishError::Unconfirmed`](events::PublishError::Unconfirmed): the event may have been stored.
    pub fn publish_timeout(mut self, timeout: Duration) -> NatsOptions {
        self.connection.publish_timeout = timeout;
        self
    }

    fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            subjects: vec![format!("{}.>", self.prefix)],
            retention: match self.retention {
                Retention::Limits => stream::RetentionPolicy::Limits,
                Retention::Interest => stream::RetentionPolicy::Interest,
            },
            max_age: self.max_age,
            max_bytes: self.max_bytes,
            max_messages: self.max_messages,
            duplicate_window: self.duplicate_window,
            storage: if self.memory {
                stream::StorageType::Memory
            } else {
                stream::StorageType::File
            },
            ..Default::default()
        }
    }

    fn dead_letter_config(&self) -> stream::Config {
        stream::Config {
            name: format!("{}_DLQ", self.stream),
            subjects: vec![format!("{}-dlq.>", self.prefix)],
            max_bytes: -1,
            max_messages: -1,
            storage: if self.memory {
                stream::StorageType::Memory
            } else {
                stream::StorageType::File
            },
            ..Default::default()
        }
    }
}

/// Connecting, or setting up the stream or a consumer, failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// The server could not be reached (refused, unreachable, no answer within
    /// [`NatsOptions::connect_timeout`], or the address is not one).
    #[error("cannot connect to NATS at `{url}`: {reason}")]
    Connect {
        /// The address given, without credentials.
        url: String,
        /// What the client said.
        reason: String,
    },
    /// The server refused the credentials (or asked for some and none were given).
    #[error("NATS at `{url}` refused the connection's credentials: {reason}")]
    Auth {
        /// The address given, without credentials.
        url: String,
        /// What the client said (never the credentials).
        reason: String,
    },
    /// TLS could not be set up: a certificate file cannot be read, the server's certificate
    /// is not trusted, or one side requires TLS and the other does not offer it.
    #[error("TLS with NATS at `{url}` failed: {reason}")]
    Tls {
        /// The address given, without credentials.
        url: String,
        /// What the client said.
        reason: String,
    },
    /// A stream exists with settings other than the ones asked for; it was not changed.
    #[error(
        "stream `{stream}` exists with {setting} = {found}, but this bus asks for {expected}; \
         it was left unchanged: change the stream (`nats stream edit`) or the bus's \
         `NatsOptions`"
    )]
    StreamMismatch {
        /// The stream.
        stream: String,
        /// The setting that differs.
        setting: &'static str,
        /// What the bus asks for.
        expected: String,
        /// What the stream has.
        found: String,
    },
    /// JetStream refused a stream or consumer operation.
    #[error("JetStream refused to set up {what}: {reason}")]
    JetStream {
        /// The stream or consumer.
        what: String,
        /// What the server said.
        reason: String,
    },
}

/// A connection to NATS with its stream set up: give it to
/// [`BusBuilder::transport`](events::BusBuilder::transport).
#[derive(Clone)]
pub struct Nats {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for Nats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nats")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

struct Shared {
    js: jetstream::Context,
    /// Set once the streams are created or checked: at connect, or (after
    /// [`Nats::connect_lazy`]) before the first send or consumer that finds the server.
    streams: tokio::sync::OnceCell<()>,
    options: NatsOptions,
    /// The address given to [`Nats::connect`], without credentials (for the AsyncAPI
    /// document).
    url: String,
}

impl Nats {
    /// Connects (the client reconnects by itself after a server restart once connected),
    /// then creates the stream and the dead-letter stream, or checks that the existing ones
    /// are as `options` says. `url` is `host:port`, `nats://host:port`, `tls://host:port`,
    /// or several of them separated by commas; `user:password@` in it authenticates (a
    /// user alone is taken as a token; see
    /// [`NatsOptions::user_and_password`] and the other credentials).
    ///
    /// The first connection is not retried: an unreachable server fails within
    /// [`NatsOptions::connect_timeout`], refused credentials fail as soon as the server says
    /// so. No error shows the credentials.
    ///
    /// # Errors
    /// [`NatsError::Connect`], [`NatsError::Auth`], [`NatsError::Tls`],
    /// [`NatsError::StreamMismatch`], [`NatsError::JetStream`].
    pub async fn connect(url: &str, options: NatsOptions) -> Result<Nats, NatsError> {
        let shown = without_credentials(url);
        // The client gets the addresses without their credentials (taken out above), so
        // that none of its logs can show them.
        let client = connect_options(url, &shown, &options.connection)
            .await?
            .connect(shown.as_str())
            .await
            .map_err(|e| connect_error(&shown, &e))?;
        Nats::set_up(client, options, shown).await
    }

    /// [`connect`](Self::connect) for a process that must start while the server may be
    /// away (with the outbox, its publishes wait in the store): returns at once, and the
    /// client connects in the background, retrying for as long as it runs. The streams are
    /// created or checked before the first send or consumer that reaches the server; until
    /// then sends fail with `SendError::NotSent` (the outbox's forwarder retries) and
    /// consumers are refused (`Bus::consume` can be called again).
    ///
    /// # Errors
    /// [`NatsError::Auth`] when the credentials given cannot be read; [`NatsError::Connect`]
    /// when `url` is not an address. A server that refuses the credentials is only logged
    /// (by the client, with its retries).
    pub async fn connect_lazy(url: &str, options: NatsOptions) -> Result<Nats, NatsError> {
        let shown = without_credentials(url);
        let client = connect_options(url, &shown, &options.connection)
            .await?
            .retry_on_initial_connect()
            .connect(shown.as_str())
            .await
            .map_err(|e| connect_error(&shown, &e))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(options.connection.publish_timeout)
            .build(client);
        Ok(Nats {
            inner: Arc::new(Shared {
                js,
                streams: tokio::sync::OnceCell::new(),
                options,
                url: shown,
            }),
        })
    }

    /// [`connect`](Self::connect) with a client connected by the caller: for what
    /// [`NatsOptions`] does not offer (an auth callback, a JWT signed by a callback, a
    /// custom `rustls` configuration, TLS before the server's first message, other client
    /// settings). Its credentials and timeouts
    /// are the client's; [`NatsOptions::publish_timeout`] still applies.
    ///
    /// # Errors
    /// [`NatsError::StreamMismatch`], [`NatsError::JetStream`].
    pub async fn from_client(
        client: async_nats::Client,
        options: NatsOptions,
    ) -> Result<Nats, NatsError> {
        let info = client.server_info();
        let shown = format!("{}:{}", info.host, info.port);
        Nats::set_up(client, options, shown).await
    }

    /// The JetStream context, and the streams created or checked.
    async fn set_up(
        client: async_nats::Client,
        options: NatsOptions,
        shown: String,
    ) -> Result<Nats, NatsError> {
        let js = jetstream::ContextBuilder::new()
            .timeout(options.connection.publish_timeout)
            .build(client);
        ensure_stream(&js, options.stream_config()).await?;
        ensure_stream(&js, options.dead_letter_config()).await?;
        Ok(Nats {
            inner: Arc::new(Shared {
                js,
                streams: tokio::sync::OnceCell::new_with(Some(())),
                options,
                url: shown,
            }),
        })
    }
}

/// The client's options: reconnects forever once connected, the timeouts, TLS, and the
/// credentials (given ones, else those in the URL).
async fn connect_options(
    url: &str,
    shown: &str,
    c: &Connection,
) -> Result<async_nats::ConnectOptions, NatsError> {
    let mut o = async_nats::ConnectOptions::new()
        .max_reconnects(None)
        .connection_timeout(c.connect_timeout)
        .require_tls(c.require_tls);
    for pem in &c.root_certificates {
        o = o.add_root_certificates(pem.clone());
    }
    if let Some((cert, key)) = &c.client_certificate {
        o = o.add_client_certificate(cert.clone(), key.clone());
    }
    let auth = c.auth.clone().or_else(|| credentials_in(url));
    Ok(match auth {
        None => o,
        Some(Auth::UserPassword(user, password)) => o.user_and_password(user, password),
        Some(Auth::Token(token)) => o.token(token),
        Some(Auth::NKey(seed)) => {
            // Checked here: the client would only log a bad seed and connect without it.
            if let Err(e) = nkeys::KeyPair::from_seed(&seed) {
                return Err(NatsError::Auth {
                    url: shown.to_owned(),
                    reason: format!("the nkey seed is not valid: {e}"),
                });
            }
            o.nkey(seed)
        }
        Some(Auth::CredentialsFile(path)) => {
            o.credentials_file(&path)
                .await
                .map_err(|e| NatsError::Auth {
                    url: shown.to_owned(),
                    reason: format!("cannot read credentials file {}: {e}", path.display()),
                })?
        }
        Some(Auth::Credentials(text)) => o.credentials(&text).map_err(|e| NatsError::Auth {
            url: shown.to_owned(),
            reason: format!("the credentials are not a valid creds file: {e}"),
        })?,
    })
}

/// What the client's connect error was, as the error a caller can act on.
fn connect_error(shown: &str, e: &async_nats::ConnectError) -> NatsError {
    use async_nats::ConnectErrorKind as K;
    let url = shown.to_owned();
    let reason = e.to_string();
    match e.kind() {
        K::AuthorizationViolation | K::Authentication => NatsError::Auth { url, reason },
        K::Tls => NatsError::Tls { url, reason },
        // The handshake's failures (an untrusted certificate, say) come as I/O errors.
        _ if is_tls_failure(e) => NatsError::Tls { url, reason },
        _ => NatsError::Connect { url, reason },
    }
}

/// Whether `e` was caused by rustls (a TLS handshake that failed).
fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<async_nats::rustls::Error>()
            || c.downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .is_some_and(|inner| inner.is::<async_nats::rustls::Error>())
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// `user:password@` of the first address in `url` that has them, percent-decoded.
fn credentials_in(url: &str) -> Option<Auth> {
    url.split(',').find_map(|server| {
        let addr: async_nats::ServerAddr = server.trim().parse().ok()?;
        let user = percent_decode(addr.username()?);
        Some(match addr.password() {
            Some(password) => Auth::UserPassword(user, percent_decode(password)),
            None => Auth::Token(user),
        })
    })
}

/// `s` with `%XX` escapes decoded (as URLs escape user names and passwords).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `url` with the `user:password@` of each address removed: what errors, logs and the
/// AsyncAPI document show.
fn without_credentials(url: &str) -> String {
    url.split(',')
        .map(|server| {
            let server = server.trim();
            let (scheme, rest) = match server.find("://") {
                Some(i) => server.split_at(i + 3),
                None => ("", server),
            };
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}{}", &rest[at + 1..]),
                None => server.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Creates the stream, or checks the existing one's subjects, retention, storage and limits.
async fn ensure_stream(js: &jetstream::Context, want: stream::Config) -> Result<(), NatsError> {
    let refused = |e: &dyn std::fmt::Display| NatsError::JetStream {
        what: format!("stream `{}`", want.name),
        reason: e.to_string(),
    };
    match js.get_stream(&want.name).await {
        Ok(mut existing) => {
            let have = existing
                .info()
                .await
                .map_err(|e| refused(&e))?
                .config
                .clone();
            let mismatch = |setting, expected: String, found: String| {
                Err(NatsError::StreamMismatch {
                    stream: want.name.clone(),
                    setting,
                    expected,
                    found,
                })
            };
            if have.subjects != want.subjects {
                return mismatch(
                    "subjects",
                    format!("{:?}", want.subjects),
                    format!("{:?}", have.subjects),
                );
            }
            if have.retention != want.retention {
                return mismatch(
                    "retention",
                    format!("{:?}", want.retention),
                    format!("{:?}", have.retention),
                );
            }
            if have.storage != want.storage {
                return mismatch(
                    "storage",
                    format!("{:?}", want.storage),
                    format!("{:?}", have.storage),
                );
            }
            if have.max_age != want.max_age
                || have.max_bytes != want.max_bytes
                || have.max_messages != want.max_messages
            {
                return mismatch(
                    "limits (max_age, max_bytes, max_messages)",
                    format!("{:?}", (want.max_age, want.max_bytes, want.max_messages)),
                    format!("{:?}", (have.max_age, have.max_bytes, have.max_messages)),
                );
            }
            Ok(())
        }
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(inner)
                    if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            js.create_stream(want.clone())
                .await
                .map(|_| ())
                .map_err(|e| refused(&e))
        }
        Err(e) => Err(refused(&e)),
    }
}

impl Shared {
    /// Creates or checks the streams, once (after [`Nats::connect_lazy`]).
    async fn ready(&self) -> Result<(), NatsError> {
        self.streams
            .get_or_try_init(|| async {
                ensure_stream(&self.js, self.options.stream_config()).await?;
                ensure_stream(&self.js, self.options.dead_letter_config()).await
            })
            .await
            .map(|_| ())
    }

    fn is_local(&self, name: &str) -> bool {
        self.options.local.contains(name)
    }

    fn subject(&self, name: &str) -> String {
        format!("{}.{name}", self.options.prefix)
    }

    /// Sends the event as a CloudEvent and waits for JetStream's ack: its stream sequence.
    async fn send(&self, message: Outgoing<'_>) -> Result<Sent, SendError> {
        let ack = self.write(&message).await?;
        settled(ack.await)
    }

    /// Hands one message to the client (nothing left this process until it has it); the
    /// future of JetStream's ack.
    async fn write(
        &self,
        message: &Outgoing<'_>,
    ) -> Result<jetstream::context::PublishAckFuture, SendError> {
        self.ready()
            .await
            .map_err(|e| SendError::NotSent(e.to_string()))?;
        let (headers, body) = encode(message, &self.options)
            .map_err(|e| SendError::NotSent(format!("the event cannot be serialized: {e}")))?;
        self.js
            .publish_with_headers(self.subject(message.name()), headers, body.into())
            .await
            .map_err(|e| SendError::NotSent(e.to_string()))
    }

    /// Every message written before the first ack is awaited: the acks come back while
    /// later messages are still going out (pipelined), in order.
    async fn send_batch(&self, messages: Vec<Outgoing<'_>>) -> Vec<Result<Sent, SendError>> {
        let mut acks = Vec::with_capacity(messages.len());
        let mut failed = false;
        for message in &messages {
            // After a message the client did not take, none is written: a later event must
            // not reach the stream before an earlier one.
            if failed {
                acks.push(Err(SendError::after_failure()));
                continue;
            }
            let written = self.write(message).await;
            failed = written.is_err();
            acks.push(written);
        }
        let mut results = Vec::with_capacity(acks.len());
        for ack in acks {
            results.push(match ack {
                Ok(ack) => settled(ack.await),
                Err(e) => Err(e),
            });
        }
        results
    }
}

/// What an ack (or its absence) means.
fn settled(
    ack: Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
) -> Result<Sent, SendError> {
    use jetstream::context::PublishErrorKind as K;
    match ack {
        Ok(ack) if ack.duplicate => Ok(Sent::duplicate(ack.sequence)),
        Ok(ack) => Ok(Sent::new(ack.sequence)),
        // No answer in time, or the connection broke while waiting: the server may have
        // stored it.
        Err(e) if matches!(e.kind(), K::TimedOut | K::BrokenPipe) => {
            Err(SendError::Unconfirmed(e.to_string()))
        }
        // An answer: JetStream refused it (no stream for the subject, an error reply).
        Err(e) => Err(SendError::NotSent(e.to_string())),
    }
}

impl Transport for Nats {
    fn is_local(&self, name: &str) -> bool {
        self.inner.is_local(name)
    }

    fn send<'a>(&'a self, message: Outgoing<'a>) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(self.inner.send(message))
    }

    fn send_batch<'a>(
        &'a self,
        messages: Vec<Outgoing<'a>>,
    ) -> BoxFuture<'a, Vec<Result<Sent, SendError>>> {
        Box::pin(self.inner.send_batch(messages))
    }

    fn consumer<'a>(
        &'a self,
        spec: ConsumerSpec,
    ) -> BoxFuture<'a, Result<Box<dyn Consumer>, TransportError>> {
        Box::pin(async move {
            let shared = &self.inner;
            shared.ready().await.map_err(|e| TransportError::Refused {
                what: format!("stream `{}`", shared.options.stream),
                reason: e.to_string(),
            })?;
            let stream = shared
                .js
                .get_stream(&shared.options.stream)
                .await
                .map_err(|e| TransportError::Refused {
                    what: format!("stream `{}`", shared.options.stream),
                    reason: e.to_string(),
                })?;
            let filter = match &spec.selects {
                events::transport::Selects::Event(name) => shared.subject(name),
                events::transport::Selects::Pattern(pattern) => shared.subject(pattern),
                other => {
                    return Err(TransportError::Refused {
                        what: format!("a consumer of `{}`", spec.handler),
                        reason: format!("selection {other:?} is not supported"),
                    });
                }
            };
            let name = consumer_name(spec.handler);
            let config = pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: filter,
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: shared.options.ack_wait,
                max_deliver: spec.max_deliver.map_or(-1, i64::from),
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ..Default::default()
            };
            let consumer = stream
                .get_or_create_consumer(&name, config)
                .await
                .map_err(|e| TransportError::Refused {
                    what: format!("consumer `{name}` of handler `{}`", spec.handler),
                    reason: e.to_string(),
                })?;
            Ok(Box::new(NatsConsumer {
                shared: Arc::clone(shared),
                consumer,
                handler: spec.handler,
                messages: None,
            }) as Box<dyn Consumer>)
        })
    }

    fn address(&self, name: &str) -> String {
        self.inner.subject(name)
    }

    fn consumer_name(&self, handler: &str) -> String {
        consumer_name(handler)
    }

    fn watch(&self) -> Option<BoxFuture<'static, ()>> {
        let shared = Arc::clone(&self.inner);
        shared.options.report_unrouted.then(|| {
            Box::pin(async move {
                let stream = loop {
                    match shared.js.get_stream(&shared.options.stream).await {
                        Ok(stream) => break stream,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot look at the stream; retrying");
                            tokio::time::sleep(UNROUTED_EVERY).await;
                        }
                    }
                };
                unrouted_loop(shared, stream).await;
            }) as BoxFuture<'static, ()>
        })
    }

    fn wire(&self) -> Option<Wire> {
        let o = &self.inner.options;
        let url = &self.inner.url;
        let host = url.split("://").last().unwrap_or(url);
        let wire = Wire::new(
            "nats",
            host,
            o.prefix_name(),
            o.stream_name(),
            o.mode() == ContentMode::Binary,
        );
        Some(match o.compress_above {
            Some(above) => wire.compressed(ZSTD, above),
            None => wire,
        })
    }
}

/// The media type of a structured-mode message.
const STRUCTURED: &str = "application/cloudevents+json";
/// Where binary mode puts each attribute: `ce-<name>`.
const CE_PREFIX: &str = "ce-";

/// An event as a NATS message in `mode`: its headers and body. Every header value is made
/// here, from the envelope, and is either fixed, an id, a checked `traceparent`, or
/// percent-encoded ([`header_value`]): nothing from outside reaches a header raw.
fn encode(
    message: &Outgoing<'_>,
    options: &NatsOptions,
) -> Result<(async_nats::HeaderMap, Vec<u8>), serde_json::Error> {
    let (mut headers, body) = encode_compressed(message, options)?;
    if let Some(key) = &options.signer {
        let signature = key.sign_message(header_pairs(&headers), &body);
        headers.insert(events::security::SIGNATURE_HEADER, signature.as_str());
    }
    Ok((headers, body))
}

/// Every header of a message as `(name, value)` pairs, each value on its own.
fn header_pairs(headers: &async_nats::HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers.iter().flat_map(|(name, values)| {
        let name: &str = name.as_ref();
        values.iter().map(move |v| (name, v.as_str()))
    })
}

fn encode_compressed(
    message: &Outgoing<'_>,
    options: &NatsOptions,
) -> Result<(async_nats::HeaderMap, Vec<u8>), serde_json::Error> {
    let (mut headers, body) = encode_plain(message, options.mode)?;
    let Some(above) = options.compress_above.filter(|&above| body.len() > above) else {
        return Ok((headers, body));
    };
    // One compression context per thread, kept: making one costs more than compressing
    // a few kilobytes.
    thread_local! {
        static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let compressed = COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
        }
        c.as_mut().map(|c| c.compress(&body))
    });
    match compressed {
        Some(Ok(compressed)) if compressed.len() < body.len() => {
            headers.insert(CONTENT_ENCODING, ZSTD);
            tracing::trace!(
                above,
                from = body.len(),
                to = compressed.len(),
                "compressed"
            );
            Ok((headers, compressed))
        }
        _ => Ok((headers, body)),
    }
}

/// The header that marks a compressed body, and its one value.
const CONTENT_ENCODING: &str = "Content-Encoding";
const ZSTD: &str = "zstd";
const ZSTD_LEVEL: i32 = 3;

/// A received body as the bus reads it: decompressed when its `Content-Encoding` says zstd
/// (up to `max` bytes), as it is without the header; `Err` for another encoding or a body
/// that does not decompress within `max`.
fn decoded_body(
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
    max: usize,
) -> Option<Result<Vec<u8>, String>> {
    let encoding = headers?.get(CONTENT_ENCODING)?.as_str();
    Some(if encoding.eq_ignore_ascii_case(ZSTD) {
        decompress(payload, max)
    } else {
        Err(format!(
            "content encoding `{}` is not supported (only `zstd`)",
            clip(encoding, 40)
        ))
    })
}

/// A zstd body, expanded to at most `max` bytes. The frame's declared size (set by every
/// zstd encoder that knows it, this one included) sizes the buffer, and is only a claim: a
/// frame that expands past it fails. A frame without one is decoded as a stream, cut at
/// `max`.
fn decompress(payload: &[u8], max: usize) -> Result<Vec<u8>, String> {
    use std::io::Read;
    thread_local! {
        static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let too_large = |n: u64| format!("the zstd body expands to {n} bytes, more than {max}");
    match zstd::zstd_safe::get_frame_content_size(payload) {
        Ok(Some(n)) if n > max as u64 => Err(too_large(n)),
        Ok(Some(n)) => DECOMPRESSOR
            .with(|d| {
                let mut d = d.borrow_mut();
                if d.is_none() {
                    *d = Some(zstd::bulk::Decompressor::new()?);
                }
                match d.as_mut() {
                    Some(d) => d.decompress(payload, n as usize),
                    None => Err(std::io::Error::other("no zstd context")),
                }
            })
            .map_err(|e| {
                format!("the zstd body does not decompress to the {n} bytes it declares: {e}")
            }),
        Ok(None) => {
            let mut out = Vec::new();
            zstd::stream::read::Decoder::new(payload)
                .and_then(|d| d.take(max as u64 + 1).read_to_end(&mut out))
                .map_err(|e| format!("the zstd body does not decompress: {e}"))?;
            if out.len() > max {
                return Err(too_large(out.len() as u64));
            }
            Ok(out)
        }
        Err(_) => Err("the body is not a zstd frame".into()),
    }
}

/// [`encode`] before compression.
fn encode_plain(
    message: &Outgoing<'_>,
    mode: ContentMode,
) -> Result<(async_nats::HeaderMap, Vec<u8>), serde_json::Error> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, message.id().as_str());
    headers.insert("traceparent", message.traceparent().as_str());
    let body = match mode {
        ContentMode::Structured => {
            headers.insert("Content-Type", STRUCTURED);
            message.structured()?
        }
        ContentMode::Binary => {
            headers.insert("Content-Type", "application/json");
            for (name, text) in message.attributes() {
                headers.insert(
                    format!("{CE_PREFIX}{name}").as_str(),
                    header_value(&text).as_str(),
                );
            }
            message.data()?
        }
    };
    Ok((headers, body))
}

/// How a received message is laid out: structured when its `Content-Type` is a CloudEvents
/// type (or when it has neither a `Content-Type` nor `ce-` headers, as plain publishers
/// send), else binary. In binary mode, the attributes from the `ce-` headers.
fn received_attributes(
    headers: Option<&async_nats::HeaderMap>,
) -> Result<Option<serde_json::Map<String, serde_json::Value>>, String> {
    let Some(headers) = headers else {
        return Ok(None);
    };
    events::cloudevents::binary_attributes(header_pairs(headers))
}

/// A message's CloudEvents attributes.
type Attributes = serde_json::Map<String, serde_json::Value>;

/// Not public API: what a consumer makes of a received message, for the fuzz targets
/// (`fuzz/`): its CloudEvents attributes (`None`: structured mode) and its body,
/// decompressed as a delivery's is.
#[doc(hidden)]
pub fn __received(
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
    max_decompressed: usize,
) -> Result<(Option<Attributes>, Vec<u8>), String> {
    let body = match decoded_body(headers, payload, max_decompressed) {
        Some(decoded) => decoded?,
        None => payload.to_vec(),
    };
    Ok((received_attributes(headers)?, body))
}

/// A handler's durable pull consumer: batches of up to `prefetch` messages.
struct NatsConsumer {
    shared: Arc<Shared>,
    consumer: jetstream::consumer::Consumer<pull::Config>,
    handler: &'static str,
    messages: Option<pull::Stream>,
}

impl Consumer for NatsConsumer {
    fn next(&mut self) -> BoxFuture<'_, Option<Box<dyn Delivery>>> {
        Box::pin(async move {
            loop {
                let messages = match &mut self.messages {
                    Some(messages) => messages,
                    None => self.messages.insert(
                        next_batch(&self.consumer, self.shared.options.prefetch, self.handler)
                            .await,
                    ),
                };
                match messages.next().await {
                    Some(Ok(message)) => {
                        return Some(
                            Box::new(NatsDelivery::new(&self.shared, message)) as Box<dyn Delivery>
                        );
                    }
                    Some(Err(e)) => {
                        tracing::warn!(handler = self.handler, error = %e, "pulling messages failed");
                        self.messages = None;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    None => {
                        self.messages = None;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        })
    }
}

/// The next batch of `consumer`'s messages; retries (logging why) until the server answers.
async fn next_batch(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    prefetch: usize,
    who: &str,
) -> pull::Stream {
    loop {
        match consumer
            .stream()
            .max_messages_per_batch(prefetch)
            .messages()
            .await
        {
            Ok(messages) => return messages,
            Err(e) => {
                tracing::warn!(consumer = who, error = %e, "cannot pull messages; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// One JetStream message, with its layout read once.
struct NatsDelivery {
    shared: Arc<Shared>,
    message: jetstream::Message,
    attempt: u32,
    traceparent: Option<String>,
    /// The body decompressed (`Content-Encoding: zstd`), or why it cannot be; `None` for a
    /// body sent as it is.
    decoded: Option<Result<Vec<u8>, String>>,
    /// Who signed it, when the bus verifies signatures.
    principal: Option<events::security::Principal>,
}

/// The principal of the key that signed `message`, or why its signature is refused.
fn verify<'k>(
    keyring: &'k events::security::Keyring,
    message: &jetstream::Message,
) -> Result<&'k events::security::Principal, events::security::SignatureError> {
    let empty = async_nats::HeaderMap::new();
    let headers = message.headers.as_ref().unwrap_or(&empty);
    let signature = headers
        .get(events::security::SIGNATURE_HEADER)
        .map(|v| v.as_str());
    keyring.verify(signature, header_pairs(headers), &message.payload)
}

impl NatsDelivery {
    fn new(shared: &Arc<Shared>, message: jetstream::Message) -> NatsDelivery {
        let attempt = message
            .info()
            .map_or(1, |i| u32::try_from(i.delivered).unwrap_or(u32::MAX).max(1));
        let traceparent = message
            .headers
            .as_ref()
            .and_then(|h| h.get("traceparent"))
            .map(|v| v.to_string());
        let mut principal = None;
        let decoded = match &shared.options.keyring {
            Some(keyring) => verify(keyring, &message).map(|p| principal = Some(p.clone())),
            None => Ok(()),
        };
        let decoded = match decoded {
            Ok(()) => decoded_body(
                message.headers.as_ref(),
                &message.payload,
                shared.options.max_decompressed,
            ),
            Err(e) => Some(Err(e.to_string())),
        };
        NatsDelivery {
            shared: Arc::clone(shared),
            message,
            attempt,
            traceparent,
            decoded,
            principal,
        }
    }
}

impl Delivery for NatsDelivery {
    fn address(&self) -> &str {
        self.message.subject.as_str()
    }

    fn routed_name(&self) -> Option<&str> {
        self.message
            .subject
            .as_str()
            .strip_prefix(self.shared.options.prefix.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn attributes(&self) -> Result<Option<serde_json::Map<String, serde_json::Value>>, String> {
        if let Some(Err(reason)) = &self.decoded {
            return Err(reason.clone());
        }
        received_attributes(self.message.headers.as_ref())
    }

    fn body(&self) -> &[u8] {
        match &self.decoded {
            Some(Ok(body)) => body,
            Some(Err(_)) => &[],
            None => &self.message.payload,
        }
    }

    fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }

    fn principal(&self) -> Option<&events::security::Principal> {
        self.principal.as_ref()
    }

    fn progress_every(&self) -> Option<Duration> {
        Some(self.shared.options.ack_wait / 2)
    }

    fn progress(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.message.ack_with(AckKind::Progress).await;
        })
    }

    fn settle(self: Box<Self>, how: Settle) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async move {
            let kind = match how {
                Settle::Nak { after } => AckKind::Nak(Some(after)),
                Settle::Terminate { handler, reason } => {
                    // As received: compressed still, with the header that says so.
                    let encoding = self
                        .message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(CONTENT_ENCODING))
                        .map(|v| v.to_string());
                    dead_letter_raw(
                        &self.shared,
                        &handler,
                        &self.message.payload,
                        &reason,
                        None,
                        encoding.as_deref(),
                    )
                    .await;
                    AckKind::Term
                }
                _ => AckKind::Ack,
            };
            self.message.ack_with(kind).await.map_err(|e| e.to_string())
        })
    }
}

/// A JetStream consumer name for a handler: its name with anything but letters, digits,
/// `-` and `_` as `_`.
fn consumer_name(handler: &str) -> String {
    handler
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// How often the unrouted watch looks at the stream's subjects.
const UNROUTED_EVERY: Duration = Duration::from_secs(2);
/// At most this many subjects are looked at (and remembered) per look.
const UNROUTED_SUBJECTS: usize = 10_000;

/// Whether NATS subject filter `filter` (`*` one token, `>` the rest) takes `subject`.
fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for f in filter.split('.') {
        match (f, tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (f, Some(t)) if f == t => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

/// Looks at the stream's subjects every [`UNROUTED_EVERY`] (JetStream's stream info counts
/// the messages of each) and reports each subject that no consumer of the stream takes, so
/// that nothing waits in the stream unseen: a log line, and its newest message to the
/// dead-letter stream with the count. A subject is reported again only when more messages
/// have come; the report's `Nats-Msg-Id` is the subject and count, so processes watching the
/// same stream report it once. Nothing is read per message: the watch costs one request
/// per look, whatever the traffic. The messages stay in the stream for a consumer made later.
async fn unrouted_loop(transport: Arc<Shared>, mut stream: jetstream::stream::Stream) {
    let mut reported: std::collections::HashMap<String, usize> = Default::default();
    loop {
        let filters = consumer_filters(&mut stream).await;
        match stream.info_with_subjects(transport.subject(">")).await {
            Ok(mut subjects) => {
                let mut looked = 0;
                while let Some(Ok((subject, count))) = subjects.next().await {
                    looked += 1;
                    if looked > UNROUTED_SUBJECTS {
                        tracing::warn!(
                            stream = transport.options.stream,
                            "the stream has more than {UNROUTED_SUBJECTS} subjects; the unrouted \
                             watch looked at the first ones"
                        );
                        break;
                    }
                    if filters.iter().any(|f| subject_matches(f, &subject)) {
                        reported.remove(&subject);
                        continue;
                    }
                    if reported.get(&subject) == Some(&count) {
                        continue;
                    }
                    report_unrouted(&transport, &mut stream, &subject, count).await;
                    if reported.len() < UNROUTED_SUBJECTS {
                        reported.insert(subject, count);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list the stream's subjects; retrying"),
        }
        tokio::time::sleep(UNROUTED_EVERY).await;
    }
}

/// Logs an unrouted subject and sends its newest message to `<prefix>-dlq.unrouted`.
async fn report_unrouted(
    transport: &Shared,
    stream: &mut jetstream::stream::Stream,
    subject: &str,
    count: usize,
) {
    let shown = clip(subject, 80);
    let reason = format!(
        "no consumer of stream `{}` takes subject `{shown}`: no process runs a handler for it \
         ({count} message{} waiting)",
        transport.options.stream,
        if count == 1 { "" } else { "s" }
    );
    tracing::error!(subject = %shown, count, "{reason}");
    let (newest, encoding) = match stream.get_last_raw_message_by_subject(subject).await {
        Ok(m) => {
            let encoding = m.headers.get(CONTENT_ENCODING).map(|v| v.to_string());
            (m.payload.to_vec(), encoding)
        }
        Err(_) => (Vec::new(), None),
    };
    let id = format!("unrouted:{subject}:{count}");
    dead_letter_raw(
        transport,
        "unrouted",
        &newest,
        &reason,
        Some(&id),
        encoding.as_deref(),
    )
    .await;
}

/// The subject filters of every consumer of the stream.
async fn consumer_filters(stream: &mut jetstream::stream::Stream) -> Vec<String> {
    let mut filters = Vec::new();
    let mut consumers = stream.consumers();
    while let Some(Ok(info)) = consumers.next().await {
        // No filter: the whole stream.
        filters.push(if info.config.filter_subject.is_empty() {
            ">".into()
        } else {
            info.config.filter_subject.clone()
        });
    }
    filters
}

/// Publishes a refused or failed message to the dead-letter stream, with the reason.
/// `id`, when given, is the dead letter's `Nats-Msg-Id`: one id is stored once.
async fn dead_letter_raw(
    transport: &Shared,
    handler: &str,
    payload: &[u8],
    reason: &str,
    id: Option<&str>,
    encoding: Option<&str>,
) {
    let subject = format!(
        "{}-dlq.{}",
        transport.options.prefix,
        consumer_name(handler)
    );
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Events-Handler", readable_header_value(handler).as_str());
    headers.insert(
        "Events-Error",
        readable_header_value(&clip(reason, 300)).as_str(),
    );
    if let Some(id) = id {
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            header_value(id).as_str(),
        );
    }
    if let Some(encoding) = encoding {
        headers.insert(CONTENT_ENCODING, header_value(encoding).as_str());
    }
    let sent = match transport
        .js
        .publish_with_headers(subject, headers, payload.to_vec().into())
        .await
    {
        Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = sent {
        tracing::error!(handler, error = %e, "a dead letter could not be published to the dead-letter stream");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_filters() {
        assert!(subject_matches("shop.>", "shop.order.placed"));
        assert!(subject_matches("shop.order.*", "shop.order.placed"));
        assert!(!subject_matches("shop.order.*", "shop.order.placed.v2"));
        assert!(subject_matches("shop.order.placed", "shop.order.placed"));
        assert!(!subject_matches("shop.order.placed", "shop.order"));
        assert!(!subject_matches("shop.>", "shop"));
        assert!(subject_matches(">", "a"));
    }
}

/// The nats-server permissions a service needs, and no more, made from its bus's catalog:
/// for operators who enforce at the broker which service may publish which events.
///
/// Publish: the subject of every event the bus may send (`<prefix>.<name>`; events kept
/// local with [`NatsOptions::local`] are left out), its dead-letter subjects
/// (`<prefix>-dlq.>`), and the JetStream API of its two streams only (stream info and
/// creation, its consumers, acks). Subscribe: `_INBOX.>`, where JetStream and request
/// replies come back (pull consumers need no event subject). A message to any other
/// subject is refused by the server (`Permissions Violation`).
///
/// ```
/// use events_nats::{NatsOptions, Permissions};
///
/// let bus = events::Bus::builder().no_handlers().build().unwrap();
/// let permissions = Permissions::for_bus(&bus, &NatsOptions::new("shop"));
/// assert!(permissions.publish.contains(&"shop-dlq.>".to_owned()));
/// assert_eq!(permissions.subscribe, ["_INBOX.>"]);
/// let entry = permissions.user("checkout", "$CHECKOUT_PASSWORD");
/// assert!(entry.starts_with("{ user: \"checkout\", password: $CHECKOUT_PASSWORD"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Permissions {
    /// Subjects the service may publish to.
    pub publish: Vec<String>,
    /// Subjects the service may subscribe to.
    pub subscribe: Vec<String>,
}

impl Permissions {
    /// What a service with `bus`'s catalog and these NATS options needs.
    pub fn for_bus(bus: &events::Bus, options: &NatsOptions) -> Permissions {
        let (prefix, stream) = (&options.prefix, &options.stream);
        let mut publish: Vec<String> = bus
            .events()
            .iter()
            .map(|e| e.name())
            .filter(|name| !options.local.contains(name))
            .map(|name| format!("{prefix}.{name}"))
            .collect();
        publish.sort_unstable();
        publish.dedup();
        publish.push(format!("{prefix}-dlq.>"));
        publish.push("$JS.API.INFO".into());
        for s in [stream.clone(), format!("{stream}_DLQ")] {
            publish.push(format!("$JS.API.STREAM.*.{s}"));
            publish.push(format!("$JS.API.STREAM.MSG.GET.{s}"));
            publish.push(format!("$JS.API.DIRECT.GET.{s}.>"));
            publish.push(format!("$JS.API.CONSUMER.*.{s}"));
            publish.push(format!("$JS.API.CONSUMER.*.{s}.>"));
            publish.push(format!("$JS.API.CONSUMER.MSG.NEXT.{s}.>"));
            publish.push(format!("$JS.API.CONSUMER.DURABLE.CREATE.{s}.>"));
            publish.push(format!("$JS.ACK.{s}.>"));
        }
        Permissions {
            publish,
            subscribe: vec!["_INBOX.>".into()],
        }
    }

    /// A nats-server `authorization.users` entry for `user` with these permissions;
    /// `password` is written as given (a literal, or `$VARIABLE` for the server to read
    /// from its environment).
    pub fn user(&self, user: &str, password: &str) -> String {
        let quote = |s: &str| serde_json::Value::from(s).to_string();
        format!(
            "{{ user: {}, password: {}, permissions: {self} }}",
            quote(user),
            if password.starts_with('$') {
                password.to_owned()
            } else {
                quote(password)
            }
        )
    }
}

/// The `permissions` block of a nats-server configuration.
impl std::fmt::Display for Permissions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |subjects: &[String]| {
            subjects
                .iter()
                .map(|s| serde_json::Value::from(s.as_str()).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(
            f,
            "{{ publish: {{ allow: [{}] }}, subscribe: {{ allow: [{}] }} }}",
            list(&self.publish),
            list(&self.subscribe)
        )
    }
}
