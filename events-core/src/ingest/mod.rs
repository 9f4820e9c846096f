//! Events from outside the process: JSON checked against the event's generated schema, then
//! deserialized and dispatched on the typed path. Nothing is dispatched unless every check
//! passes.

pub mod cloudevents;

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

pub use crate::error::{IngestError, Violation};

use crate::event::{AnyEvent, Event, EventInfo};

/// How much outside input the bus accepts, and how much of it an error message may show:
/// [`BusBuilder::ingest_limits`](crate::BusBuilder::ingest_limits).
///
/// Every check is made before anything is dispatched or stored; each limit bounds the time
/// and memory one input can cost.
///
/// | field | default | bounds |
/// |---|---|---|
/// | `max_bytes` | 1 MiB | a payload, a CloudEvent, a batch, a NATS message body |
/// | `max_depth` | 32 | nesting of arrays and objects |
/// | `max_violations` | 16 | schema violations listed in an [`IngestError::Invalid`] (the rest are counted) |
/// | `max_error_bytes` | 4 KiB | the text of any [`IngestError`] made from outside input |
/// | `max_extensions` | 64 | CloudEvents extension attributes (they become metadata entries) |
/// | `max_attribute_bytes` | 4 KiB | one CloudEvents attribute or extension value (`source`, `subject`, `id`, ...) |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct IngestLimits {
    /// The largest payload, in bytes (default 1 MiB).
    pub max_bytes: usize,
    /// The deepest nesting of arrays and objects (default 32).
    pub max_depth: usize,
    /// How many schema violations an error lists (default 16); the rest are counted, not
    /// described. A payload of more than 4,096 JSON values gets only its first violation:
    /// finding them all would cost many times its size in memory.
    pub max_violations: usize,
    /// The longest error message made from outside input, in bytes (default 4 KiB): each
    /// echoed value is clipped, and violations past this size are counted instead.
    pub max_error_bytes: usize,
    /// How many CloudEvents extension attributes one event may carry (default 64).
    pub max_extensions: usize,
    /// The longest CloudEvents attribute or extension value, in bytes (default 4 KiB).
    pub max_attribute_bytes: usize,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_bytes: 1 << 20,
            max_depth: 32,
            max_violations: 16,
            max_error_bytes: 4096,
            max_extensions: 64,
            max_attribute_bytes: 4096,
        }
    }
}

