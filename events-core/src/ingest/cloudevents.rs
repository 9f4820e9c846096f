//! CloudEvents 1.0, JSON format (structured mode) and JSON batch format.
//!
//! | CloudEvents | `events` |
//! |---|---|
//! | `id` | [`Meta::id`] when it is a UUID; otherwise a new id, the original kept in metadata `cloudevents.id` (and given back on the way out) |
//! | `source` | [`Meta::source`] |
//! | `type` | the event's name |
//! | `time` | [`Meta::time`] (RFC 3339) |
//! | `subject` | metadata `subject` |
//! | `datacontenttype` | `application/json` (any `*/json` or `*/*+json` is accepted) |
//! | `dataschema` | [`EventInfo::schema_id`](crate::EventInfo::schema_id), e.g. `urn:events:schema:order.placed:v2`, on the way out; any URI is accepted on the way in (it names the producer's schema) |
//! | `data` | the payload |
//! | extension `eventversion` | the payload's version (absent: the newest version this binary knows) |
//! | extension `correlationid` | [`Meta::correlation_id`] |
//! | extension `causationid` | [`Meta::causation_id`] |
//! | other extensions (`traceparent`, ...) | metadata entries of the same name and type (string, integer, boolean), and back out as extensions; a name that is not lower-case letters and digits is refused, a `traceparent` that is not W3C trace context is dropped with a warning |
//!
//! Every string attribute is refused if it holds a control character or is longer than
//! [`IngestLimits::max_attribute_bytes`](crate::IngestLimits); more than
//! [`IngestLimits::max_extensions`](crate::IngestLimits) extensions are refused; a `time`
//! outside 1970-2554 (what an envelope holds) is refused, never clamped.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{IngestError, IngestLimits, clip, decode, parse};
use crate::bus::Bus;
use crate::envelope::{EventId, Meta, MetaValue, PublishOptions};
use crate::event::{AnyEvent, EventInfo};
use crate::receipt::Receipt;

/// Attributes with a meaning of their own; every other member is an extension.
const CORE: [&str; 10] = [
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "datacontenttype",
    "dataschema",
    "data",
    "data_base64",
];
const VERSION: &str = "eventversion";
const CORRELATION: &str = "correlationid";
const CAUSATION: &str = "causationid";
const TRACEPARENT: &str = "traceparent";
/// Where a CloudEvents `id` that is not a UUID is kept: a key outside the extension names
/// (it has a `.`), so no input can set it but the `id` attribute itself.
pub(crate) const ORIGINAL_ID: &str = "cloudevents.id";

/// The CloudEvents 1.0 JSON form of an event: `event` with envelope `meta`.
///
/// ```standalone_crate
/// # #[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// # #[event(name = "order.placed")]
/// # struct OrderPlaced { order_id: u64 }
/// #[events::handler]
/// fn forward(ev: &OrderPlaced, ctx: &events::Context) -> Result<(), serde_json::Error> {
///     let cloudevent = events::cloudevents::to_json(ev, ctx.meta())?;
///     assert_eq!(cloudevent["type"], "order.placed");
///     assert_eq!(cloudevent["data"]["order_id"], 7);
///     Ok(())
/// }
/// # let bus = events::Bus::builder().build().unwrap();
/// # assert!(bus.publish_blocking(OrderPlaced { order_id: 7 }).unwrap().is_ok());
/// ```
///
/// # Errors
/// When the payload's `Serialize` implementation fails.
pub fn to_json(event: &AnyEvent, meta: &Meta) -> Result<Value, serde_json::Error> {
    let mut ce = attributes(meta);
    ce.insert("data".into(), event.to_json()?);
    Ok(Value::Object(ce))
}

