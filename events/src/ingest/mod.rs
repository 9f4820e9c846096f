//! Events from outside the process: JSON checked against the event's generated schema, then
//! deserialized and dispatched on the typed path. Nothing is dispatched unless every check
//! passes.

pub mod cloudevents;
mod error;

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::OnceLock;

pub use error::{IngestError, Violation};

use crate::bus::Bus;
use crate::envelope::PublishOptions;
use crate::event::{AnyEvent, EventInfo};
use crate::receipt::Receipt;

/// How much outside JSON the bus accepts: [`BusBuilder::ingest_limits`](crate::BusBuilder::ingest_limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct IngestLimits {
    /// The largest payload, in bytes (default 1 MiB).
    pub max_bytes: usize,
    /// The deepest nesting of arrays and objects (default 32).
    pub max_depth: usize,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_bytes: 1 << 20,
            max_depth: 32,
        }
    }
}

impl IngestLimits {
    /// At most `max_bytes` bytes, nested at most `max_depth` levels.
    pub fn new(max_bytes: usize, max_depth: usize) -> IngestLimits {
        IngestLimits {
            max_bytes,
            max_depth,
        }
    }
}

/// Deserializes a checked payload as its type and publishes it (`publish_blocking`).
pub(crate) type PublishValue =
    fn(&Bus, serde_json::Value, Option<PublishOptions>) -> Result<Receipt, IngestError>;

/// The compiled validator of one event type, made on first use and kept for the process.
pub(crate) type ValidatorCell = OnceLock<Result<jsonschema::Validator, String>>;

/// Every event type by name, then version.
pub(crate) struct Catalog {
    by_name: HashMap<&'static str, Vec<&'static EventInfo>, BuildHasherDefault<WordHash>>,
}

/// A multiply-rotate hash over 8-byte words: event names are short keys and SipHash would
/// cost more than the lookup is worth on the ingest path. (Names from outside are looked
/// up, never inserted: the table holds only this binary's names, so crafted collisions
/// could at worst slow one lookup over a few dozen entries.)
#[derive(Default)]
pub(crate) struct WordHash(u64);

impl std::hash::Hasher for WordHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0 ^ 0xcbf2_9ce4_8422_2325;
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            h = (h.rotate_left(23) ^ u64::from_le_bytes(word)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
        self.0 = h;
    }
}

impl Catalog {
    pub(crate) fn new(events: &[&'static EventInfo]) -> Catalog {
        let mut by_name: HashMap<
            &'static str,
            Vec<&'static EventInfo>,
            BuildHasherDefault<WordHash>,
        > = HashMap::default();
        for e in events {
            by_name.entry(e.name).or_default().push(e);
        }
        for versions in by_name.values_mut() {
            versions.sort_by_key(|e| e.version);
        }
        Catalog { by_name }
    }

    /// The event type `name` at `version`, or why there is none.
    pub(crate) fn find(&self, name: &str, version: u32) -> Result<&'static EventInfo, IngestError> {
        let Some(versions) = self.by_name.get(name) else {
            return Err(self.unknown(name));
        };
        versions
            .iter()
            .copied()
            .find(|e| e.version == version)
            .ok_or_else(|| IngestError::UnknownVersion {
                name: versions[0].name,
                version,
                known: versions.iter().map(|e| e.version).collect(),
            })
    }

    /// The newest version of event `name`.
    pub(crate) fn newest(&self, name: &str) -> Result<u32, IngestError> {
        match self.by_name.get(name).and_then(|v| v.last()) {
            Some(info) => Ok(info.version),
            None => Err(self.unknown(name)),
        }
    }

    /// The error for a name no event has: the name (clipped: it came from outside) and the
    /// known names close to it.
    fn unknown(&self, name: &str) -> IngestError {
        IngestError::UnknownEvent {
            name: clip(name),
            close: self.close_to(name),
        }
    }

