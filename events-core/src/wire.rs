//! The CloudEvents 1.0 form of an envelope: what an event looks like on the wire, in
//! structured mode ([`to_json`]) and as attributes (binary mode). The ingest path reads this
//! form back ([`crate::cloudevents`]); transports write it ([`crate::transport::Outgoing`]).

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::envelope::{Meta, MetaValue};
use crate::event::AnyEvent;

/// Attributes with a meaning of their own; every other member is an extension.
pub(crate) const CORE: [&str; 10] = [
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
pub(crate) const VERSION: &str = "eventversion";
pub(crate) const CORRELATION: &str = "correlationid";
pub(crate) const CAUSATION: &str = "causationid";
pub(crate) const TRACEPARENT: &str = "traceparent";
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

/// The event's CloudEvents `id`: the one it arrived with, or its event id.
pub(crate) fn cloudevents_id(meta: &Meta) -> String {
    match meta.metadata().get(ORIGINAL_ID).and_then(MetaValue::as_str) {
        Some(original) => original.to_owned(),
        None => meta.id().to_string(),
    }
}

/// Every CloudEvents attribute of an event, typed as the JSON format writes them: what
/// [`to_json`] sends beside `data`, and what binary mode puts in headers.
pub(crate) fn attributes(meta: &Meta) -> Map<String, Value> {
    let mut ce = Map::new();
    ce.insert("specversion".into(), "1.0".into());
    ce.insert("id".into(), cloudevents_id(meta).into());
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
pub(crate) fn is_extension_name(key: &str) -> bool {
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
