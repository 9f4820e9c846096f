//! Personal data that can be forgotten ("crypto-shredding").
//!
//! A field of type [`Personal<T>`] holds data about a person, the event's *data subject*,
//! named by the field marked `#[event(subject)]`:
//!
//! ```standalone_crate
//! use events::personal::Personal;
//!
//! #[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! #[event(name = "customer.registered")]
//! struct CustomerRegistered {
//!     #[event(subject)]
//!     customer_id: String,            // stays readable: it names the key
//!     email: Personal<String>,        // encrypted at rest and on the wire
//!     plan: String,
//! }
//! ```
//!
//! Handlers get the value in memory as it was published. Before an event reaches the store
//! or the wire, every `Personal` value in it (nested ones too) is encrypted with its
//! subject's key (XChaCha20-Poly1305, `chacha20poly1305`; a 32-byte key per subject kept in
//! a [`KeyStore`](crate::store::KeyStore)) and written as `{"$personal": "v1.<key id>.<nonce>.<ciphertext>"}`.
//! [`Bus::forget`](crate::Bus::forget) deletes the subject's key: from then on replay,
//! recovery, queries, dead letters and aggregates read those values as
//! [`Personal::Forgotten`]: never garbage, never an error. The subject's later events get a
//! new key.
//!
//! The type says it in the handler's signature: a `Personal<T>` may have been forgotten, so
//! the handler decides what to do without it.

use std::cell::RefCell;
use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value about a person that can be forgotten: see the [module](self).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Personal<T> {
    /// The value.
    Known(T),
    /// Its subject was forgotten ([`Bus::forget`](crate::Bus::forget)), or this process
    /// has no access to the subject's key.
    Forgotten,
}

impl<T> Personal<T> {
    /// The value `value`.
    pub fn new(value: T) -> Personal<T> {
        Personal::Known(value)
    }
    /// The value, unless forgotten.
    pub fn get(&self) -> Option<&T> {
        match self {
            Personal::Known(v) => Some(v),
            Personal::Forgotten => None,
        }
    }
    /// The value, unless forgotten.
    pub fn into_inner(self) -> Option<T> {
        match self {
            Personal::Known(v) => Some(v),
            Personal::Forgotten => None,
        }
    }
    /// Whether it was forgotten.
    pub fn is_forgotten(&self) -> bool {
        matches!(self, Personal::Forgotten)
    }
}

impl<T> From<T> for Personal<T> {
    fn from(value: T) -> Personal<T> {
        Personal::Known(value)
    }
}

/// Never shows the value.
impl<T> fmt::Debug for Personal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Personal::Known(_) => f.write_str("Personal(<personal>)"),
            Personal::Forgotten => f.write_str("Personal(<forgotten>)"),
        }
    }
}

/// The JSON key of the sealed and forgotten forms.
pub const PERSONAL_KEY: &str = "$personal";
/// What a forgotten value is written as: `{"$personal": "forgotten"}`.
const FORGOTTEN: &str = "forgotten";
/// Why an event with personal data could not be sealed.
pub(crate) const NO_KEY: &str = "the event holds `Personal` data, and there is no key to seal \
                                 it with: it names no data subject (`#[event(subject)]`), or \
                                 the bus keeps no keys (a store with a key store, or \
                                 `BusBuilder::keys`)";
/// What logs and dumps show for a personal value.
pub(crate) const SHOWN: &str = "[personal]";

/// The id of a data key: 16 random bytes, written in hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 16]);

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", hex(&self.0))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// One subject's data key. Its `Debug` shows the id only.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DataKey {
    /// Its id, written in every value it seals.
    pub id: KeyId,
    /// The 32-byte XChaCha20-Poly1305 key.
    pub secret: [u8; 32],
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    /// A new random key.
    ///
    /// # Errors
    /// When the operating system has no random bytes to give.
    pub fn generate() -> Result<DataKey, getrandom::Error> {
        let mut id = [0u8; 16];
        let mut secret = [0u8; 32];
        getrandom::fill(&mut id)?;
        getrandom::fill(&mut secret)?;
        Ok(DataKey {
            id: KeyId(id),
            secret,
        })
    }

    /// `plain` sealed: `v1.<key id>.<nonce>.<ciphertext>`, hex, the key id as associated
    /// data.
    pub(crate) fn seal(&self, plain: &[u8]) -> Result<String, String> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|e| e.to_string())?;
        let cipher = XChaCha20Poly1305::new((&self.secret).into());
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &self.id.0,
                },
            )
            .map_err(|_| "encryption failed".to_owned())?;
        Ok(format!(
            "v1.{}.{}.{}",
            hex(&self.id.0),
            hex(&nonce),
            hex(&sealed)
        ))
    }

    /// The plain bytes of `sealed` (its key id already checked), or `None` when it does not
    /// open with this key.
    fn open(&self, nonce: &[u8; 24], sealed: &[u8]) -> Option<Vec<u8>> {
        XChaCha20Poly1305::new((&self.secret).into())
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &self.id.0,
                },
            )
            .ok()
    }
}

