//! CloudEvents 1.0, JSON format (structured mode) and JSON batch format.
//!
//! | CloudEvents | `events` |
//! |---|---|
//! | `id` | [`Meta::id`](crate::Meta::id) when it is a UUID; otherwise a new id, the original kept in metadata `cloudevents.id` (and given back on the way out) |
//! | `source` | [`Meta::source`](crate::Meta::source) |
//! | `type` | the event's name |
//! | `time` | [`Meta::time`](crate::Meta::time) (RFC 3339) |
//! | `subject` | metadata `subject` |
//! | `datacontenttype` | `application/json` (any `*/json` or `*/*+json` is accepted) |
//! | `dataschema` | [`EventInfo::schema_id`](crate::EventInfo::schema_id), e.g. `urn:events:schema:order.placed:v2`, on the way out; any URI is accepted on the way in (it names the producer's schema) |
//! | `data` | the payload |
//! | extension `eventversion` | the payload's version (absent: the newest version this binary knows) |
//! | extension `correlationid` | [`Meta::correlation_id`](crate::Meta::correlation_id) |
//! | extension `causationid` | [`Meta::causation_id`](crate::Meta::causation_id) |
//! | other extensions (`traceparent`, ...) | metadata entries of the same name and type (string, integer, boolean), and back out as extensions; a name that is not lower-case letters and digits is refused, a `traceparent` that is not W3C trace context is dropped with a warning |
//!
//! Every string attribute is refused if it holds a control character or is longer than
//! [`IngestLimits::max_attribute_bytes`](crate::IngestLimits); more than
//! [`IngestLimits::max_extensions`](crate::IngestLimits) extensions are refused; a `time`
//! outside 1970-2554 (what an envelope holds) is refused, never clamped.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{IngestError, IngestLimits, clip};
use crate::envelope::{EventId, MetaValue, PublishOptions};
use crate::event::{AnyEvent, EventInfo};

pub use crate::wire::to_json;
pub(crate) use crate::wire::{
    CAUSATION, CORE, CORRELATION, ORIGINAL_ID, TRACEPARENT, VERSION, is_extension_name,
    is_traceparent,
};

/// The CloudEvents attributes of a message in binary mode, read from its headers as the
/// HTTP and NATS bindings write them: `ce-<attribute>` (any case) with a percent-encoded
/// UTF-8 value, and `Content-Type` as `datacontenttype`. `Ok(None)` when the message is in
/// structured mode (its content type is `application/cloudevents...`, or it has no `ce-`
/// header): the body is then the whole event.
///
/// # Errors
/// A header given twice, a value that is not percent-encoded UTF-8, or a batch content
/// type (`application/cloudevents-batch+json`: one event a message).
pub fn binary_attributes<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Option<Map<String, Value>>, String> {
    const CE_PREFIX: &str = "ce-";
    let mut content_type = None;
    let mut ce = Map::new();
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-type") {
            if content_type.replace(value).is_some() {
                return Err("header `Content-Type` is given more than once".into());
            }
        } else if name
            .get(..CE_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(CE_PREFIX))
        {
            let attribute = name[CE_PREFIX.len()..].to_ascii_lowercase();
            if ce.contains_key(&attribute) {
                return Err(format!("header `{}` is given more than once", clip(name)));
            }
            let text = crate::text::decode_header_value(value)
                .ok_or_else(|| format!("header `{}` is not percent-encoded UTF-8", clip(name)))?;
            ce.insert(attribute, text.into());
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

/// An optional attribute: absent and `null` are the same.
pub(crate) fn optional<'a>(ce: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    ce.get(name).filter(|v| !v.is_null())
}

pub(crate) fn bad(attribute: &str, reason: impl Into<String>) -> IngestError {
    IngestError::BadAttribute {
        attribute: clip(attribute),
        reason: reason.into(),
    }
}

/// A CloudEvents String: no control characters (U+0000-U+001F, U+007F-U+009F; §3.1.1 of
/// the specification), at most `max` bytes.
pub(crate) fn check_string(name: &str, value: &str, max: usize) -> Result<(), IngestError> {
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
pub(crate) fn required<'a>(
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

pub(crate) fn optional_str<'a>(
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

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(crate) fn event_id(attribute: &str, text: &str) -> Result<EventId, IngestError> {
    text.parse().map_err(|_| {
        bad(
            attribute,
            format!("expected an event id (a UUID), got `{}`", clip(text)),
        )
    })
}

/// An RFC 3339 time an envelope can hold exactly: from 1970 (the Unix epoch) to 2554 (the
/// last nanosecond a `u64` counts). Anything else is refused, never clamped.
pub(crate) fn parse_time(text: &str) -> Result<std::time::SystemTime, IngestError> {
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
pub(crate) fn extension_value(
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
pub(crate) fn is_json_media_type(media: &str) -> bool {
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
pub(crate) struct Decoded {
    pub(crate) event: Box<AnyEvent>,
    pub(crate) options: PublishOptions,
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
