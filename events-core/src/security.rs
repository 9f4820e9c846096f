//! Who may put events on the bus from outside: [`Principal`]s, the [`AccessRules`] that say
//! which principal may publish which events, and the [`RateLimits`] that say how often.
//!
//! The caller's identity is a value the entry point is given
//! ([`Bus::ingress`](crate::Bus::ingress)), never read from the payload: whatever
//! authenticated the caller (an HTTP layer's credential check, a NATS message's verified
//! signature) makes the `Principal`, and the bus checks it against the rules before it reads
//! the payload. The envelope records it apart from the sender-claimed `source`
//! ([`Meta::principal`](crate::Meta::principal)), so a filter on the principal
//! ([`Filter::principal`](crate::Filter::principal)) cannot be fooled by a spoofed `source`.
//!
//! In-process typed publishing ([`Bus::publish`](crate::Bus::publish)) is code of the
//! service itself and is not checked.
//!
//! ```
//! use events::security::{AccessRules, Principal, RateLimit, RateLimits};
//!
//! let rules = AccessRules::new()
//!     .allow("billing", "payment.>")      // billing may publish every `payment.` event
//!     .allow("*", "order.placed")         // any authenticated principal may place orders
//!     .allow("anonymous", "ping");        // and anyone at all may ping
//! let limits = RateLimits::new()
//!     .per_principal(RateLimit::per_second(100).burst(20))
//!     .per_event("order.placed", RateLimit::per_second(1_000));
//! let caller = Principal::new("billing").unwrap();
//! assert!(rules.permits(&caller, "payment.captured"));
//! assert!(!rules.permits(&Principal::anonymous(), "order.placed"));
//! # let _ = limits;
//! ```

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// The metadata key under which the envelope keeps the authenticated principal. It has a
/// `.`, so no input from outside can set it ([`is_metadata_key`](crate::is_metadata_key)),
/// and it never leaves the process as a CloudEvents extension: a receiver authenticates its
/// own callers.
pub const PRINCIPAL_KEY: &str = "events.principal";

/// The longest principal name, in bytes.
pub const MAX_PRINCIPAL_BYTES: usize = 128;

const ANONYMOUS: &str = "anonymous";

/// An authenticated caller of an entry point that takes outside input: a service, a user, an
/// API key's owner. Made by whatever authenticated the caller; the bus only checks it
/// against the [`AccessRules`] and records it in the envelope.
///
/// A name is 1 to 128 bytes of ASCII letters, digits and `.` `_` `-` `:` `@` `/`: it reaches
/// log lines, metric labels, error messages and the store, so nothing else is let in.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal(Arc<str>);

impl Principal {
    /// The principal named `name`.
    ///
    /// # Errors
    /// [`InvalidPrincipal`] when `name` is empty, longer than [`MAX_PRINCIPAL_BYTES`], holds
    /// another character than those above, or is `*` (which rules use for "any").
    pub fn new(name: impl AsRef<str>) -> Result<Principal, InvalidPrincipal> {
        let name = name.as_ref();
        check_name(name)?;
        Ok(Principal(name.into()))
    }

    /// The caller nobody authenticated: what the entry points without a principal
    /// ([`Bus::publish_json`](crate::Bus::publish_json) and the others) act as. With
    /// [`AccessRules`], it may publish only what a rule for `"anonymous"` allows; its events
    /// carry no principal.
    pub fn anonymous() -> Principal {
        static ANON: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
        Principal(Arc::clone(ANON.get_or_init(|| ANONYMOUS.into())))
    }

