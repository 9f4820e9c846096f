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
//! | `dataschema` | [`EventInfo::schema_id`](crate::EventInfo::schema_id), e.g. `urn:events:schema:order.placed:v2` |
//! | `data` | the payload |
//! | extension `eventversion` | the payload's version (absent: the newest version this binary knows) |
//! | extension `correlationid` | [`Meta::correlation_id`] |
//! | extension `causationid` | [`Meta::causation_id`] |
//! | other extensions (`traceparent`, ...) | metadata entries of the same name; metadata whose key is a valid extension name goes back out as an extension |

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{IngestError, clip, decode, parse};
use crate::bus::Bus;
use crate::envelope::{EventId, Meta, PublishOptions};
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
/// Where a CloudEvents `id` that is not a UUID is kept.
const ORIGINAL_ID: &str = "cloudevents.id";

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
    let mut ce = Map::new();
    ce.insert("specversion".into(), "1.0".into());
    let id = match meta.metadata().get(ORIGINAL_ID) {
        Some(original) => original.clone(),
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
    if let Some(subject) = meta.metadata().get("subject") {
        ce.insert("subject".into(), subject.clone().into());
    }
    ce.insert("datacontenttype".into(), "application/json".into());
    ce.insert("dataschema".into(), meta.info().schema_id().into());
    ce.insert(VERSION.into(), meta.version().into());
    ce.insert(CORRELATION.into(), meta.correlation_id().to_string().into());
    if let Some(causation) = meta.causation_id() {
        ce.insert(CAUSATION.into(), causation.to_string().into());
    }
    for (key, value) in meta.metadata() {
        if is_extension_name(key) && !ce.contains_key(key) {
            ce.insert(key.clone(), value.clone().into());
        }
    }
    ce.insert("data".into(), event.to_json()?);
    Ok(Value::Object(ce))
}

/// Lower-case letters and digits, not one of the core attributes (CloudEvents 1.0 §3.1.1).
fn is_extension_name(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && !CORE.contains(&key)
}

/// An optional attribute: absent and `null` are the same.
fn optional<'a>(ce: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    ce.get(name).filter(|v| !v.is_null())
}

fn bad(attribute: &str, reason: impl Into<String>) -> IngestError {
    IngestError::BadAttribute {
        attribute: attribute.to_owned(),
        reason: reason.into(),
    }
}

/// A required, non-empty string attribute.
fn required<'a>(ce: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, IngestError> {
    match optional(ce, name) {
        None => Err(IngestError::MissingAttribute { attribute: name }),
        Some(Value::String(s)) if s.is_empty() => Err(bad(name, "it is empty")),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(bad(name, format!("expected a string, got {}", kind(other)))),
    }
}

fn optional_str<'a>(
    ce: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, IngestError> {
    match optional(ce, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
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
        let value = parse(json, self.inner.ingest_limits).map_err(|e| self.invalid(None, e))?;
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
                .decode_cloudevent_value(item)
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

    /// [`decode_cloudevent`](Self::decode_cloudevent)'s event and publish options.
    #[cfg(feature = "nats")]
    pub(crate) fn decode_cloudevent_parts(
        &self,
        json: &[u8],
    ) -> Result<(Box<AnyEvent>, PublishOptions), IngestError> {
        let decoded = self.decode_cloudevent(json)?;
        Ok((decoded.event, decoded.options))
    }

    fn decode_cloudevent(&self, json: &[u8]) -> Result<Decoded, IngestError> {
        let value = parse(json, self.inner.ingest_limits).map_err(|e| self.invalid(None, e))?;
        self.decode_cloudevent_value(value)
    }

    /// Checks one CloudEvent already parsed; tells the observers when it is refused.
    fn decode_cloudevent_value(&self, value: Value) -> Result<Decoded, IngestError> {
        let mut named = None;
        self.try_decode_cloudevent(value, &mut named)
            .map_err(|e| self.invalid(named, e))
    }

    fn try_decode_cloudevent(
        &self,
        value: Value,
        named: &mut Option<&'static str>,
    ) -> Result<Decoded, IngestError> {
        let Value::Object(mut ce) = value else {
            return Err(IngestError::NotAnEvent {
                found: kind(&value),
                expected: "a CloudEvent (a JSON object)",
            });
        };
        let spec = required(&ce, "specversion")?;
        if spec != "1.0" {
            return Err(IngestError::UnsupportedSpecVersion { found: clip(spec) });
        }
        let id = required(&ce, "id")?.to_owned();
        let source = required(&ce, "source")?.to_owned();
        let name = required(&ce, "type")?.to_owned();
        let time = optional_str(&ce, "time")?
            .map(|t| {
                OffsetDateTime::parse(t, &Rfc3339)
                    .map(std::time::SystemTime::from)
                    .map_err(|_| {
                        bad(
                            "time",
                            format!("expected an RFC 3339 timestamp, got `{}`", clip(t)),
                        )
                    })
            })
            .transpose()?;
        if let Some(media) = optional_str(&ce, "datacontenttype")? {
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
        let subject = optional_str(&ce, "subject")?.map(str::to_owned);
        let dataschema = optional_str(&ce, "dataschema")?;
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
        if let Some(schema) = dataschema {
            if schema != info.schema_id() {
                return Err(bad(
                    "dataschema",
                    format!(
                        "`{}` is not the schema of `{}` v{}: `{}`",
                        clip(schema),
                        info.name,
                        info.version,
                        info.schema_id()
                    ),
                ));
            }
        }
        let correlation = optional_str(&ce, CORRELATION)?
            .map(|c| event_id(CORRELATION, c))
            .transpose()?;
        let causation = optional_str(&ce, CAUSATION)?
            .map(|c| event_id(CAUSATION, c))
            .transpose()?;

        let data = ce.remove("data").unwrap_or(Value::Null);
        let event = decode(info, data)?;

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
        for (key, value) in ce {
            if CORE.contains(&key.as_str())
                || [VERSION, CORRELATION, CAUSATION].contains(&key.as_str())
            {
                continue;
            }
            let text = match value {
                Value::Null => continue,
                Value::String(s) => s,
                other => other.to_string(),
            };
            options = options.metadata(key, text);
        }
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
}