impl IngestLimits {
    /// At most `max_bytes` bytes, nested at most `max_depth` levels; the other limits at
    /// their defaults.
    pub fn new(max_bytes: usize, max_depth: usize) -> IngestLimits {
        IngestLimits {
            max_bytes,
            max_depth,
            ..IngestLimits::default()
        }
    }
    /// At most `n` schema violations described in an error (at least 1).
    pub fn max_violations(mut self, n: usize) -> IngestLimits {
        self.max_violations = n.max(1);
        self
    }
    /// Error messages of at most `bytes` bytes (at least 256).
    pub fn max_error_bytes(mut self, bytes: usize) -> IngestLimits {
        self.max_error_bytes = bytes.max(256);
        self
    }
    /// At most `n` CloudEvents extension attributes per event.
    pub fn max_extensions(mut self, n: usize) -> IngestLimits {
        self.max_extensions = n;
        self
    }
    /// CloudEvents attribute and extension values of at most `bytes` bytes.
    pub fn max_attribute_bytes(mut self, bytes: usize) -> IngestLimits {
        self.max_attribute_bytes = bytes;
        self
    }
}

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
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mix =
            |h: u64, word: u64| (h.rotate_left(23) ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut h = self.0 ^ 0xcbf2_9ce4_8422_2325;
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            h = mix(h, u64::from_le_bytes(word.try_into().unwrap_or_default()));
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            // The last 8 bytes (overlapping the words before) when there are 8, else the
            // few there are: no copy through memcpy for the few.
            let word = match bytes.len().checked_sub(8) {
                Some(at) => u64::from_le_bytes(bytes[at..].try_into().unwrap_or_default()),
                None => tail
                    .iter()
                    .rev()
                    .fold(0u64, |w, &b| (w << 8) | u64::from(b)),
            };
            h = mix(h, word);
        }
        self.0 = h;
    }

    /// `str`'s terminator (`0xff` after the bytes), folded in without a loop.
    #[inline]
    fn write_u8(&mut self, byte: u8) {
        self.0 = (self.0.rotate_left(23) ^ u64::from(byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
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

/// `text` from outside, for an error message: control characters escaped (`\u{1b}`), cut to
/// 80 characters.
pub(crate) fn clip(text: &str) -> String {
    clip_to(text, 80)
}

/// [`crate::text::clip`]: safe in a log line, a header or a terminal.
pub(crate) fn clip_to(text: &str, chars: usize) -> String {
    crate::text::clip(text, chars)
}

/// Levenshtein distance over bytes: names are ASCII (and Rust paths nearly always are).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
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
pub(crate) fn deeper_than(value: &serde_json::Value, limit: usize) -> bool {
    use serde_json::Value;
    match value {
        Value::Array(items) => limit == 0 || items.iter().any(|v| deeper_than(v, limit - 1)),
        Value::Object(map) => limit == 0 || map.values().any(|v| deeper_than(v, limit - 1)),
        _ => false,
    }
}

/// Checks the size and depth of `json`, then parses it. An object with the same key twice
/// is refused: serde_json would keep the last value, other parsers the first, so the bytes
/// would mean different things to this bus and to whoever checked them before.
///
/// Also says whether a whole number was written as a float (`1.0`, `2e3`) anywhere, which
/// [`deserialize_checked`] then looks for; noted while parsing, it costs nothing.
pub(crate) fn parse(
    json: &[u8],
    limits: IngestLimits,
) -> Result<(serde_json::Value, bool), IngestError> {
    if json.len() > limits.max_bytes {
        return Err(IngestError::TooLarge {
            size: json.len(),
            limit: limits.max_bytes,
        });
    }
    let too_deep = || IngestError::TooDeep {
        limit: limits.max_depth,
    };
    let whole_floats = std::cell::Cell::new(false);
    let deep = std::cell::Cell::new(false);
    let parsed = (|| {
        let mut de = serde_json::Deserializer::from_slice(json);
        let seed = strict::NoDuplicates {
            whole_floats: &whole_floats,
            deep: &deep,
            depth: limits.max_depth,
        };
        let value = serde::Deserializer::deserialize_any(&mut de, seed)?;
        de.end()?;
        Ok::<_, serde_json::Error>(value)
    })();
    let value = parsed.map_err(|e| {
        // The depth limit, met while parsing; or serde_json's own guard against deep nesting.
        if deep.get() || e.to_string().starts_with("recursion limit exceeded") {
            too_deep()
        } else {
            IngestError::malformed(e)
        }
    })?;
    // Read again as integers only if every number literal means exactly the double read.
    Ok((value, whole_floats.get() && numbers_are_exact(json)))
}

/// Whether every number literal in (well-formed) `json` that serde_json reads as a double
/// with no fraction, within the 64-bit range, means exactly that whole number. It does not
/// when digits were lost to the double: `184467440737095510.5615` reads as a whole double
/// (every double past 2^53 is whole), `9007199254740993.0` as `9007199254740992`, and an
/// integer literal below `i64::MIN` as -2^63. Such a payload is not read again with its
/// floats as integers: refused, rather than changed without a word.
fn numbers_are_exact(json: &[u8]) -> bool {
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => {
                i += 1;
                while i < json.len() {
                    match json[i] {
                        b'\\' => i += 2,
                        b'"' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < json.len()
                    && matches!(json[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                if !literal_is_exact(&json[start..i]) {
                    return false;
                }
            }
            _ => i += 1,
        }
    }
    true
}

/// See [`numbers_are_exact`]: one literal.
fn literal_is_exact(token: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(token) else {
        return false;
    };
    let float_syntax = text.contains(['.', 'e', 'E']);
    if !float_syntax && (text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok()) {
        return true; // read as an integer, exactly
    }
    let Ok(f) = text.parse::<f64>() else {
        return false;
    };
    if f.fract() != 0.0 || !(-TWO_63..TWO_64).contains(&f) {
        return true; // never read again as an integer
    }
    // The literal's digits and where its decimal point falls.
    let body = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], &body[at + 1..]),
        None => (body, "0"),
    };
    let Ok(exponent) = exponent.trim_start_matches('+').parse::<i64>() else {
        return false;
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = [int, frac].concat();
    // Leading zeros say nothing; without them, a zero is a zero whatever its exponent
    // (`0e2000000000` must not become two billion zeros), and a value below 2^64 has at
    // most 20 digits before its point.
    let lead = digits.bytes().take_while(|&d| d == b'0').count();
    let digits = &digits[lead..];
    if digits.is_empty() {
        return f == 0.0;
    }
    let point = (int.len() as i64 - lead as i64).saturating_add(exponent);
    if point > 20 {
        return false;
    }
    let whole: String = if point <= 0 {
        if digits.bytes().any(|d| d != b'0') {
            return false; // below 1 in size, not zero
        }
        String::new()
    } else if point as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        let (whole, rest) = digits.split_at(point as usize);
        if rest.bytes().any(|d| d != b'0') {
            return false; // a fraction the double lost
        }
        whole.to_owned()
    };
    let whole = whole.trim_start_matches('0');
    let read = format!("{}", f.abs() as u64);
    whole == if read == "0" { "" } else { read.as_str() }
}

mod strict {
    //! serde_json's `Value`, built by a visitor that refuses duplicate object keys and notes
    //! whole numbers written as floats.

    use std::cell::Cell;

    use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Number, Value};

    /// The depth limit is kept while parsing (as [`super::deeper_than`] would count it on
    /// the tree): an array or object found with no depth left sets `deep` and ends the parse.
    #[derive(Clone, Copy)]
    pub(super) struct NoDuplicates<'a> {
        pub(super) whole_floats: &'a Cell<bool>,
        pub(super) deep: &'a Cell<bool>,
        /// How many levels of arrays and objects may still open.
        pub(super) depth: usize,
    }

    impl NoDuplicates<'_> {
        /// The seed of the values inside an array or object, or the error when none may open.
        #[inline]
        fn inner<E: de::Error>(self) -> Result<Self, E> {
            match self.depth.checked_sub(1) {
                Some(depth) => Ok(NoDuplicates { depth, ..self }),
                None => {
                    self.deep.set(true);
                    Err(E::custom("nested too deep"))
                }
            }
        }
    }

    impl<'de> DeserializeSeed<'de> for NoDuplicates<'_> {
        type Value = Value;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for NoDuplicates<'_> {
        type Value = Value;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            if v.fract() == 0.0 {
                self.whole_floats.set(true);
            }
            Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_owned()))
        }
        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let inner = self.inner()?;
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            while let Some(item) = seq.next_element_seed(inner)? {
                items.push(item);
            }
            Ok(Value::Array(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let inner = self.inner()?;
            let mut out = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                let value = map.next_value_seed(inner)?;
                // One lookup: the entry says whether the key was there.
                match out.entry(key) {
                    serde_json::map::Entry::Vacant(slot) => {
                        slot.insert(value);
                    }
                    serde_json::map::Entry::Occupied(slot) => {
                        return Err(de::Error::custom(format_args!(
                            "duplicate key `{}`",
                            super::clip(slot.key())
                        )));
                    }
                }
            }
            Ok(Value::Object(out))
        }
    }
}