/// Every CloudEvents attribute of an event, typed as the JSON format writes them: what
/// [`to_json`] sends beside `data`, and what binary mode puts in headers.
pub(crate) fn attributes(meta: &Meta) -> Map<String, Value> {
    let mut ce = Map::new();
    ce.insert("specversion".into(), "1.0".into());
    let id = match meta.metadata().get(ORIGINAL_ID).and_then(MetaValue::as_str) {
        Some(original) => original.to_owned(),
        None => meta.id().to_string(),
    };
    ce.insert("id".into(), id.into());
    ce.insert("source".into(), meta.source().into());
    ce.insert("type".into(), meta.name().into());
    let nanos = meta
        .time()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    if let Some(time) = i128::try_from(nanos)
        .ok()
        .and_then(|n| OffsetDateTime::from_unix_timestamp_nanos(n).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
    {
        ce.insert("time".into(), time.into());
    }
    if let Some(subject) = meta.metadata().get("subject").and_then(MetaValue::as_str) {
        ce.insert("subject".into(), subject.into());
    }
    ce.insert("datacontenttype".into(), "application/json".into());
    ce.insert("dataschema".into(), meta.info().schema_id().into());
    ce.insert(VERSION.into(), meta.version().into());
    ce.insert(CORRELATION.into(), meta.correlation_id().to_string().into());
    if let Some(causation) = meta.causation_id() {
        ce.insert(CAUSATION.into(), causation.to_string().into());
    }
    for (key, value) in meta.metadata() {
        if !is_extension_name(key) || ce.contains_key(key) {
            continue;
        }
        // A `traceparent` set in-process is checked like one from outside: it may become a
        // header.
        if key == TRACEPARENT && !value.as_str().is_some_and(is_traceparent) {
            continue;
        }
        ce.insert(key.clone(), value.to_json());
    }
    ce
}

/// Lower-case letters and digits, not one of the core attributes (CloudEvents 1.0 §3.1.1).
fn is_extension_name(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && !CORE.contains(&key)
}

/// Whether `value` is a W3C trace context `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`
/// (lower-case, ids not all zero), or a later version's form that starts the same way.
pub(crate) fn is_traceparent(value: &str) -> bool {
    let b = value.as_bytes();
    let hex = |r: std::ops::Range<usize>| {
        b[r].iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    };
    let zero = |r: std::ops::Range<usize>| b[r].iter().all(|c| *c == b'0');
    if b.len() < 55
        || !hex(0..2)
        || &b[0..2] == b"ff"
        || b[2] != b'-'
        || !hex(3..35)
        || zero(3..35)
        || b[35] != b'-'
        || !hex(36..52)
        || zero(36..52)
        || b[52] != b'-'
        || !hex(53..55)
    {
        return false;
    }
    if &b[0..2] == b"00" {
        b.len() == 55
    } else {
        b.len() == 55 || (b[55] == b'-' && b[56..].iter().all(|c| (0x21..0x7f).contains(c)))
    }
}

/// An optional attribute: absent and `null` are the same.
fn optional<'a>(ce: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    ce.get(name).filter(|v| !v.is_null())
}

fn bad(attribute: &str, reason: impl Into<String>) -> IngestError {
    IngestError::BadAttribute {
        attribute: clip(attribute),
        reason: reason.into(),
    }
}

/// A CloudEvents String: no control characters (U+0000-U+001F, U+007F-U+009F; §3.1.1 of
/// the specification), at most `max` bytes.
fn check_string(name: &str, value: &str, max: usize) -> Result<(), IngestError> {
    if value.len() > max {
        return Err(bad(
            name,
            format!(
                "it is {} bytes long; the limit is {max} (`IngestLimits::max_attribute_bytes`)",
                value.len()
            ),
        ));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(bad(
            name,
            format!(
                "it contains the control character {}, which CloudEvents strings may not",
                c.escape_unicode()
            ),
        ));
    }
    Ok(())
}

/// A required, non-empty string attribute.
fn required<'a>(
    ce: &'a Map<String, Value>,
    name: &'static str,
    max: usize,
) -> Result<&'a str, IngestError> {
    match optional(ce, name) {
        None => Err(IngestError::MissingAttribute { attribute: name }),
        Some(Value::String(s)) if s.is_empty() => Err(bad(name, "it is empty")),
        Some(Value::String(s)) => check_string(name, s, max).map(|()| s.as_str()),
        Some(other) => Err(bad(name, format!("expected a string, got {}", kind(other)))),
    }
}