    /// Whether this is [`Principal::anonymous`].
    pub fn is_anonymous(&self) -> bool {
        &*self.0 == ANONYMOUS
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Principal({})", self.0)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_name(name: &str) -> Result<(), InvalidPrincipal> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_PRINCIPAL_BYTES {
        "it is longer than 128 bytes"
    } else if name == "*" {
        "`*` means any principal in a rule; it names none"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-:@/".contains(&b))
    {
        "it holds a character other than ASCII letters, digits and `.` `_` `-` `:` `@` `/`"
    } else {
        return Ok(());
    };
    Err(InvalidPrincipal {
        name: crate::text::clip(name, 64),
        reason,
    })
}

/// A principal name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid principal name `{name}`: {reason}")]
pub struct InvalidPrincipal {
    /// The name as given (control characters escaped, clipped).
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Which principals may publish which events from outside. Without rules
/// ([`BusBuilder::access`](crate::BusBuilder::access) not called) every caller may publish
/// every event; with rules, a caller may publish an event only if a rule allows it, and
/// every other attempt is refused with [`IngestError::Forbidden`](crate::IngestError)
/// before the payload is read.
///
/// A rule names a principal (or `"*"`: any principal but the anonymous one, or
/// `"anonymous"`) and an event-name pattern (`order.placed`, `order.*`, `order.>`: see
/// [`Filter::name`](crate::Filter::name)). Queries are events: a rule for a query's name
/// lets the principal send that query. The bus checks the rules at
/// [`build`](crate::BusBuilder::build) and lists every bad one.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct AccessRules {
    pub(crate) rules: Vec<(String, String)>,
}

impl AccessRules {
    /// No rule: every caller is refused.
    pub fn new() -> AccessRules {
        AccessRules::default()
    }

    /// Lets `principal` (a name, `"*"` or `"anonymous"`) publish the events that `pattern`
    /// matches.
    pub fn allow(mut self, principal: impl Into<String>, pattern: impl Into<String>) -> Self {
        self.rules.push((principal.into(), pattern.into()));
        self
    }

    /// Whether a rule lets `principal` publish event `name`. `name` may be anything a caller
    /// sent: a pattern matches only event names.
    pub fn permits(&self, principal: &Principal, name: &str) -> bool {
        self.rules.iter().any(|(who, pattern)| {
            let who_matches = if who == "*" {
                !principal.is_anonymous()
            } else {
                who == principal.name()
            };
            who_matches && crate::pattern::matches(pattern, name)
        })
    }

    /// Every problem with the rules: a principal or a pattern that is not one.
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (who, pattern) in &self.rules {
            if who != "*" {
                if let Err(e) = check_name(who) {
                    out.push(format!("access rule for `{}`: {e}", e.name));
                }
            }
            if let Err(e) = crate::pattern::check(pattern) {
                out.push(format!(
                    "access rule for `{}`: {e}",
                    crate::text::clip(who, 64)
                ));
            }
        }
        out
    }
}

/// How often: a number of events per period, with a burst (a GCRA, as
/// [`governor`](https://docs.rs/governor) implements it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub(crate) every: Duration,
    pub(crate) burst: NonZeroU32,
}

impl RateLimit {
    /// `n` events a second (at least 1), in a burst of up to `n`.
    pub fn per_second(n: u32) -> RateLimit {
        RateLimit::per(Duration::from_secs(1), n)
    }

    /// `n` events a minute (at least 1), in a burst of up to `n`.
    pub fn per_minute(n: u32) -> RateLimit {
        RateLimit::per(Duration::from_secs(60), n)
    }

    /// `n` events (at least 1) per `period` (at least a nanosecond), in a burst of up to `n`.
    pub fn per(period: Duration, n: u32) -> RateLimit {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let every = (period / n.get()).max(Duration::from_nanos(1));
        RateLimit { every, burst: n }
    }

    /// At most `burst` events (at least 1) at once; the rate stays the same.
    pub fn burst(mut self, burst: u32) -> RateLimit {
        self.burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        self
    }
}

/// How often callers may publish from outside. Without limits
/// ([`BusBuilder::rate_limits`](crate::BusBuilder::rate_limits) not called) nothing is
/// limited. A call past a limit is refused with
/// [`IngestError::RateLimited`](crate::IngestError), which says when to retry, before the
/// payload is read.
///
/// The per-principal limit gives every principal a budget of its own (the anonymous one
/// included: every unauthenticated caller shares it). A per-event limit gives every event
/// name its pattern matches a budget of its own, shared by every caller: it protects that
/// event's handlers. An event counts against the first per-event limit whose pattern
/// matches it.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct RateLimits {
    pub(crate) per_principal: Option<RateLimit>,
    pub(crate) per_event: Vec<(String, RateLimit)>,
}