    /// Up to five known names close to `name`, closest first. Names longer than any event
    /// name could be are not compared: the distance costs length times length.
    fn close_to(&self, name: &str) -> Vec<&'static str> {
        if name.len() > 128 {
            return Vec::new();
        }
        let mut scored: Vec<(usize, &'static str)> = self
            .by_name
            .keys()
            .map(|k| (edit_distance(name, k), *k))
            .filter(|(d, k)| *d <= 2 + k.len() / 8)
            .collect();
        scored.sort();
        scored.into_iter().take(5).map(|(_, k)| k).collect()
    }
}

/// `text` from outside, cut to 80 characters for an error message.
pub(crate) fn clip(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// Levenshtein distance over bytes: names are ASCII.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Whether `value` nests arrays and objects more than `limit` levels deep. Walks the parsed
/// tree (serde_json itself stops at 128 levels while parsing, so the stack is safe), which
/// costs per node rather than per byte.
fn deeper_than(value: &serde_json::Value, limit: usize) -> bool {
    use serde_json::Value;
    match value {
        Value::Array(items) => limit == 0 || items.iter().any(|v| deeper_than(v, limit - 1)),
        Value::Object(map) => limit == 0 || map.values().any(|v| deeper_than(v, limit - 1)),
        _ => false,
    }
}

/// Checks the size and depth of `json`, then parses it.
pub(crate) fn parse(json: &[u8], limits: IngestLimits) -> Result<serde_json::Value, IngestError> {
    if json.len() > limits.max_bytes {
        return Err(IngestError::TooLarge {
            size: json.len(),
            limit: limits.max_bytes,
        });
    }
    let too_deep = || IngestError::TooDeep {
        limit: limits.max_depth,
    };
    let value: serde_json::Value = serde_json::from_slice(json).map_err(|e| {
        // serde_json's own guard against deep nesting.
        if e.to_string().starts_with("recursion limit exceeded") {
            too_deep()
        } else {
            IngestError::malformed(e)
        }
    })?;
    if deeper_than(&value, limits.max_depth) {
        return Err(too_deep());
    }
    Ok(value)
}

/// Validates `value` against `info`'s schema and deserializes it.
pub(crate) fn decode(
    info: &'static EventInfo,
    value: serde_json::Value,
) -> Result<Box<AnyEvent>, IngestError> {
    validate(info, &value)?;
    (info.decode)(value).map_err(|e| IngestError::Decode {
        name: info.name,
        version: info.version,
        reason: e.to_string(),
    })
}

/// Checks `value` against `info`'s schema (compiled once per process); every violation.
fn validate(info: &'static EventInfo, value: &serde_json::Value) -> Result<(), IngestError> {
    let validator = info
        .validator
        .get_or_init(|| {
            let schema = serde_json::to_value(info.schema()).map_err(|e| e.to_string())?;
            jsonschema::validator_for(&schema).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|reason| IngestError::BadSchema {
            name: info.name,
            version: info.version,
            reason: reason.clone(),
        })?;
    if !validator.is_valid(value) {
        let mut violations: Vec<Violation> = validator
            .iter_errors(value)
            .map(|e| {
                let path = e.instance_path().to_string();
                // A redacted field's value stays out of the message too.
                let secret = info.redacted.iter().any(|key| {
                    path.strip_prefix('/')
                        .and_then(|p| p.strip_prefix(key))
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
                });
                let message = if secret {
                    e.masked().to_string()
                } else {
                    e.to_string()
                };
                Violation { path, message }
            })
            .collect();
        // The validator's order follows the schema; sorted, the message is stable.
        violations.sort_by(|a, b| a.path.cmp(&b.path));
        return Err(IngestError::Invalid {
            name: info.name,
            version: info.version,
            violations,
        });
    }
    Ok(())
}

impl Bus {
    /// Checks JSON from outside against the schema of event `name` at `version`, then
    /// deserializes it and publishes it like [`publish_with`](Self::publish_with).
    ///
    /// In order: the name and version, the size and nesting limits
    /// ([`BusBuilder::ingest_limits`](crate::BusBuilder::ingest_limits)), well-formed JSON, the JSON Schema (every violation is reported),
    /// deserialization. Any failure is an [`IngestError`], nothing is dispatched, and the
    /// observers are told ([`Observer::invalid`](crate::observe::Observer::invalid)).
    ///
    /// ```standalone_crate
    /// # use events::{Bus, Event, IngestError, PublishOptions};
    /// #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    /// #[event(name = "order.placed")]
    /// struct OrderPlaced { order_id: u64 }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = Bus::builder().build()?;
    /// let body = br#"{ "order_id": 7 }"#;
    /// bus.publish_json("order.placed", 1, body, PublishOptions::new()).await?;
    ///
    /// let err = bus.publish_json("order.placed", 1, br#"{ "order_id": "7" }"#, PublishOptions::new()).await.unwrap_err();
    /// assert!(matches!(err, IngestError::Invalid { .. }));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`IngestError`]; see its variants.
    pub async fn publish_json(
        &self,
        name: &str,
        version: u32,
        json: &[u8],
        options: PublishOptions,
    ) -> Result<Receipt, IngestError> {
        let payload = self.decode_json(name, version, json)?;
        self.publish_any(payload, options).await.map_err(Into::into)
    }

    /// [`publish_json`](Self::publish_json) without a runtime: runs the synchronous handlers
    /// only, as [`publish_blocking`](Self::publish_blocking).
    ///
    /// # Errors
    /// As [`publish_json`](Self::publish_json).
    pub fn publish_json_blocking(
        &self,
        name: &str,
        version: u32,
        json: &[u8],
        options: PublishOptions,
    ) -> Result<Receipt, IngestError> {
        // The typed path: no boxed payload, the event's own `publish_blocking`.
        let info = self.find_event(name, version)?;
        let value = parse(json, self.inner.ingest_limits)
            .and_then(|value| validate(info, &value).map(|()| value))
            .map_err(|e| self.invalid(Some(info.name), e))?;
        let options = (!options.is_empty()).then_some(options);
        (info.publish_value)(self, value, options).map_err(|e| match e {
            IngestError::Publish(_) => e, // told to the observers as a refusal already
            e => self.invalid(Some(info.name), e),
        })
    }

    /// Every check of [`publish_json`](Self::publish_json), and the typed event, without
    /// publishing it: for a request handler that answers 400 before queuing work.
    ///
    /// # Errors
    /// As [`publish_json`](Self::publish_json).
    pub fn decode_json(
        &self,
        name: &str,
        version: u32,
        json: &[u8],
    ) -> Result<Box<AnyEvent>, IngestError> {
        let info = self.find_event(name, version)?;
        parse(json, self.inner.ingest_limits)
            .and_then(|value| decode(info, value))
            .map_err(|e| self.invalid(Some(info.name), e))
    }

    /// The event type `name` at `version`; the observers hear of a miss.
    fn find_event(&self, name: &str, version: u32) -> Result<&'static EventInfo, IngestError> {
        self.inner
            .catalog
            .find(name, version)
            .map_err(|e| self.invalid(e.event(), e))
    }

    /// Tells the observers about refused input for `event` (when known), and gives the
    /// error back.
    #[cold]
    pub(crate) fn invalid(&self, event: Option<&'static str>, error: IngestError) -> IngestError {
        self.inner.observers.invalid(event, &error);
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_containers_not_brackets_in_strings() {
        let v = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        assert!(!deeper_than(&v(r#"{"a":[1,{"b":"[[[{{"}]}"#), 3));
        assert!(deeper_than(&v(r#"{"a":[1,{"b":"[[[{{"}]}"#), 2));
        assert!(!deeper_than(&v("42"), 0));
        assert!(deeper_than(&v("[]"), 0));
        assert!(!deeper_than(&v("[[]]"), 2));
        assert!(deeper_than(&v("[[[]]]"), 2));
    }

    #[test]
    fn echoed_input_is_clipped() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(100);
        assert_eq!(clip(&long).chars().count(), 81);
        assert!(clip(&long).ends_with('…'));
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("order.placed", "order.placed"), 0);
        assert_eq!(edit_distance("order.plced", "order.placed"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