fn optional_str<'a>(
    ce: &'a Map<String, Value>,
    name: &str,
    max: usize,
) -> Result<Option<&'a str>, IngestError> {
    match optional(ce, name) {
        None => Ok(None),
        Some(Value::String(s)) => check_string(name, s, max).map(|()| Some(s.as_str())),
        Some(other) => Err(bad(name, format!("expected a string, got {}", kind(other)))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn event_id(attribute: &str, text: &str) -> Result<EventId, IngestError> {
    text.parse().map_err(|_| {
        bad(
            attribute,
            format!("expected an event id (a UUID), got `{}`", clip(text)),
        )
    })
}

/// An RFC 3339 time an envelope can hold exactly: from 1970 (the Unix epoch) to 2554 (the
/// last nanosecond a `u64` counts). Anything else is refused, never clamped.
fn parse_time(text: &str) -> Result<std::time::SystemTime, IngestError> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
        bad(
            "time",
            format!("expected an RFC 3339 timestamp, got `{}`", clip(text)),
        )
    })?;
    let nanos = parsed.unix_timestamp_nanos();
    if nanos < 0 || nanos > i128::from(u64::MAX) {
        return Err(bad(
            "time",
            format!(
                "`{}` is outside the times an event can carry \
                 (1970-01-01T00:00:00Z to 2554-07-21T23:34:33Z)",
                clip(text)
            ),
        ));
    }
    Ok(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(nanos as u64))
}

/// An extension's value as metadata: a CloudEvents String, Integer (-2^31..2^31) or Boolean.
fn extension_value(
    key: &str,
    value: Value,
    limits: IngestLimits,
) -> Result<MetaValue, IngestError> {
    match value {
        Value::String(s) => {
            check_string(key, &s, limits.max_attribute_bytes)?;
            Ok(MetaValue::Text(s))
        }
        Value::Bool(b) => Ok(MetaValue::Boolean(b)),
        Value::Number(n) => n
            .as_i64()
            .and_then(|i| i32::try_from(i).ok())
            .map(MetaValue::Integer)
            .ok_or_else(|| {
                bad(
                    key,
                    "a number extension must be a CloudEvents Integer \
                     (a whole number from -2147483648 to 2147483647)",
                )
            }),
        other => Err(bad(
            key,
            format!(
                "an extension is a string, an integer or a boolean, got {}",
                kind(&other)
            ),
        )),
    }
}

/// Whether a media type says JSON: `*/json` or `*/*+json`, parameters ignored.
fn is_json_media_type(media: &str) -> bool {
    let essence = media
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some((_, sub)) => sub == "json" || sub.ends_with("+json"),
        None => false,
    }
}

/// A decoded CloudEvent: the typed payload and how to publish it.
struct Decoded {
    event: Box<AnyEvent>,
    options: PublishOptions,
}

impl Bus {
    /// Ingests one CloudEvent in the JSON format (structured mode): checks the envelope
    /// (`specversion` 1.0, `id`, `source`, `type`; `time`, `datacontenttype`, `dataschema`
    /// and the extensions when present), then checks `data` against the schema of event
    /// `type` as [`publish_json`](Self::publish_json) does, and publishes it keeping the
    /// CloudEvent's id, time, source, subject, correlation and causation ids and extensions.
    /// See the [`cloudevents`](crate::cloudevents) module for the mapping.
    ///
    /// # Errors
    /// [`IngestError`]: the limits, a missing or malformed attribute, binary or non-JSON
    /// data, an unknown event or version, a schema violation. Nothing is dispatched.
    pub async fn ingest_cloudevent(&self, json: &[u8]) -> Result<Receipt, IngestError> {
        let decoded = self.decode_cloudevent(json)?;
        Ok(self.publish_any(decoded.event, decoded.options).await?)
    }

    /// [`ingest_cloudevent`](Self::ingest_cloudevent) without a runtime: synchronous
    /// handlers only.
    ///
    /// # Errors
    /// As [`ingest_cloudevent`](Self::ingest_cloudevent).
    pub fn ingest_cloudevent_blocking(&self, json: &[u8]) -> Result<Receipt, IngestError> {
        let decoded = self.decode_cloudevent(json)?;
        Ok(self.publish_any_blocking(decoded.event, decoded.options)?)
    }