impl RateLimits {
    /// No limit.
    pub fn new() -> RateLimits {
        RateLimits::default()
    }

    /// Every principal may publish at most `limit`.
    pub fn per_principal(mut self, limit: RateLimit) -> Self {
        self.per_principal = Some(limit);
        self
    }

    /// Every event name `pattern` matches may be published at most `limit`, by all callers
    /// together.
    pub fn per_event(mut self, pattern: impl Into<String>, limit: RateLimit) -> Self {
        self.per_event.push((pattern.into(), limit));
        self
    }

    /// Every problem with the limits: a pattern that is not one.
    pub(crate) fn problems(&self) -> Vec<String> {
        self.per_event
            .iter()
            .filter_map(|(p, _)| crate::pattern::check(p).err())
            .map(|e| format!("rate limit: {e}"))
            .collect()
    }
}

/// Which limit refused a call ([`IngestError::RateLimited`](crate::IngestError)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// The caller's own budget ([`RateLimits::per_principal`]).
    Principal,
    /// The event's budget, shared by every caller ([`RateLimits::per_event`]).
    Event,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Principal => "the principal's",
            Limit::Event => "the event's",
        })
    }
}

/// The header that carries an event's signature across processes
/// ([`SigningKey::sign_message`]): `v1 key=<key id> sig=<128 hex digits>`.
pub const SIGNATURE_HEADER: &str = "Events-Signature";

/// Which headers a signature covers: every header a receiving bus reads. The CloudEvents
/// attributes (`ce-*`), `Content-Type`, `Content-Encoding`, the broker's dedup id
/// (`Nats-Msg-Id`) and the trace context.
fn signed_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("ce-")
        || matches!(
            n.as_str(),
            "content-type" | "content-encoding" | "nats-msg-id" | "traceparent" | "tracestate"
        )
}

/// What is signed: the covered headers (names lower-cased, sorted with their values), then
/// the SHA-256 of the body as sent. Hashing the body keeps a large one from being copied.
fn signed_bytes<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>, body: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let mut covered: Vec<(String, &str)> = headers
        .into_iter()
        .filter(|(n, _)| signed_header(n))
        .map(|(n, v)| (n.to_ascii_lowercase(), v))
        .collect();
    covered.sort_unstable();
    let mut out = b"events-signature-v1\n".to_vec();
    for (name, value) in covered {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(&sha2::Sha256::digest(body));
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    if text.len() != 2 * N {
        return None;
    }
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// A service's Ed25519 key (`ed25519-dalek`) for signing the events it sends to other
/// processes, so that a consumer can trust the publishing service and not only the broker
/// (see `NatsOptions::sign_with` and `NatsOptions::verify_with` in `events::nats`). The key
/// id names it in every signature; the [`Keyring`] of a consumer maps it to a principal.
/// Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct SigningKey {
    id: Arc<str>,
    key: ed25519_dalek::SigningKey,
}

impl SigningKey {
    /// The key with id `id` (a principal-like name: see [`Principal::new`]) and the 32-byte
    /// secret `secret` (keep it in a secret store; `SigningKey::generate` makes one).
    ///
    /// # Errors
    /// [`InvalidPrincipal`] when `id` is not a valid name.
    pub fn from_bytes(id: &str, secret: &[u8; 32]) -> Result<SigningKey, InvalidPrincipal> {
        check_name(id)?;
        Ok(SigningKey {
            id: id.into(),
            key: ed25519_dalek::SigningKey::from_bytes(secret),
        })
    }