/// Validates `value` against `info`'s schema and deserializes it; `whole_floats` as
/// [`parse`] says.
pub(crate) fn decode(
    info: &'static EventInfo,
    value: serde_json::Value,
    whole_floats: bool,
    limits: IngestLimits,
) -> Result<Box<AnyEvent>, IngestError> {
    validate(info, &value, limits)?;
    (info.decode)(value, whole_floats)
}

/// Deserializes a payload that passed its schema as `E`. An error never shows a redacted
/// or personal value: when `E` has redacted or personal fields, the path of a failure is
/// tracked, and a failure inside one of them ([`EventInfo::secret_keys`]) or of the whole
/// payload is reported without serde's message, which may quote the value.
///
/// JSON Schema counts `1.0` as an integer; serde does not. So that the schema accepts
/// exactly what the type accepts, a payload refused only for whole numbers written with a
/// fraction or an exponent (`1.0`, `2e3`; `whole_floats` says whether the payload may have
/// any: [`parse`] notes them) is read again with them as integers, when the number read is
/// within the 64-bit range (-2^63 to below 2^64) and every number literal means exactly the
/// double it was read as ([`parse`] checks that).
#[inline]
pub(crate) fn deserialize_checked<E: Event>(
    value: serde_json::Value,
    whole_floats: bool,
) -> Result<E, IngestError> {
    if E::REDACTED.is_empty() && !E::PERSONAL && !whole_floats {
        return serde_json::from_value(value).map_err(decode_failed::<E>);
    }
    deserialize_again::<E>(value, whole_floats)
}