    /// Ingests a CloudEvents JSON batch (`application/cloudevents-batch+json`: an array of
    /// events). Every event is checked first; if any fails, none is published and the error
    /// says which ([`IngestError::InBatch`]). Then they are published in order.
    ///
    /// # Errors
    /// As [`ingest_cloudevent`](Self::ingest_cloudevent), or the batch is not an array. A
    /// bus refusal while publishing ([`IngestError::Publish`]) stops the batch there; the
    /// events before it were published.
    pub async fn ingest_cloudevents_batch(&self, json: &[u8]) -> Result<Vec<Receipt>, IngestError> {
        let (value, whole_floats) =
            parse(json, self.inner.ingest_limits).map_err(|e| self.invalid(None, e))?;
        let Value::Array(items) = value else {
            return Err(self.invalid(
                None,
                IngestError::NotAnEvent {
                    found: kind(&value),
                    expected: "an array of CloudEvents",
                },
            ));
        };
        let mut decoded = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let one = self
                .decode_cloudevent_value(item, whole_floats)
                .map_err(|error| IngestError::InBatch {
                    index,
                    error: Box::new(error),
                })?;
            decoded.push(one);
        }
        let mut receipts = Vec::with_capacity(decoded.len());
        for one in decoded {
            receipts.push(self.publish_any(one.event, one.options).await?);
        }
        Ok(receipts)
    }

    /// A CloudEvent in structured mode (`attributes` is `None`: `body` is the whole event)
    /// or binary mode (`attributes` from headers, values as text; `body` is the data): its
    /// event and publish options.
    pub(crate) fn decode_cloudevent_parts(
        &self,
        attributes: Option<Map<String, Value>>,
        body: &[u8],
    ) -> Result<(Box<AnyEvent>, PublishOptions), IngestError> {
        let decoded = match attributes {
            None => self.decode_cloudevent(body)?,
            Some(mut ce) => {
                let (data, whole_floats) =
                    parse(body, self.inner.ingest_limits).map_err(|e| self.invalid(None, e))?;
                ce.insert("data".into(), data);
                self.decode_cloudevent_value(Value::Object(ce), whole_floats)?
            }
        };
        Ok((decoded.event, decoded.options))
    }

    fn decode_cloudevent(&self, json: &[u8]) -> Result<Decoded, IngestError> {
        let (value, whole_floats) =
            parse(json, self.inner.ingest_limits).map_err(|e| self.invalid(None, e))?;
        self.decode_cloudevent_value(value, whole_floats)
    }

    /// Checks one CloudEvent already parsed; tells the observers when it is refused.
    fn decode_cloudevent_value(
        &self,
        value: Value,
        whole_floats: bool,
    ) -> Result<Decoded, IngestError> {
        let mut named = None;
        self.try_decode_cloudevent(value, whole_floats, &mut named)
            .map_err(|e| self.invalid(named, e))
    }

    fn try_decode_cloudevent(
        &self,
        value: Value,
        whole_floats: bool,
        named: &mut Option<&'static str>,
    ) -> Result<Decoded, IngestError> {
        let Value::Object(mut ce) = value else {
            return Err(IngestError::NotAnEvent {
                found: kind(&value),
                expected: "a CloudEvent (a JSON object)",
            });
        };
        let limits = self.inner.ingest_limits;
        let max = limits.max_attribute_bytes;
        let spec = required(&ce, "specversion", max)?;
        if spec != "1.0" {
            return Err(IngestError::UnsupportedSpecVersion { found: clip(spec) });
        }
        let id = required(&ce, "id", max)?.to_owned();
        let source = required(&ce, "source", max)?.to_owned();
        let name = required(&ce, "type", max)?.to_owned();
        let time = optional_str(&ce, "time", max)?
            .map(parse_time)
            .transpose()?;
        if let Some(media) = optional_str(&ce, "datacontenttype", max)? {
            if !is_json_media_type(media) {
                return Err(IngestError::UnsupportedData {
                    reason: format!(
                        "`datacontenttype` is `{}`; events carry JSON data \
                         (`application/json` or another `*/json`, `*/*+json` type)",
                        clip(media)
                    ),
                });
            }
        }
        if optional(&ce, "data_base64").is_some() {
            return Err(IngestError::UnsupportedData {
                reason: "`data_base64` carries binary data; events carry JSON `data`".into(),
            });
        }
        let subject = optional_str(&ce, "subject", max)?.map(str::to_owned);
        // Names the producer's schema: any URI is accepted (the payload is checked against
        // this binary's schema of `type` at `eventversion` all the same), and the event
        // leaves with this binary's schema id.
        optional_str(&ce, "dataschema", max)?;
        let version = match optional(&ce, VERSION) {
            None => None,
            Some(Value::Number(n)) => Some(n.as_u64().and_then(|v| u32::try_from(v).ok())),
            Some(Value::String(s)) => Some(s.parse::<u32>().ok()),
            Some(_) => Some(None),
        };
        let version = match version {
            Some(Some(v)) => v,
            Some(None) => {
                return Err(bad(
                    VERSION,
                    "expected a version number (a positive integer, or one as a string)",
                ));
            }
            None => self.inner.catalog.newest(&name)?,
        };
        let info = self.inner.catalog.find(&name, version)?;
        *named = Some(info.name);
        let correlation = optional_str(&ce, CORRELATION, max)?
            .map(|c| event_id(CORRELATION, c))
            .transpose()?;
        let causation = optional_str(&ce, CAUSATION, max)?
            .map(|c| event_id(CAUSATION, c))
            .transpose()?;

        // Extensions become metadata: checked before the payload, whose check costs more.
        let data = ce.remove("data").unwrap_or(Value::Null);
        let mut metadata = crate::envelope::Metadata::new();
        let mut extensions = 0usize;
        for (key, value) in ce {
            if CORE.contains(&key.as_str())
                || [VERSION, CORRELATION, CAUSATION].contains(&key.as_str())
            {
                continue;
            }
            extensions += 1;
            if extensions > limits.max_extensions {
                return Err(bad(
                    &key,
                    format!(
                        "the event has more than {} extensions \
                         (`IngestLimits::max_extensions`)",
                        limits.max_extensions
                    ),
                ));
            }
            if !is_extension_name(&key) {
                return Err(bad(
                    &key,
                    "not a CloudEvents attribute name: those are lower-case ASCII letters and \
                     digits (names with other characters are reserved)",
                ));
            }
            if value.is_null() {
                continue;
            }
            let value = extension_value(&key, value, limits)?;
            if key == TRACEPARENT && !value.as_str().is_some_and(is_traceparent) {
                tracing::warn!(
                    event = info.name,
                    value = %clip(&value.to_string()),
                    "a `traceparent` that is not W3C trace context was dropped"
                );
                continue;
            }
            metadata.insert(key, value);
        }

        let event = decode(info, data, whole_floats, limits)?;

        let mut options = PublishOptions::new().source(source);
        options.time = time;
        options.causation_id = causation;
        if let Some(c) = correlation {
            options = options.correlation_id(c);
        }
        match id.parse::<EventId>() {
            Ok(parsed) => options.id = Some(parsed),
            Err(_) => options = options.metadata(ORIGINAL_ID, id),
        }
        if let Some(subject) = subject {
            options = options.metadata("subject", subject);
        }
        options.metadata.append(&mut metadata);
        Ok(Decoded { event, options })
    }
}

