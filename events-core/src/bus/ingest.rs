//! The ingest entry points of the bus: outside JSON and CloudEvents checked by
//! [`crate::ingest`] (limits, JSON Schema, upcasting), then published on the typed path.
//! Nothing is dispatched unless every check passes.

use serde_json::{Map, Value};

use super::{Bus, Ingress, anonymous};
use crate::envelope::{EventId, PublishOptions};
use crate::error::IngestError;
use crate::event::{AnyEvent, EventInfo};
use crate::ingest::cloudevents::{
    CAUSATION, CORE, CORRELATION, Decoded, ORIGINAL_ID, TRACEPARENT, VERSION, bad, event_id,
    extension_value, is_extension_name, is_json_media_type, is_traceparent, kind, optional,
    optional_str, parse_time, required,
};
use crate::ingest::{clip, decode, parse, validate};
use crate::receipt::Receipt;
use crate::security::Principal;

impl Bus {
    /// The limits its ingest entry points apply
    /// ([`BusBuilder::ingest_limits`](crate::BusBuilder::ingest_limits)): what a transport
    /// or an HTTP layer bounds a body by before it reads more.
    pub fn ingest_limits(&self) -> crate::ingest::IngestLimits {
        self.inner.ingest_limits
    }

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
        // As `Ingress::publish_json` for the anonymous caller, without its future around
        // this one: the anonymous principal is not recorded.
        let payload = self.ingress(anonymous()).decode_json(name, version, json)?;
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
        self.ingress(anonymous())
            .publish_json_blocking(name, version, json, options)
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
        self.ingress(anonymous()).decode_json(name, version, json)
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
        if error.is_refusal() {
            self.audit_refusal(event, &error);
        }
        error
    }
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
        self.ingress(anonymous()).ingest_cloudevent(json).await
    }

    /// [`ingest_cloudevent`](Self::ingest_cloudevent) without a runtime: synchronous
    /// handlers only.
    ///
    /// # Errors
    /// As [`ingest_cloudevent`](Self::ingest_cloudevent).
    pub fn ingest_cloudevent_blocking(&self, json: &[u8]) -> Result<Receipt, IngestError> {
        self.ingress(anonymous()).ingest_cloudevent_blocking(json)
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
        self.ingress(anonymous())
            .ingest_cloudevents_batch(json)
            .await
    }

    /// A CloudEvent in structured mode (`attributes` is `None`: `body` is the whole event)
    /// or binary mode (`attributes` from headers, values as text; `body` is the data): its
    /// event and publish options.
    pub(crate) fn decode_cloudevent_parts(
        &self,
        principal: &Principal,
        attributes: Option<Map<String, Value>>,
        body: &[u8],
    ) -> Result<(Box<AnyEvent>, PublishOptions), IngestError> {
        let decoded = match attributes {
            None => self.decode_cloudevent(principal, body)?,
            Some(mut ce) => {
                let (data, whole_floats) =
                    parse(body, self.inner.ingest_limits).map_err(|e| self.invalid(None, e))?;
                ce.insert("data".into(), data);
                self.decode_cloudevent_value(principal, Value::Object(ce), whole_floats)?
            }
        };
        Ok((decoded.event, decoded.options))
    }

    fn decode_cloudevent(
        &self,
        principal: &Principal,
        json: &[u8],
    ) -> Result<Decoded, IngestError> {
        let (value, whole_floats) =
            parse(json, self.inner.ingest_limits).map_err(|e| self.invalid(None, e))?;
        self.decode_cloudevent_value(principal, value, whole_floats)
    }

    /// Checks one CloudEvent already parsed; tells the observers when it is refused.
    fn decode_cloudevent_value(
        &self,
        principal: &Principal,
        value: Value,
        whole_floats: bool,
    ) -> Result<Decoded, IngestError> {
        let mut named = None;
        self.try_decode_cloudevent(principal, value, whole_floats, &mut named)
            .map_err(|e| self.invalid(named, e))
    }

    fn try_decode_cloudevent(
        &self,
        principal: &Principal,
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
        // Who may send it, before anything else of it is looked at.
        if let Some(guard) = &self.inner.guard {
            guard.admit(principal, &name)?;
        }
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
        if let Some(guard) = &self.inner.guard {
            guard.meter(principal, info)?;
        }
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
        super::guard::record(principal, &mut options);
        Ok(Decoded { event, options })
    }
}

