//! The bus on NATS JetStream (feature `nats`): the same events and handlers across processes
//! and machines; only the builder changes.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use events::nats::{Nats, NatsOptions};
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
//! | publish | resolves once JetStream has stored the event (its ack); a second publish of one event id within the duplicate window is stored once; no ack within [`NatsOptions::publish_timeout`] is [`PublishError::Unconfirmed`] (it may have been stored: publish it again with its id) |
//! | connection | credentials ([`NatsOptions::user_and_password`] or in the URL, [`token`](NatsOptions::token), [`nkey`](NatsOptions::nkey), [`credentials_file`](NatsOptions::credentials_file)) and TLS ([`root_certificates`](NatsOptions::root_certificates), [`client_certificate`](NatsOptions::client_certificate), [`require_tls`](NatsOptions::require_tls)); refused credentials are [`NatsError::Auth`] at once, an unreachable server [`NatsError::Connect`] within [`connect_timeout`](NatsOptions::connect_timeout) |
//! | consumers | one durable pull consumer per handler, named after it: processes running the same handler share its messages (competing consumers), different handlers each get every event |
//! | received messages | go through the ingest path (size and depth limits, JSON Schema, upcasting): a foreign or malformed message is terminated and dead-lettered with the reason; it never stops the consumer |
//! | fates | success or filtered: ack; transient error: nak with the retry policy's delay, until `max_deliver` (the policy's retries + 1); permanent error, panic, or retries exhausted: term and dead letter; long handlers send in-progress every half `ack_wait` |
//! | local events | `NatsOptions::local::<E>()`: published and handled in this process only, no network |
//!
//! Requests ([`Bus::request`](crate::Bus::request)) stay in the process. The blocking API
//! cannot wait for JetStream's ack and refuses events that would go over NATS.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use futures_util::StreamExt;