impl EventInfo {
    /// A stable URI naming this event's schema: `urn:events:schema:<name>:v<version>`. It is
    /// the `$id` of the generated schema documents and the CloudEvents `dataschema`.
    pub fn schema_id(&self) -> String {
        format!("urn:events:schema:{}:v{}", self.name, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types() {
        assert!(is_json_media_type("application/json"));
        assert!(is_json_media_type("application/json; charset=utf-8"));
        assert!(is_json_media_type("application/cloudevents+json"));
        assert!(is_json_media_type("text/json"));
        assert!(!is_json_media_type("application/xml"));
        assert!(!is_json_media_type("application/jsonx"));
        assert!(!is_json_media_type("json"));
    }

    #[test]
    fn extension_names() {
        assert!(is_extension_name("traceparent"));
        assert!(is_extension_name("comexampleothervalue"));
        assert!(!is_extension_name("tenant-id"));
        assert!(!is_extension_name("Tenant"));
        assert!(!is_extension_name("subject"));
        assert!(!is_extension_name(""));
    }

    #[test]
    fn traceparents() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(is_traceparent(ok));
        assert!(!is_traceparent(&format!("{ok}\r\nNats-Msg-Id: x")));
        assert!(
            !is_traceparent(&format!("{ok}-extra")),
            "version 00 has no more fields"
        );
        assert!(is_traceparent(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later"
        ));
        assert!(!is_traceparent(&ok.to_uppercase()));
        assert!(!is_traceparent(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        ));
        assert!(!is_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"
        ));
        assert!(!is_traceparent(
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!is_traceparent("00-4bf9"));
        assert!(!is_traceparent(""));
    }
}