/// [`deserialize_checked`] for a payload with whole numbers written as floats, or of a type
/// with redacted or personal fields.
#[inline(never)]
fn deserialize_again<E: Event>(
    value: serde_json::Value,
    whole_floats: bool,
) -> Result<E, IngestError> {
    let again = (whole_floats && has_integral_float(&value)).then(|| value.clone());
    match deserialize_once::<E>(value) {
        Ok(event) => Ok(event),
        Err(first) => match again {
            Some(mut value) => {
                integral_floats_as_integers(&mut value);
                deserialize_once::<E>(value).map_err(|_| first)
            }
            None => Err(first),
        },
    }
}

/// serde's message, unless the type holds secrets the derive could not see (a `Personal`
/// value inside a field's own type, without a data subject): then nothing of it.
#[cold]
fn decode_failed<E: Event>(e: serde_json::Error) -> IngestError {
    let reason = if E::info().secret_keys().is_empty() {
        clip_to(&e.to_string(), 300)
    } else {
        NOT_SHOWN.to_owned()
    };
    IngestError::Decode {
        name: E::NAME,
        version: E::VERSION,
        reason,
    }
}

/// What a failure that could quote a secret says instead.
const NOT_SHOWN: &str =
    "the value does not deserialize (not shown: the event has redacted or personal fields)";

fn deserialize_once<E: Event>(value: serde_json::Value) -> Result<E, IngestError> {
    let info = E::info();
    let failed = |reason: String| IngestError::Decode {
        name: info.name,
        version: info.version,
        reason,
    };
    let secrets = info.secret_keys();
    if secrets.is_empty() {
        return serde_json::from_value(value).map_err(decode_failed::<E>);
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        use serde_path_to_error::Segment;
        let path = e.path();
        let secret = match path.iter().next() {
            None | Some(Segment::Unknown) => true,
            Some(Segment::Map { key }) => secrets.iter().any(|k| **k == *key),
            Some(_) => false,
        };
        if secret {
            let at = path.iter().next().map_or(String::new(), |s| {
                format!(" at `{}`", clip_to(&s.to_string(), 80))
            });
            failed(format!(
                "the value{at} does not deserialize (not shown: the event has redacted or personal fields)"
            ))
        } else {
            failed(format!(
                "at `{}`: {}",
                clip_to(&path.to_string(), 120),
                clip_to(&e.into_inner().to_string(), 300)
            ))
        }
    })
}

/// 2^63 and 2^64 as doubles (both exact).
const TWO_63: f64 = 9_223_372_036_854_775_808.0;
const TWO_64: f64 = 18_446_744_073_709_551_616.0;

/// A double that is a whole number in [-2^63, 2^64): it converts to an `i64` or a `u64`
/// exactly.
fn is_integral_float(n: &serde_json::Number) -> bool {
    n.as_f64()
        .is_some_and(|f| n.is_f64() && f.fract() == 0.0 && (-TWO_63..TWO_64).contains(&f))
}

fn has_integral_float(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Number(n) => is_integral_float(n),
        Value::Array(items) => items.iter().any(has_integral_float),
        Value::Object(map) => map.values().any(has_integral_float),
        _ => false,
    }
}