use crate::bus::{Bus, PublishError, Slot, Target};
use crate::context::Context;
use crate::envelope::Meta;
use crate::event::{AnyEvent, Event};
use crate::handler::Call;
use crate::receipt::Outcome;

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
    #[cfg_attr(not(feature = "docs"), allow(dead_code))]
    pub(crate) fn prefix_name(&self) -> &str {
        &self.prefix
    }
    /// The stream's name.
    #[cfg_attr(not(feature = "docs"), allow(dead_code))]
    pub(crate) fn stream_name(&self) -> &str {
        &self.stream
    }
    /// How sent events are laid out.
    #[cfg_attr(not(feature = "docs"), allow(dead_code))]
    pub(crate) fn mode(&self) -> ContentMode {
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
    /// Whether [`Bus::consume`](crate::Bus::consume) also watches for messages that no
    /// consumer of the stream takes (an unknown type on its own subject), and reports them to
    /// the log and the dead-letter stream (`<prefix>-dlq.unrouted`: the subject's newest
    /// message, with the count waiting) (default on). Every 2 s it asks JetStream for the
    /// stream's subjects and their counts and compares them with the consumers' filters: one
    /// request per look, nothing per message.
    pub fn report_unrouted(mut self, on: bool) -> NatsOptions {
        self.report_unrouted = on;
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
    /// [`PublishError::Unconfirmed`]: the event may have been stored.
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
    /// The bus has no NATS transport.
    #[error("the bus has no NATS transport: build it with `BusBuilder::transport`")]
    NoTransport,
}

/// A connection to NATS with its stream set up: give it to
/// [`BusBuilder::transport`](crate::BusBuilder::transport).
#[derive(Clone)]
pub struct Nats {
    pub(crate) inner: Arc<Transport>,
}

impl std::fmt::Debug for Nats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nats")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Transport {
    js: jetstream::Context,
    pub(crate) options: NatsOptions,
    /// The address given to [`Nats::connect`] (for the AsyncAPI document).
    #[cfg_attr(not(feature = "docs"), allow(dead_code))]
    pub(crate) url: String,
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
            inner: Arc::new(Transport {
                js,
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
pub(crate) fn without_credentials(url: &str) -> String {
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

/// Why a send failed: it certainly did not reach the stream, or nobody knows.
enum SendError {
    NotSent(String),
    Unconfirmed(String),
}

impl Transport {
    pub(crate) fn is_local(&self, name: &str) -> bool {
        self.options.local.contains(name)
    }

    pub(crate) fn subject(&self, name: &str) -> String {
        format!("{}.{name}", self.options.prefix)
    }

    /// Sends the event as a CloudEvent and waits for JetStream's ack: its stream sequence.
    async fn send(&self, event: &AnyEvent, meta: &Meta) -> Result<u64, SendError> {
        use jetstream::context::PublishErrorKind as K;
        let (headers, body) = encode(event, meta, self.options.mode)
            .map_err(|e| SendError::NotSent(format!("the event cannot be serialized: {e}")))?;
        // Until the client has the message, nothing left this process.
        let ack = self
            .js
            .publish_with_headers(self.subject(meta.name()), headers, body.into())
            .await
            .map_err(|e| SendError::NotSent(e.to_string()))?;
        match ack.await {
            Ok(ack) => Ok(ack.sequence),
            // No answer in time, or the connection broke while waiting: the server may
            // have stored it.
            Err(e) if matches!(e.kind(), K::TimedOut | K::BrokenPipe) => {
                Err(SendError::Unconfirmed(e.to_string()))
            }
            // An answer: JetStream refused it (no stream for the subject, an error reply).
            Err(e) => Err(SendError::NotSent(e.to_string())),
        }
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
    event: &AnyEvent,
    meta: &Meta,
    mode: ContentMode,
) -> Result<(async_nats::HeaderMap, Vec<u8>), serde_json::Error> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        meta.id().to_string().as_str(),
    );
    headers.insert("traceparent", traceparent(meta).as_str());
    let body = match mode {
        ContentMode::Structured => {
            headers.insert("Content-Type", STRUCTURED);
            serde_json::to_vec(&crate::cloudevents::to_json(event, meta)?)?
        }
        ContentMode::Binary => {
            headers.insert("Content-Type", "application/json");
            for (name, value) in crate::cloudevents::attributes(meta) {
                let text = match value {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                headers.insert(
                    format!("{CE_PREFIX}{name}").as_str(),
                    header_value(&text).as_str(),
                );
            }
            serde_json::to_vec(&event.to_json()?)?
        }
    };
    Ok((headers, body))
}

/// A header value as the CloudEvents bindings encode one: space, `"`, `%` and every byte
/// outside printable ASCII percent-encoded (UTF-8), so no value can end a header line.
pub(crate) fn header_value(text: &str) -> String {
    percent_encode(text, |b| {
        (0x21..0x7f).contains(&b) && b != b'"' && b != b'%'
    })
}

/// `text` with every byte `keep` refuses as `%XX`.
fn percent_encode(text: &str, keep: fn(u8) -> bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A diagnostic header value (`Events-Error`): readable, with `%`, control characters and
/// every byte outside ASCII percent-encoded, so no value can end a header line.
fn readable_header_value(text: &str) -> String {
    percent_encode(text, |b| (0x20..0x7f).contains(&b) && b != b'%')
}

/// The text of a percent-encoded header value, or `None` if it does not decode to UTF-8.
fn decode_header_value(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
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
    let mut content_type = None;
    let mut ce = serde_json::Map::new();
    for (name, values) in headers.iter() {
        let name: &str = name.as_ref();
        let Some(value) = values.first() else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.as_str());
        } else if name
            .get(..CE_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(CE_PREFIX))
        {
            let attribute = name[CE_PREFIX.len()..].to_ascii_lowercase();
            let attribute = attribute.as_str();
            if values.len() > 1 || ce.contains_key(attribute) {
                return Err(format!(
                    "header `{}` is given more than once",
                    crate::ingest::clip(name)
                ));
            }
            let text = decode_header_value(value.as_str()).ok_or_else(|| {
                format!(
                    "header `{}` is not percent-encoded UTF-8",
                    crate::ingest::clip(name)
                )
            })?;
            ce.insert(attribute.to_owned(), text.into());
        }
    }
    let is = |prefix: &str| {
        content_type
            .map(str::trim)
            .and_then(|ct| ct.get(..prefix.len()))
            .is_some_and(|ct| ct.eq_ignore_ascii_case(prefix))
    };
    match content_type {
        _ if is("application/cloudevents-batch") => {
            Err("a CloudEvents batch is not an event; send one event a message".into())
        }
        _ if is("application/cloudevents") => Ok(None),
        _ if ce.is_empty() => Ok(None),
        ct => {
            if let Some(ct) = ct {
                ce.entry("datacontenttype").or_insert(ct.into());
            }
            Ok(Some(ce))
        }
    }
}

/// The W3C trace context sent with an event: its own `traceparent` metadata if it is valid
/// W3C trace context, else one made from the envelope: trace id = the correlation id (so a
/// whole flow is one trace, across processes), parent id = the random half of the event id.
fn traceparent(meta: &Meta) -> String {
    if let Some(tp) = meta
        .metadata()
        .get("traceparent")
        .and_then(crate::MetaValue::as_str)
    {
        if crate::cloudevents::is_traceparent(tp) {
            return tp.to_owned();
        }
    }
    let trace = meta.correlation_id().as_uuid().simple().to_string();
    let id = meta.id().as_uuid().simple().to_string();
    format!("00-{trace}-{}-01", &id[16..])
}

impl Bus {
    /// With a NATS transport, whether events named `name` go over NATS.
    pub(crate) fn is_remote(&self, name: &str) -> bool {
        self.inner
            .transport
            .as_ref()
            .is_some_and(|t| !t.is_local(name))
    }

    /// Sends an event over NATS; resolves with its stream sequence.
    #[cold]
    #[inline(never)]
    pub(crate) fn send_remote<'a>(
        &'a self,
        event: &'a AnyEvent,
        meta: &'a Meta,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, PublishError>> + Send + 'a>>
    {
        Box::pin(async move {
            let name = meta.name();
            let Some(transport) = &self.inner.transport else {
                return Err(PublishError::Transport {
                    name,
                    reason: "the bus has no transport".into(),
                });
            };
            transport.send(event, meta).await.map_err(|e| {
                let error = match e {
                    SendError::NotSent(reason) => PublishError::Transport { name, reason },
                    SendError::Unconfirmed(reason) => PublishError::Unconfirmed {
                        name,
                        id: meta.id(),
                        reason,
                    },
                };
                self.refused(name, error)
            })
        })
    }

    /// Starts this process's consumers: one durable pull consumer per `#[handler]` (except
    /// responders and handlers of local events), shared with every other process that runs
    /// the same handler. They run until the returned [`Consumers`] is dropped or stopped.
    ///
    /// # Errors
    /// [`NatsError::NoTransport`], or JetStream refused to create a consumer.
    pub async fn consume(&self) -> Result<Consumers, NatsError> {
        let Some(transport) = self.inner.transport.clone() else {
            return Err(NatsError::NoTransport);
        };
        let stream = transport
            .js
            .get_stream(&transport.options.stream)
            .await
            .map_err(|e| NatsError::JetStream {
                what: format!("stream `{}`", transport.options.stream),
                reason: e.to_string(),
            })?;
        let mut tasks = Vec::new();
        let mut seen = HashSet::new();
        for &handler in self.handlers() {
            if handler.is_responder() || !seen.insert(handler.name()) {
                continue;
            }
            let (filter, slot) = match handler.event() {
                Some(info) => {
                    if transport.is_local(info.name) {
                        continue;
                    }
                    let Some(slot) = self.link_slot(info.type_id(), handler.name()) else {
                        continue;
                    };
                    (transport.subject(info.name), slot)
                }
                None => {
                    let pattern = handler.pattern().unwrap_or(">");
                    let Some(slot) = self.any_slot(handler.name()) else {
                        continue;
                    };
                    (transport.subject(pattern), slot)
                }
            };
            let name = consumer_name(handler.name());
            let max_deliver = slot
                .retry
                .map_or(-1, |p| i64::from(p.max_retries().saturating_add(1)));
            let what = format!("consumer `{name}` of handler `{}`", handler.name());
            let consumer = durable(&stream, &transport, name, filter, max_deliver, what).await?;
            let bus = self.clone();
            let transport = Arc::clone(&transport);
            let limit = handler.concurrency().map_or(1, |n| n.max(1) as usize);
            tasks.push(tokio::spawn(async move {
                consume_loop(bus, transport, consumer, slot, handler.event(), limit).await;
            }));
        }
        let watcher = transport
            .options
            .report_unrouted
            .then(|| tokio::spawn(unrouted_loop(Arc::clone(&transport), stream)));
        Ok(Consumers { tasks, watcher })
    }

    /// The link-time slot of handler `name` in the route of type `type_id`.
    fn link_slot(&self, type_id: std::any::TypeId, name: &str) -> Option<Slot> {
        self.inner
            .fixed
            .get(&type_id)
            .and_then(|slots| slots.iter().find(|s| s.name() == name).cloned())
    }

    /// A wildcard handler's slot (the same in every route it joined).
    fn any_slot(&self, name: &str) -> Option<Slot> {
        self.inner
            .fixed
            .values()
            .flat_map(|slots| slots.iter())
            .find(|s| {
                s.name() == name
                    && matches!(s.target, Target::Handler(Call::Sync(_) | Call::Async(_)))
            })
            .cloned()
    }
}

/// The durable pull consumer `name` of `stream` on subjects `filter`, made if missing.
async fn durable(
    stream: &jetstream::stream::Stream,
    transport: &Transport,
    name: String,
    filter: String,
    max_deliver: i64,
    what: String,
) -> Result<jetstream::consumer::Consumer<pull::Config>, NatsError> {
    let config = pull::Config {
        durable_name: Some(name.clone()),
        filter_subject: filter,
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: transport.options.ack_wait,
        max_deliver,
        deliver_policy: jetstream::consumer::DeliverPolicy::All,
        ..Default::default()
    };
    stream
        .get_or_create_consumer(&name, config)
        .await
        .map_err(|e| NatsError::JetStream {
            what,
            reason: e.to_string(),
        })
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

/// A JetStream consumer name for a handler: its name with anything but letters, digits,
/// `-` and `_` as `_`.
pub(crate) fn consumer_name(handler: &str) -> String {
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

/// This process's consumers; dropping it (or [`stop`](Self::stop)) stops them. Messages
/// being handled then are redelivered by the server after their ack wait.
#[derive(Debug)]
pub struct Consumers {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The unrouted watcher ([`NatsOptions::report_unrouted`]).
    watcher: Option<tokio::task::JoinHandle<()>>,
}

impl Consumers {
    /// How many handler consumers run (the unrouted watcher is not counted).
    pub fn len(&self) -> usize {
        self.tasks.len()
    }
    /// Whether none runs (no handler takes a remote event).
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
    /// Stops them.
    pub fn stop(self) {}
}

impl Drop for Consumers {
    fn drop(&mut self) {
        for t in self.tasks.iter().chain(&self.watcher) {
            t.abort();
        }
    }
}

/// Pulls and handles messages until stopped: one at a time, in stream order, or up to
/// `limit` at once for a handler with `concurrency = limit`. Reconnects are the client's.
async fn consume_loop(
    bus: Bus,
    transport: Arc<Transport>,
    consumer: jetstream::consumer::Consumer<pull::Config>,
    slot: Slot,
    typed: Option<&'static crate::EventInfo>,
    limit: usize,
) {
    let slot = Arc::new(slot);
    let permits = Arc::new(tokio::sync::Semaphore::new(limit));
    // Aborted with this task: calls in flight stop with the consumer, and the server
    // redelivers their messages after the ack wait.
    let mut running = tokio::task::JoinSet::new();
    loop {
        let mut messages = next_batch(&consumer, transport.options.prefetch, slot.name()).await;
        while let Some(next) = messages.next().await {
            match next {
                Ok(message) if limit == 1 => {
                    handle(&bus, &transport, &slot, typed, message).await;
                }
                Ok(message) => {
                    let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                        return;
                    };
                    while running.try_join_next().is_some() {}
                    let (bus, transport, slot) =
                        (bus.clone(), Arc::clone(&transport), Arc::clone(&slot));
                    running.spawn(async move {
                        handle(&bus, &transport, &slot, typed, message).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!(handler = slot.name(), error = %e, "pulling messages failed");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
async fn unrouted_loop(transport: Arc<Transport>, mut stream: jetstream::stream::Stream) {
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
    transport: &Transport,
    stream: &mut jetstream::stream::Stream,
    subject: &str,
    count: usize,
) {
    let shown = crate::ingest::clip(subject);
    let reason = format!(
        "no consumer of stream `{}` takes subject `{shown}`: no process runs a handler for it \
         ({count} message{} waiting)",
        transport.options.stream,
        if count == 1 { "" } else { "s" }
    );
    tracing::error!(subject = %shown, count, "{reason}");
    let newest = match stream.get_last_raw_message_by_subject(subject).await {
        Ok(m) => m.payload.to_vec(),
        Err(_) => Vec::new(),
    };
    let id = format!("unrouted:{subject}:{count}");
    dead_letter_raw(transport, "unrouted", &newest, &reason, Some(&id)).await;
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

/// What to tell JetStream about one message.
enum Fate {
    Ack,
    Nak(Duration),
    Term { error: String, permanent: bool },
}

/// Handles one message for one handler and settles it with JetStream.
async fn handle(
    bus: &Bus,
    transport: &Transport,
    slot: &Slot,
    typed: Option<&'static crate::EventInfo>,
    message: jetstream::Message,
) {
    let attempt = message
        .info()
        .map_or(1, |i| u32::try_from(i.delivered).unwrap_or(u32::MAX).max(1));
    let decoded = bus
        .decode_remote(
            message.subject.as_str(),
            message.headers.as_ref(),
            &message.payload,
            typed,
        )
        .and_then(|(event, info, options)| {
            match bus.try_meta_of(info, None, options) {
                Ok(meta) => Ok(Ok((event, meta))),
                // A disabled or closing bus takes the message later, or another process does.
                Err(e @ (PublishError::Disabled { .. } | PublishError::Closed)) => Ok(Err(e)),
                Err(e) => Err(e.to_string()),
            }
        });
    let fate = match decoded {
        Ok(Err(refused)) => {
            tracing::debug!(handler = slot.name(), %refused, "message left for later");
            Fate::Nak(Duration::from_secs(1))
        }
        Err(reason) => {
            tracing::error!(
                handler = slot.name(), subject = %message.subject, %reason,
                "a message was refused and terminated"
            );
            dead_letter_raw(transport, slot.name(), &message.payload, &reason, None).await;
            Fate::Term {
                error: reason,
                permanent: true,
            }
        }
        Ok(Ok((event, meta))) => {
            let ctx = Context {
                bus: bus.clone(),
                meta,
                attempt,
            };
            let call = with_progress(
                &message,
                transport.options.ack_wait / 2,
                crate::bus::call_once(slot, &*event, &ctx),
            );
            let outcome = if crate::bus::spans_on() {
                // The handler span is its child; `traceparent` ties it to the publisher.
                let traceparent = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("traceparent"))
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                let span = tracing::debug_span!(
                    "receive",
                    handler = slot.name(),
                    event = ctx.meta.name(),
                    event_id = %ctx.meta.id(),
                    correlation_id = %ctx.meta.correlation_id(),
                    traceparent = %traceparent,
                    attempt,
                );
                tracing::Instrument::instrument(call, span).await
            } else {
                call.await
            };
            // The same decision as in process: retried (here by the broker, after the
            // delay) or dead-lettered.
            let fate = match crate::retry::fate(&outcome, slot.retry, attempt) {
                crate::retry::Fate::Retry { after, .. } => Fate::Nak(after),
                crate::retry::Fate::DeadLetter { error, permanent } => {
                    Fate::Term { error, permanent }
                }
                _ => Fate::Ack,
            };
            if let Fate::Term { error, permanent } = &fate {
                let json = event
                    .to_json()
                    .unwrap_or_else(|e| serde_json::Value::String(format!("unserializable: {e}")));
                bus.dead_letter(&ctx, slot.name(), json, error.clone(), *permanent);
                dead_letter_raw(transport, slot.name(), &message.payload, error, None).await;
            }
            fate
        }
    };
    let kind = match fate {
        Fate::Ack => AckKind::Ack,
        Fate::Nak(after) => AckKind::Nak(Some(after)),
        Fate::Term { .. } => AckKind::Term,
    };
    if let Err(e) = message.ack_with(kind).await {
        tracing::warn!(handler = slot.name(), error = %e, "acknowledging a message failed; the server will redeliver it");
    }
}

/// Runs `call`, telling the server every `every` that the message is still being worked on.
async fn with_progress<F: std::future::Future<Output = Outcome>>(
    message: &jetstream::Message,
    every: Duration,
    call: F,
) -> Outcome {
    let mut call = std::pin::pin!(call);
    let every = every.max(Duration::from_millis(100));
    loop {
        let tick = tokio::time::sleep(every);
        match futures_util::future::select(call.as_mut(), std::pin::pin!(tick)).await {
            futures_util::future::Either::Left((outcome, _)) => return outcome,
            futures_util::future::Either::Right(((), _)) => {
                let _ = message.ack_with(AckKind::Progress).await;
            }
        }
    }
}

/// Publishes a refused or failed message to the dead-letter stream, with the reason.
/// `id`, when given, is the dead letter's `Nats-Msg-Id`: one id is stored once.
async fn dead_letter_raw(
    transport: &Transport,
    handler: &str,
    payload: &[u8],
    reason: &str,
    id: Option<&str>,
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
        readable_header_value(&crate::ingest::clip_to(reason, 300)).as_str(),
    );
    if let Some(id) = id {
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            header_value(id).as_str(),
        );
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

impl Bus {
    /// A received message as the handler's event type, through the ingest path (limits,
    /// schema, upcasting), with the options that give it its envelope as published.
    #[allow(clippy::type_complexity)]
    fn decode_remote(
        &self,
        subject: &str,
        headers: Option<&async_nats::HeaderMap>,
        body: &[u8],
        typed: Option<&'static crate::EventInfo>,
    ) -> Result<
        (
            Box<AnyEvent>,
            &'static crate::EventInfo,
            crate::PublishOptions,
        ),
        String,
    > {
        let attributes = received_attributes(headers)?;
        let (event, options) = self
            .decode_cloudevent_parts(attributes, body)
            .map_err(|e| e.to_string())?;
        // The subject says which consumers see the message: it must be the type's own.
        if let Some(transport) = &self.inner.transport {
            let name = event.info().name;
            let own = subject
                .strip_prefix(transport.options.prefix.as_str())
                .and_then(|rest| rest.strip_prefix('.'))
                == Some(name);
            if !own {
                return Err(format!(
                    "the message on subject `{}` is a `{name}` event, which travels on `{}`",
                    crate::ingest::clip(subject),
                    transport.subject(name)
                ));
            }
        }
        let (event, info) = match typed {
            Some(target) => self.upcast_to(event, target)?,
            None => {
                let info = event.info();
                (event, info)
            }
        };
        Ok((event, info, options))
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

    #[test]
    fn header_values_cannot_break_a_line_and_decode_back() {
        let hostile = "00-ab\r\nNats-Msg-Id: 1 \"%é";
        let encoded = header_value(hostile);
        assert!(
            encoded.bytes().all(|b| (0x21..0x7f).contains(&b)),
            "{encoded}"
        );
        assert_eq!(decode_header_value(&encoded).as_deref(), Some(hostile));
        assert_eq!(decode_header_value("%zz"), None);
        assert_eq!(decode_header_value("%C3"), None, "not UTF-8");
    }
}