    /// A new random key with id `id`, from the operating system's generator.
    ///
    /// # Errors
    /// [`InvalidPrincipal`] when `id` is not a valid name.
    ///
    /// # Panics
    /// When the operating system has no random generator to give.
    pub fn generate(id: &str) -> Result<SigningKey, InvalidPrincipal> {
        let mut secret = [0u8; 32];
        #[allow(clippy::expect_used)]
        getrandom::fill(&mut secret).expect("the operating system's random generator");
        SigningKey::from_bytes(id, &secret)
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The 32-byte secret, to keep in a secret store.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The 32-byte public key, for the consumers' [`Keyring`]s.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The [`SIGNATURE_HEADER`] value for a message with these headers and body (the body
    /// as sent: compressed, if it is).
    pub fn sign_message<'a>(
        &self,
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
        body: &[u8],
    ) -> String {
        use ed25519_dalek::Signer;
        let signature = self.key.sign(&signed_bytes(headers, body));
        format!("v1 key={} sig={}", self.id, hex(&signature.to_bytes()))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .field("public_key", &hex(&self.public_key()))
            .finish_non_exhaustive()
    }
}

/// The public keys a consumer trusts, each with the principal its signatures authenticate.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct Keyring {
    keys: std::collections::HashMap<String, (ed25519_dalek::VerifyingKey, Principal)>,
}

impl Keyring {
    /// No key: every message is refused.
    pub fn new() -> Keyring {
        Keyring::default()
    }

    /// Trusts the key `id` with public key `public_key`: a message it signs comes from
    /// `principal`.
    ///
    /// # Errors
    /// [`InvalidPrincipal`] when `id` is not a valid name or `public_key` is not an Ed25519
    /// public key (reason says which).
    pub fn trust(
        mut self,
        id: &str,
        public_key: [u8; 32],
        principal: Principal,
    ) -> Result<Keyring, InvalidPrincipal> {
        check_name(id)?;
        let key =
            ed25519_dalek::VerifyingKey::from_bytes(&public_key).map_err(|_| InvalidPrincipal {
                name: id.to_owned(),
                reason: "its public key is not an Ed25519 public key",
            })?;
        self.keys.insert(id.to_owned(), (key, principal));
        Ok(self)
    }

    /// Checks a message's signature (`signature`: its [`SIGNATURE_HEADER`], if it has one):
    /// the principal of the key that signed it.
    ///
    /// # Errors
    /// [`SignatureError`]: no signature, a malformed one, an unknown key, or a signature
    /// that does not match the headers and body (tampered, or made with another key).
    pub fn verify<'a>(
        &self,
        signature: Option<&str>,
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
        body: &[u8],
    ) -> Result<&Principal, SignatureError> {
        let signature = signature.ok_or(SignatureError::Unsigned)?;
        let mut parts = signature.split(' ');
        let (Some("v1"), Some(key), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SignatureError::Malformed);
        };
        let (Some(id), Some(sig)) = (key.strip_prefix("key="), sig.strip_prefix("sig=")) else {
            return Err(SignatureError::Malformed);
        };
        let sig = unhex::<64>(sig).ok_or(SignatureError::Malformed)?;
        let (key, principal) = self
            .keys
            .get(id)
            .ok_or_else(|| SignatureError::UnknownKey(crate::text::clip(id, 64)))?;
        key.verify_strict(
            &signed_bytes(headers, body),
            &ed25519_dalek::Signature::from_bytes(&sig),
        )
        .map_err(|_| SignatureError::Mismatch)?;
        Ok(principal)
    }
}

/// Why a message's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// It has no signature.
    #[error("the message is not signed (no `Events-Signature` header)")]
    Unsigned,
    /// The signature header is not `v1 key=<id> sig=<128 hex digits>`.
    #[error("the `Events-Signature` header is malformed")]
    Malformed,
    /// No trusted key has this id.
    #[error("the message is signed with key `{0}`, which is not trusted")]
    UnknownKey(String),
    /// The signature does not match the headers and body.
    #[error("the signature does not match the message: it was changed, or signed with another key")]
    Mismatch,
}

/// Whether `name` is one of the bus's own audit records (`events.audit.>`, see
/// the `audit` module): kept out of outside input and off the wire.
pub(crate) fn is_audit_record(name: &str) -> bool {
    name.starts_with("events.audit.")
}