/// The same entry points as [`Bus`]'s, for one caller: each is its `Bus` namesake plus the
/// [access rules](crate::security::AccessRules) and [rate limits](crate::security::RateLimits)
/// checked for this caller before the payload is read, and the caller recorded in the
/// envelope ([`Meta::principal`](crate::Meta::principal)).
impl Ingress<'_> {
    /// [`Bus::publish_json`] for this caller.
    ///
    /// # Errors
    /// As [`Bus::publish_json`], and [`IngestError::Forbidden`] or
    /// [`IngestError::RateLimited`].
    pub async fn publish_json(
        &self,
        name: &str,
        version: u32,
        json: &[u8],
        mut options: PublishOptions,
    ) -> Result<Receipt, IngestError> {
        let payload = self.decode_json(name, version, json)?;
        super::guard::record(self.principal, &mut options);
        self.bus
            .publish_any(payload, options)
            .await
            .map_err(Into::into)
    }

    /// [`Bus::publish_json_blocking`] for this caller.
    ///
    /// # Errors
    /// As [`publish_json`](Self::publish_json).
    #[inline]
    pub fn publish_json_blocking(
        &self,
        name: &str,
        version: u32,
        json: &[u8],
        mut options: PublishOptions,
    ) -> Result<Receipt, IngestError> {
        let bus = self.bus;
        let info = self.admitted(name, version)?;
        super::guard::record(self.principal, &mut options);
        let (value, whole_floats) = parse(json, bus.inner.ingest_limits)
            .and_then(|parsed| validate(info, &parsed.0, bus.inner.ingest_limits).map(|()| parsed))
            .map_err(|e| bus.invalid(Some(info.name), e))?;
        let options = (!options.is_empty()).then_some(options);
        let mut receipt: Option<Receipt> = None;
        (info.publish_value)(bus, value, whole_floats, options, &mut receipt)
            .and_then(|()| {
                receipt.ok_or_else(|| {
                    IngestError::Publish(crate::error::PublishError::Transport {
                        name: info.name,
                        reason: "the typed ingest path gave no receipt: a bug in `events`".into(),
                    })
                })
            })
            .map_err(|e| match e {
                IngestError::Publish(_) => e, // told to the observers as a refusal already
                e => bus.invalid(Some(info.name), e),
            })
    }

    /// [`Bus::decode_json`] for this caller. A decoded event carries no principal: the
    /// caller publishes it.
    ///
    /// # Errors
    /// As [`publish_json`](Self::publish_json).
    pub fn decode_json(
        &self,
        name: &str,
        version: u32,
        json: &[u8],
    ) -> Result<Box<AnyEvent>, IngestError> {
        let bus = self.bus;
        let info = self.admitted(name, version)?;
        parse(json, bus.inner.ingest_limits)
            .and_then(|(value, whole_floats)| {
                decode(info, value, whole_floats, bus.inner.ingest_limits)
            })
            .map_err(|e| bus.invalid(Some(info.name), e))
    }

    /// The event `name` at `version`, if the rules let this caller publish it now: the
    /// access check on the name as sent, the catalog, then the rate limits.
    #[inline]
    fn admitted(&self, name: &str, version: u32) -> Result<&'static EventInfo, IngestError> {
        self.bus.admit(self.principal, name)?;
        let info = self.bus.find_event(name, version)?;
        self.bus.meter(self.principal, info)?;
        Ok(info)
    }

    /// [`Bus::ingest_cloudevent`] for this caller.
    ///
    /// # Errors
    /// As [`Bus::ingest_cloudevent`], and [`IngestError::Forbidden`] or
    /// [`IngestError::RateLimited`].
    pub async fn ingest_cloudevent(&self, json: &[u8]) -> Result<Receipt, IngestError> {
        let decoded = self.bus.decode_cloudevent(self.principal, json)?;
        Ok(self.bus.publish_any(decoded.event, decoded.options).await?)
    }

    /// [`Bus::ingest_cloudevent_blocking`] for this caller.
    ///
    /// # Errors
    /// As [`ingest_cloudevent`](Self::ingest_cloudevent).
    pub fn ingest_cloudevent_blocking(&self, json: &[u8]) -> Result<Receipt, IngestError> {
        let decoded = self.bus.decode_cloudevent(self.principal, json)?;
        Ok(self
            .bus
            .publish_any_blocking(decoded.event, decoded.options)?)
    }

    /// Ingests one CloudEvent in binary mode, as the HTTP and NATS bindings carry one: the
    /// attributes in `headers` (`ce-id`, `ce-type`, ..., `Content-Type`; see
    /// [`cloudevents::binary_attributes`](crate::cloudevents::binary_attributes)) and the
    /// data in `body`. Headers without `ce-` attributes, or a `Content-Type` of
    /// `application/cloudevents+json`, mean structured mode: `body` is the whole event.
    /// Every check of [`ingest_cloudevent`](Self::ingest_cloudevent) applies.
    ///
    /// # Errors
    /// As [`ingest_cloudevent`](Self::ingest_cloudevent); a bad header is
    /// [`IngestError::BadAttribute`].
    pub async fn ingest_cloudevent_binary<'h>(
        &self,
        headers: impl IntoIterator<Item = (&'h str, &'h str)>,
        body: &[u8],
    ) -> Result<Receipt, IngestError> {
        let (event, options) = self.decode_binary(headers, body)?;
        Ok(self.bus.publish_any(event, options).await?)
    }

    /// [`ingest_cloudevent_binary`](Self::ingest_cloudevent_binary) without a runtime:
    /// synchronous handlers only.
    ///
    /// # Errors
    /// As [`ingest_cloudevent_binary`](Self::ingest_cloudevent_binary).
    pub fn ingest_cloudevent_binary_blocking<'h>(
        &self,
        headers: impl IntoIterator<Item = (&'h str, &'h str)>,
        body: &[u8],
    ) -> Result<Receipt, IngestError> {
        let (event, options) = self.decode_binary(headers, body)?;
        Ok(self.bus.publish_any_blocking(event, options)?)
    }

    fn decode_binary<'h>(
        &self,
        headers: impl IntoIterator<Item = (&'h str, &'h str)>,
        body: &[u8],
    ) -> Result<(Box<AnyEvent>, PublishOptions), IngestError> {
        let attributes = crate::cloudevents::binary_attributes(headers)
            .map_err(|reason| self.bus.invalid(None, bad("headers", reason)))?;
        self.bus
            .decode_cloudevent_parts(self.principal, attributes, body)
    }

    /// Not public API: a message's attributes (`None`: structured mode) and body as a
    /// transport read them, through the consumer's ingest path; for the fuzz targets.
    #[doc(hidden)]
    pub fn __ingest_parts_blocking(
        &self,
        attributes: Option<Map<String, Value>>,
        body: &[u8],
    ) -> Result<Receipt, IngestError> {
        let (event, options) =
            self.bus
                .decode_cloudevent_parts(self.principal, attributes, body)?;
        Ok(self.bus.publish_any_blocking(event, options)?)
    }

    /// [`Bus::ingest_cloudevents_batch`] for this caller: every event is checked, the access
    /// rules and rate limits included, before any is published.
    ///
    /// # Errors
    /// As [`Bus::ingest_cloudevents_batch`], and [`IngestError::Forbidden`] or
    /// [`IngestError::RateLimited`] inside [`IngestError::InBatch`].
    pub async fn ingest_cloudevents_batch(&self, json: &[u8]) -> Result<Vec<Receipt>, IngestError> {
        let bus = self.bus;
        let (value, whole_floats) =
            parse(json, bus.inner.ingest_limits).map_err(|e| bus.invalid(None, e))?;
        let Value::Array(items) = value else {
            return Err(bus.invalid(
                None,
                IngestError::NotAnEvent {
                    found: kind(&value),
                    expected: "an array of CloudEvents",
                },
            ));
        };
        let mut decoded = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let one = bus
                .decode_cloudevent_value(self.principal, item, whole_floats)
                .map_err(|error| IngestError::InBatch {
                    index,
                    error: Box::new(error),
                })?;
            decoded.push(one);
        }
        let mut receipts = Vec::with_capacity(decoded.len());
        for one in decoded {
            receipts.push(bus.publish_any(one.event, one.options).await?);
        }
        Ok(receipts)
    }
}