/// Where the keys of sealed values are found while reading stored or received events.
pub trait KeyLookup: Send + Sync {
    /// The key with id `id`, or `None` when it is gone (forgotten) or unknown.
    fn key(&self, id: &KeyId) -> Option<DataKey>;
}

/// How `Personal` values serialize on this thread now.
enum Mode {
    /// Sealed with this key (an event going to the store or the wire); `None`: the event
    /// names no data subject or the bus keeps no keys, which is refused.
    AtRest(Option<DataKey>, &'static str),
    /// As `"[personal]"` (logs, dumps).
    Shown,
}

thread_local! {
    static MODE: RefCell<Option<Mode>> = const { RefCell::new(None) };
    static LOOKUP: RefCell<Option<std::sync::Arc<dyn KeyLookup>>> = const { RefCell::new(None) };
}

/// Restores the previous mode when dropped (also on a panic inside `f`).
struct Restore<T: 'static>(
    &'static std::thread::LocalKey<RefCell<Option<T>>>,
    Option<T>,
);

impl<T: 'static> Drop for Restore<T> {
    fn drop(&mut self) {
        let previous = self.1.take();
        self.0.with(|m| *m.borrow_mut() = previous);
    }
}

/// Runs `f` with `Personal` values sealed with `key` (`why` says what is missing when it is
/// `None`): how an event is serialized for the store or the wire.
pub(crate) fn at_rest<R>(key: Option<DataKey>, why: &'static str, f: impl FnOnce() -> R) -> R {
    let previous = MODE.with(|m| m.borrow_mut().replace(Mode::AtRest(key, why)));
    let _restore = Restore(&MODE, previous);
    f()
}

/// Runs `f` with `Personal` values shown as `"[personal]"`.
pub(crate) fn shown<R>(f: impl FnOnce() -> R) -> R {
    let previous = MODE.with(|m| m.borrow_mut().replace(Mode::Shown));
    let _restore = Restore(&MODE, previous);
    f()
}

/// Runs `f` with sealed values opened with the keys `keys` finds: how stored and received
/// events are read. Without it, a sealed value reads as forgotten.
pub(crate) fn unsealing<R>(keys: &std::sync::Arc<dyn KeyLookup>, f: impl FnOnce() -> R) -> R {
    let previous = LOOKUP.with(|l| l.borrow_mut().replace(std::sync::Arc::clone(keys)));
    let _restore = Restore(&LOOKUP, previous);
    f()
}

/// The key `id`, from the lookup of [`unsealing`], if one is set.
fn lookup(id: &KeyId) -> Option<DataKey> {
    let keys = LOOKUP.with(|l| l.borrow().clone())?;
    keys.key(id)
}

impl<T: Serialize> Serialize for Personal<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap};
        enum Out {
            Plain,
            Shown,
            Sealed(String),
        }
        // What the mode asks for, read and let go of before anything is serialized (a
        // nested value reads the mode again).
        let mode = MODE.with(|m| match &*m.borrow() {
            None => Ok(None),
            Some(Mode::Shown) => Ok(Some(None)),
            Some(Mode::AtRest(None, why)) => Err(*why),
            Some(Mode::AtRest(Some(key), _)) => Ok(Some(Some(*key))),
        });
        let out = match mode {
            Err(why) => Err(why.to_owned()),
            Ok(None) => Ok(Out::Plain),
            Ok(Some(None)) => Ok(Out::Shown),
            Ok(Some(Some(key))) => match self {
                Personal::Forgotten => Ok(Out::Plain),
                Personal::Known(v) => serde_json::to_vec(&PlainValue(v))
                    .map_err(|e| e.to_string())
                    .and_then(|plain| key.seal(&plain))
                    .map(Out::Sealed),
            },
        };
        match (out.map_err(S::Error::custom)?, self) {
            (Out::Shown, _) => serializer.serialize_str(SHOWN),
            (Out::Sealed(text), _) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry(PERSONAL_KEY, &text)?;
                map.end()
            }
            (Out::Plain, Personal::Known(v)) => v.serialize(serializer),
            (Out::Plain, Personal::Forgotten) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry(PERSONAL_KEY, FORGOTTEN)?;
                map.end()
            }
        }
    }
}

/// A value serialized with no mode set (its own `Personal` fields plain), then restored.
struct PlainValue<'a, T>(&'a T);

impl<T: Serialize> Serialize for PlainValue<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let previous = MODE.with(|m| m.borrow_mut().take());
        let _restore = Restore(&MODE, previous);
        self.0.serialize(serializer)
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Personal<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = serde_json::Value::deserialize(deserializer)?;
        if let serde_json::Value::Object(map) = &value {
            if map.len() == 1 {
                if let Some(marker) = map.get(PERSONAL_KEY) {
                    let Some(text) = marker.as_str() else {
                        return Err(D::Error::custom(
                            "`$personal` holds `\"forgotten\"` or a sealed value",
                        ));
                    };
                    return Ok(open(text)
                        .and_then(|plain| serde_json::from_slice(&plain).ok())
                        .map_or(Personal::Forgotten, Personal::Known));
                }
            }
        }
        T::deserialize(value)
            .map(Personal::Known)
            .map_err(D::Error::custom)
    }
}