fn integral_floats_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if is_integral_float(n) => {
            let f = n.as_f64().unwrap_or_default();
            // Exact: a whole number inside the range of the type it becomes.
            *n = if f < 0.0 {
                (f as i64).into()
            } else {
                (f as u64).into()
            };
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

/// Whether a violation at `path` (a JSON Pointer) could quote a redacted or personal value
/// ([`EventInfo::secret_keys`]): it is inside such a field, or it is the whole payload,
/// which holds them all.
fn shows_redacted(info: &EventInfo, path: &str) -> bool {
    let secrets = info.secret_keys();
    if secrets.is_empty() {
        return false;
    }
    let Some(rest) = path.strip_prefix('/') else {
        return true; // the root
    };
    let first = rest.split('/').next().unwrap_or("");
    let first = first.replace("~1", "/").replace("~0", "~");
    secrets.iter().any(|k| **k == *first)
}

/// Checks `value` against `info`'s schema (compiled once per process): at most
/// `limits.max_violations` violations described, within `limits.max_error_bytes`, the rest
/// counted.
pub(crate) fn validate(
    info: &'static EventInfo,
    value: &serde_json::Value,
    limits: IngestLimits,
) -> Result<(), IngestError> {
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
    if validator.is_valid(value) {
        return Ok(());
    }
    Err(violations(info, validator, value, limits, &|_| false))
}

/// [`validate`] for a stored payload an operator edited: the top-level members `kept`
/// still hold their stored (sealed) values, valid when they were published and not
/// readable as their schema says until opened, so violations inside them do not count.
pub(crate) fn validate_edited(
    info: &'static EventInfo,
    value: &serde_json::Value,
    limits: IngestLimits,
    kept: &[&str],
) -> Result<(), IngestError> {
    let Err(e) = validate(info, value, limits) else {
        return Ok(());
    };
    let IngestError::Invalid { .. } = e else {
        return Err(e);
    };
    let pointers: Vec<String> = kept
        .iter()
        .map(|k| format!("/{}", k.replace('~', "~0").replace('/', "~1")))
        .collect();
    let skip = |path: &str| {
        pointers.iter().any(|p| {
            path.strip_prefix(p.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    };
    let validator = info
        .validator
        .get()
        .and_then(|v| v.as_ref().ok())
        .ok_or(e)?;
    // As `violations` does: past `SEARCHED_VALUES` values only the first violation is
    // looked for (the validator collects them all before giving one). If that one is in a
    // kept member, the schema has nothing to say that is known; deserializing still checks
    // the types.
    let fails = if more_values_than(value, SEARCHED_VALUES) {
        validator
            .validate(value)
            .err()
            .is_some_and(|e| !skip(&e.instance_path().to_string()))
    } else {
        validator
            .iter_errors(value)
            .any(|e| !skip(&e.instance_path().to_string()))
    };
    if !fails {
        return Ok(());
    }
    Err(violations(info, validator, value, limits, &skip))
}

/// Why `value` is invalid, within the limits.
#[cold]
#[inline(never)]
fn violations(
    info: &'static EventInfo,
    validator: &jsonschema::Validator,
    value: &serde_json::Value,
    limits: IngestLimits,
    skip: &dyn Fn(&str) -> bool,
) -> IngestError {
    let mut violations: Vec<Violation> = Vec::new();
    let describe = |e: &jsonschema::ValidationError<'_>| {
        let path = e.instance_path().to_string();
        let message = if shows_redacted(info, &path) {
            e.masked().to_string()
        } else {
            e.to_string()
        };
        Violation {
            path: clip_to(&path, 120),
            message: clip_to(&message, 200),
        }
    };
    // The validator collects every violation before giving the first, each a few hundred
    // bytes: for a large payload that is many times its size (1 MiB of `[-1,-1,...]` has
    // 349,000). Past `SEARCHED_VALUES` values, only the first violation is found.
    if more_values_than(value, SEARCHED_VALUES) {
        if let Err(e) = validator.validate(value) {
            if !skip(&e.instance_path().to_string()) {
                violations.push(describe(&e));
            }
        }
        return IngestError::Invalid {
            name: info.name,
            version: info.version,
            violations,
            more: None,
        };
    }
    // What the message says before the violations (name, version, count).
    let mut bytes = 120 + info.name.len();
    let mut more = 0usize;
    for e in validator.iter_errors(value) {
        if skip(&e.instance_path().to_string()) {
            continue;
        }
        if violations.len() >= limits.max_violations || bytes >= limits.max_error_bytes {
            more += 1;
            continue;
        }
        let violation = describe(&e);
        let size = violation.path.len() + violation.message.len() + 8;
        if bytes + size > limits.max_error_bytes {
            more += 1;
            bytes = limits.max_error_bytes;
            continue;
        }
        bytes += size;
        violations.push(violation);
    }
    // The validator's order follows the schema; sorted, the message is stable.
    violations.sort_by(|a, b| a.path.cmp(&b.path));
    IngestError::Invalid {
        name: info.name,
        version: info.version,
        violations,
        more: Some(more),
    }
}

/// How many JSON values a payload may have for every violation to be listed.
pub(crate) const SEARCHED_VALUES: usize = 4096;

/// Whether `value` holds more than `limit` values (itself included); stops counting there.
fn more_values_than(value: &serde_json::Value, limit: usize) -> bool {
    fn count(value: &serde_json::Value, left: &mut usize) -> bool {
        if *left == 0 {
            return true;
        }
        *left -= 1;
        match value {
            serde_json::Value::Array(items) => items.iter().any(|v| count(v, left)),
            serde_json::Value::Object(map) => map.values().any(|v| count(v, left)),
            _ => false,
        }
    }
    let mut left = limit;
    count(value, &mut left)
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
    fn word_hash_reads_every_byte_of_short_and_long_names() {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let hash = |s: &str| BuildHasherDefault::<WordHash>::default().hash_one(s);
        let names = [
            "a",
            "b",
            "ab",
            "ba",
            "order",
            "orders",
            "order.placed",
            "order.placee",
            "abcdefgh",
            "abcdefgi",
            "abcdefgh1",
            "abcdefgh2",
            "xbcdefgh1",
        ];
        let hashes: std::collections::HashSet<u64> = names.iter().map(|n| hash(n)).collect();
        assert_eq!(hashes.len(), names.len());
    }

    /// `parse` keeps the depth limit while it reads, exactly as `deeper_than` counts it on
    /// the tree, at the boundary of every limit.
    #[test]
    fn parse_refuses_what_deeper_than_counts_too_deep() {
        let shapes = [
            "42",
            "[]",
            "{}",
            "[[]]",
            r#"{"a":{"b":[1,{"c":[]}]}}"#,
            r#"{"a":[1,{"b":"[[[{{"}]}"#,
            r#"[{"a":1},[[[2]]],{"b":{"c":{}}}]"#,
        ];
        for json in shapes {
            let tree: serde_json::Value = serde_json::from_str(json).unwrap();
            for limit in 0..6 {
                let parsed = parse(json.as_bytes(), IngestLimits::new(1 << 20, limit));
                assert_eq!(
                    matches!(parsed, Err(IngestError::TooDeep { limit: l }) if l == limit),
                    deeper_than(&tree, limit),
                    "{json} at depth {limit}"
                );
                if !deeper_than(&tree, limit) {
                    assert_eq!(parsed.unwrap().0, tree);
                }
            }
        }
    }

    #[test]
    fn echoed_input_is_clipped() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(100);
        assert_eq!(clip(&long).chars().count(), 81);
        assert!(clip(&long).ends_with('…'));
        assert_eq!(clip("a\u{1b}[2J\r\nb"), "a\\u{1b}[2J\\u{d}\\u{a}b");
    }

    #[test]
    fn number_literals_that_lost_digits_to_the_double() {
        for exact in [
            "1.0",
            "-0.0",
            "2e3",
            "4.2E3",
            "1e19",
            "0.0e5",
            "-9223372036854775808.0",
            "1.5",
            "18446744073709551615",
            "12",
            "1e400",
            "0.5e1",
            "[1.0, \"1.5e9999\"]",
        ] {
            assert!(numbers_are_exact(exact.as_bytes()), "{exact}");
        }
        for lossy in [
            "184467440737095510.5615",
            "9007199254740993.0",
            "-9223372036854775809",
            "1.00000000000000001",
            "1e-400",
            "{\"a\": [1, 9007199254740993e0]}",
        ] {
            assert!(!numbers_are_exact(lossy.as_bytes()), "{lossy}");
        }
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("order.placed", "order.placed"), 0);
        assert_eq!(edit_distance("order.plced", "order.placed"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