/// The plain bytes of a sealed value, or `None`: forgotten, not sealed with a key this
/// thread's lookup has, or not a sealed value at all.
fn open(text: &str) -> Option<Vec<u8>> {
    let mut parts = text.split('.');
    let ("v1", Some(id), Some(nonce), Some(sealed), None) = (
        parts.next()?,
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let id = KeyId(unhex::<16>(id)?);
    let nonce = unhex::<24>(nonce)?;
    let sealed = unhex_vec(sealed)?;
    lookup(&id)?.open(&nonce, &sealed)
}

/// The JSON Schema: the value's, or the sealed or forgotten form
/// (`{"$personal": "..."}`), marked `x-events-personal`.
impl<T: schemars::JsonSchema> schemars::JsonSchema for Personal<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("Personal_{}", T::schema_name()).into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let inner = generator.subschema_for::<T>();
        schemars::json_schema!({
            "description": "Personal data: encrypted with its data subject's key at rest and on the wire, where it is `{\"$personal\": \"v1.<key id>.<nonce>.<ciphertext>\"}`; `{\"$personal\": \"forgotten\"}` once the subject is forgotten.",
            "x-events-personal": true,
            "anyOf": [
                inner,
                {
                    "type": "object",
                    "properties": { "$personal": { "type": "string" } },
                    "required": ["$personal"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

pub(crate) fn unhex_vec(text: &str) -> Option<Vec<u8>> {
    let b = text.as_bytes();
    if b.len() % 2 != 0 {
        return None;
    }
    b.chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

pub(crate) fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    unhex_vec(text)?.try_into().ok()
}

/// The subject of the key that seals `#[event(redact)]` fields at rest: reserved (a data
/// subject may not start with `events:`), so no `forget` can reach it.
pub(crate) const REDACTION_SUBJECT: &str = "events:redacted";

/// Seals the top-level fields `fields` of `payload` with `key`, each as
/// `{"$personal": "v1..."}`: how `#[event(redact)]` values are kept at rest.
pub(crate) fn seal_fields(
    payload: &mut serde_json::Value,
    fields: &[&str],
    key: &DataKey,
) -> Result<(), String> {
    let serde_json::Value::Object(map) = payload else {
        return Ok(());
    };
    for field in fields {
        if let Some(value) = map.get_mut(*field) {
            let plain = serde_json::to_vec(value).map_err(|e| e.to_string())?;
            let mut sealed = serde_json::Map::new();
            sealed.insert(PERSONAL_KEY.into(), key.seal(&plain)?.into());
            *value = serde_json::Value::Object(sealed);
        }
    }
    Ok(())
}

/// Opens the sealed top-level fields `fields` of `payload` with this thread's lookup
/// ([`unsealing`]); a field that cannot be opened is left sealed (and then does not
/// deserialize: a redacted value is never forgotten, its key cannot be).
pub(crate) fn open_fields(payload: &mut serde_json::Value, fields: &[&str]) {
    let serde_json::Value::Object(map) = payload else {
        return;
    };
    for field in fields {
        let Some(value) = map.get_mut(*field) else {
            continue;
        };
        let opened = match &*value {
            serde_json::Value::Object(m) if m.len() == 1 => m
                .get(PERSONAL_KEY)
                .and_then(serde_json::Value::as_str)
                .and_then(open)
                .and_then(|plain| serde_json::from_slice(&plain).ok()),
            _ => None,
        };
        if let Some(opened) = opened {
            *value = opened;
        }
    }
}

/// The top-level properties of an event's `schema` that hold a [`Personal`] value at any
/// depth: their schema, or one it names by `$ref` (followed once each), has a subschema
/// marked `x-events-personal`.
pub(crate) fn personal_properties(schema: &serde_json::Value) -> Vec<String> {
    use serde_json::Value;
    fn holds(
        node: &Value,
        defs: Option<&Value>,
        seen: &mut std::collections::HashSet<String>,
    ) -> bool {
        match node {
            Value::Object(map) => {
                if map.get("x-events-personal") == Some(&Value::Bool(true)) {
                    return true;
                }
                if let Some(name) = map
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix("#/$defs/"))
                {
                    if seen.insert(name.to_owned()) {
                        if let Some(target) = defs.and_then(|d| d.get(name)) {
                            if holds(target, defs, seen) {
                                return true;
                            }
                        }
                    }
                }
                map.values().any(|v| holds(v, defs, seen))
            }
            Value::Array(items) => items.iter().any(|v| holds(v, defs, seen)),
            _ => false,
        }
    }
    let defs = schema.get("$defs");
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|props| {
            props
                .iter()
                .filter(|(_, s)| holds(s, defs, &mut std::collections::HashSet::new()))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default()
}
