//! The AsyncAPI 3.1 document, describing the bytes on the wire: with a NATS transport, a
//! server, a channel per event at the subject it is sent on, a message per version in each
//! CloudEvents content mode (structured: the whole CloudEvent as the body; binary: `ce-`
//! headers and the data as the body), the send operation, each handler's receive operation
//! (its durable consumer), and the dead-letter channels. Without one, the channels are the
//! in-process event names.

use serde_json::{Map, Value, json};

use super::{DocEvent, DocsError, Options, model};
use crate::bus::Bus;

/// What the document says of the wire: from the bus's transport ([`Transport::wire`]).
///
/// [`Transport::wire`]: crate::transport::Transport::wire
struct Wire {
    host: String,
    protocol: &'static str,
    prefix: String,
    stream: String,
    binary: bool,
    compression: Option<(&'static str, usize)>,
    local: Vec<&'static str>,
    transport: std::sync::Arc<dyn crate::transport::Transport>,
}

fn wire(bus: &Bus, events: &[DocEvent]) -> Option<Wire> {
    let t = bus.inner.transport.as_ref()?;
    let w = t.wire()?;
    Some(Wire {
        host: w.host,
        protocol: w.protocol,
        prefix: w.prefix,
        stream: w.stream,
        binary: w.binary,
        compression: w.compression,
        local: events
            .iter()
            .map(|e| e.name)
            .filter(|n| t.is_local(n))
            .collect(),
        transport: std::sync::Arc::clone(t),
    })
}

impl Wire {
    fn subject(&self, name: &str) -> String {
        self.transport.address(name)
    }
    fn consumer(&self, handler: &str) -> String {
        self.transport.consumer_name(handler)
    }
}

/// The AsyncAPI 3.1.0 document of every event the bus knows and the handlers that receive
/// them, as they travel (see the README's CloudEvents table): with a NATS transport, the server,
/// channels at the subjects sent on, a message per version and content mode, send and receive
/// operations and the dead-letter channels. Payload
/// schemas are under `components.schemas`, their `$defs` beside them
/// (`<event>.v<version>.<Def>`), so every `$ref` resolves inside the document.
///
/// # Errors
/// [`DocsError`] when a schema cannot be serialized.
pub fn asyncapi(bus: &Bus, options: &Options) -> Result<Value, DocsError> {
    let events = model(bus)?;
    let wire = wire(bus, &events);
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    let mut schemas = Map::new();
    schemas.insert("TraceParent".into(), traceparent_schema());
    schemas.insert("ExtensionValue".into(), extension_value_schema());

    for e in &events {
        let local = wire.as_ref().is_some_and(|w| w.local.contains(&e.name));
        let remote = wire.as_ref().filter(|_| !local);
        let channel = channels.entry(e.name.to_owned()).or_insert_with(|| {
            let mut channel = json!({
                "address": remote.map_or(e.name.to_owned(), |w| w.subject(e.name)),
                "title": e.name,
                "messages": {},
            });
            if remote.is_none() {
                channel["description"] = "In-process only: published and handled inside \
                    one process, never sent over the network."
                    .into();
                channel["x-events-in-process"] = true.into();
            }
            channel
        });
        let modes: &[&str] = if remote.is_some() {
            &["structured", "binary"]
        } else {
            &["structured"]
        };
        for mode in modes {
            let key = format!("{}.{mode}", e.key);
            channel["messages"][&key] = json!({ "$ref": format!("#/components/messages/{key}") });
            let mut message = if *mode == "binary" {
                binary_message(e)
            } else {
                structured_message(e, remote.is_some())
            };
            if let Some((codec, above)) = remote.and_then(|w| w.compression) {
                compressed(&mut message, codec, above);
            }
            message["name"] = e.name.into();
            message["title"] = format!("{} v{} ({mode} mode)", e.name, e.version).into();
            message["x-event-kind"] = e.kind.into();
            message["x-event-version"] = e.version.into();
            message["x-rust-type"] = e.type_name.into();
            if let Some(d) = e.description {
                message["summary"] = first_line(d).into();
                message["description"] = d.into();
            }
            messages.insert(key, message);
        }
        for (key, schema) in component_schemas(e) {
            schemas.insert(key, schema);
        }

        let sent_mode = if wire.as_ref().is_some_and(|w| w.binary) && remote.is_some() {
            "binary"
        } else {
            "structured"
        };
        operations.insert(
            format!("send.{}", e.key),
            json!({
                "action": "send",
                "title": format!("publish {} v{}", e.name, e.version),
                "summary": if remote.is_some() {
                    format!("`Bus::publish` sends it in {sent_mode} mode and resolves on JetStream's ack")
                } else {
                    "`Bus::publish` hands it to this process's handlers".to_owned()
                },
                "channel": { "$ref": format!("#/channels/{}", e.name) },
                "messages": [
                    { "$ref": format!("#/channels/{}/messages/{}.{sent_mode}", e.name, e.key) }
                ],
            }),
        );
        for h in &e.handlers {
            let id = format!("receive.{}.{}", sanitize(h.name), e.key);
            let mut op = json!({
                "action": "receive",
                "title": h.name,
                "summary": format!(
                    "{} handler `{}` ({}{})",
                    if h.is_async { "async" } else { "sync" },
                    h.name,
                    if h.responder { "answers the query, " } else { "" },
                    format_args!("priority {}", h.priority)
                ),
                "channel": { "$ref": format!("#/channels/{}", e.name) },
                "messages": modes.iter().map(|mode| json!({
                    "$ref": format!("#/channels/{}/messages/{}.{mode}", e.name, e.key)
                })).collect::<Vec<_>>(),
            });
            if let (Some(w), false) = (remote, h.responder) {
                op["bindings"] = json!({
                    "nats": { "queue": w.consumer(h.name), "bindingVersion": "0.1.0" }
                });
                op["description"] = format!(
                    "JetStream durable pull consumer `{}` of stream `{}`: every process running \
                     this handler shares its messages.",
                    w.consumer(h.name),
                    w.stream
                )
                .into();
            }
            operations.insert(id, op);
        }
    }

    let mut doc = json!({
        "asyncapi": "3.1.0",
        "info": {
            "title": options.title,
            "version": options.version,
            "description": "Generated by `events` from the event registry and the bus's \
                            transport: one channel per event name at the subject it travels \
                            on, one message per version and CloudEvents content mode, one \
                            receive operation per handler.",
        },
        "defaultContentType": "application/cloudevents+json",
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": schemas,
        },
    });
    if let Some(w) = &wire {
        doc["servers"] = json!({
            w.protocol: {
                "host": w.host,
                "protocol": w.protocol,
                "description": format!(
                    "NATS JetStream: stream `{}` holds subjects `{}.>`; dead letters go to \
                     stream `{}_DLQ`, subjects `{}-dlq.>`.",
                    w.stream, w.prefix, w.stream, w.prefix
                ),
            }
        });
        add_dead_letters(&mut doc, w, &events);
    }
    Ok(doc)
}

/// The dead-letter channels: one per handler's consumer, and `unrouted`.
/// A message whose body may be compressed: the `Content-Encoding` header, and what it
/// means for the payload.
fn compressed(message: &mut Value, codec: &str, above: usize) {
    message["headers"]["properties"]["Content-Encoding"] = json!({
        "type": "string",
        "const": codec,
        "description": format!(
            "Present when the body was longer than {above} bytes: the body is then the \
             payload below compressed with {codec}; without it the body is as described."
        ),
    });
    message["x-events-compression"] = json!({ "codec": codec, "above_bytes": above });
}

fn add_dead_letters(doc: &mut Value, w: &Wire, events: &[DocEvent]) {
    doc["components"]["messages"]["DeadLetter"] = json!({
        "name": "dead letter",
        "title": "A message that failed or was refused",
        "summary": "The original message body, unchanged, with why it was dead-lettered.",
        "headers": {
            "type": "object",
            "required": ["Events-Handler", "Events-Error"],
            "properties": {
                "Events-Handler": { "type": "string", "description": "The handler (or `unrouted`)." },
                "Events-Error": { "type": "string", "description": "Why; `%`, control characters and non-ASCII bytes percent-encoded." },
            },
        },
        "payload": { "description": "The body of the message as it was received." },
    });
    if let Some((codec, above)) = w.compression {
        compressed(
            &mut doc["components"]["messages"]["DeadLetter"],
            codec,
            above,
        );
        doc["components"]["messages"]["DeadLetter"]["payload"]["description"] = format!(
            "The body of the message as it was received: {codec}-compressed when its \
             `Content-Encoding` header says so."
        )
        .into();
    }
    let mut consumers: Vec<String> = events
        .iter()
        .flat_map(|e| e.handlers.iter())
        .filter(|h| !h.responder)
        .map(|h| w.consumer(h.name))
        .chain(["unrouted".to_owned()])
        .collect();
    consumers.sort();
    consumers.dedup();
    for c in consumers {
        let key = format!("dead-letters.{}", sanitize(&c));
        doc["channels"][&key] = json!({
            "address": format!("{}-dlq.{c}", w.prefix),
            "title": format!("dead letters of `{c}`"),
            "messages": { "DeadLetter": { "$ref": "#/components/messages/DeadLetter" } },
        });
        doc["operations"][format!("send.{key}")] = json!({
            "action": "send",
            "title": format!("dead-letter for `{c}`"),
            "channel": { "$ref": format!("#/channels/{key}") },
            "messages": [{ "$ref": format!("#/channels/{key}/messages/DeadLetter") }],
        });
    }
}

/// The headers every NATS message of the bus carries.
fn nats_headers(content_type: &str) -> Map<String, Value> {
    let mut p = Map::new();
    p.insert(
        "Content-Type".into(),
        json!({ "type": "string", "const": content_type }),
    );
    p.insert(
        "Nats-Msg-Id".into(),
        json!({ "type": "string", "format": "uuid", "description": "The event's id: JetStream stores one event once within the duplicate window." }),
    );
    p.insert(
        "traceparent".into(),
        json!({ "$ref": "#/components/schemas/TraceParent" }),
    );
    p
}

/// Structured mode: the body is the CloudEvent, `data` the payload.
fn structured_message(e: &DocEvent, remote: bool) -> Value {
    let id = json!({ "type": "string", "format": "uuid" });
    let payload = json!({
        "type": "object",
        "description": "A CloudEvents 1.0 event in the JSON format.",
        "required": ["specversion", "id", "source", "type", "time", "datacontenttype",
                     "dataschema", "eventversion", "correlationid", "data"],
        "properties": {
            "specversion": { "type": "string", "const": "1.0" },
            "id": { "type": "string", "minLength": 1, "description": "The event's id (a UUIDv7, or the id it came in with)." },
            "source": { "type": "string", "minLength": 1 },
            "type": { "type": "string", "const": e.name },
            "time": { "type": "string", "format": "date-time" },
            "subject": { "type": "string" },
            "datacontenttype": { "type": "string", "const": "application/json" },
            "dataschema": { "type": "string", "const": e.schema_id },
            "eventversion": { "type": "integer", "const": e.version },
            "correlationid": id,
            "causationid": id,
            "data": { "$ref": format!("#/components/schemas/{}", e.key) },
        },
        "propertyNames": { "pattern": "^[a-z0-9]+$" },
        "additionalProperties": { "$ref": "#/components/schemas/ExtensionValue" },
    });
    let mut message = json!({
        "contentType": "application/cloudevents+json",
        "payload": payload,
        "examples": [{ "name": "example", "payload": {
            "specversion": "1.0",
            "id": "01900000-0000-7000-8000-000000000001",
            "source": "example",
            "type": e.name,
            "time": "2026-01-01T00:00:00Z",
            "datacontenttype": "application/json",
            "dataschema": e.schema_id,
            "eventversion": e.version,
            "correlationid": "01900000-0000-7000-8000-000000000001",
            "data": e.example,
        } }],
    });
    if remote {
        message["headers"] = json!({
            "type": "object",
            "required": ["Content-Type", "Nats-Msg-Id", "traceparent"],
            "properties": nats_headers("application/cloudevents+json"),
        });
    }
    message
}

/// Binary mode: attributes as `ce-` headers (percent-encoded text), the payload as the body.
fn binary_message(e: &DocEvent) -> Value {
    let text = |d: &str| json!({ "type": "string", "description": d });
    let mut properties = nats_headers("application/json");
    for (name, schema) in [
        (
            "ce-specversion",
            json!({ "type": "string", "const": "1.0" }),
        ),
        ("ce-id", text("The event's id.")),
        ("ce-source", text("Who published it, percent-encoded.")),
        ("ce-type", json!({ "type": "string", "const": e.name })),
        (
            "ce-time",
            json!({ "type": "string", "format": "date-time" }),
        ),
        (
            "ce-subject",
            text("What the event is about, percent-encoded."),
        ),
        (
            "ce-datacontenttype",
            json!({ "type": "string", "const": "application/json" }),
        ),
        (
            "ce-dataschema",
            json!({ "type": "string", "const": e.schema_id }),
        ),
        (
            "ce-eventversion",
            json!({ "type": "string", "const": e.version.to_string() }),
        ),
        (
            "ce-correlationid",
            json!({ "type": "string", "format": "uuid" }),
        ),
        (
            "ce-causationid",
            json!({ "type": "string", "format": "uuid" }),
        ),
    ] {
        properties.insert(name.into(), schema);
    }
    json!({
        "contentType": "application/json",
        "headers": {
            "type": "object",
            "required": ["Content-Type", "Nats-Msg-Id", "traceparent", "ce-specversion", "ce-id",
                         "ce-source", "ce-type", "ce-time", "ce-datacontenttype",
                         "ce-dataschema", "ce-eventversion", "ce-correlationid"],
            "properties": properties,
            "patternProperties": {
                "^ce-[a-z0-9]+$": text("An extension attribute (metadata), percent-encoded."),
            },
        },
        "payload": { "$ref": format!("#/components/schemas/{}", e.key) },
        "examples": [{ "name": "example", "payload": e.example }],
    })
}

fn traceparent_schema() -> Value {
    json!({
        "type": "string",
        "description": "W3C trace context (version 00): the event's own, or trace id = the \
                        correlation id and parent id = the random half of the event id.",
        "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
    })
}

fn extension_value_schema() -> Value {
    json!({
        "description": "A CloudEvents extension (event metadata): a String, an Integer or a Boolean.",
        "oneOf": [
            { "type": "string" },
            { "type": "integer", "minimum": -2147483648i64, "maximum": 2147483647 },
            { "type": "boolean" },
        ],
    })
}

/// The event's payload schema and its `$defs`, as component schemas with `$ref`s rewritten.
fn component_schemas(e: &DocEvent) -> Vec<(String, Value)> {
    let mut root = e.schema.clone();
    let defs = match &mut root {
        Value::Object(map) => {
            map.remove("$schema");
            map.remove("$id");
            map.remove("$defs")
        }
        _ => None,
    };
    let prefix = format!("#/components/schemas/{}.", e.key);
    let mut out = Vec::new();
    rewrite_refs(&mut root, &prefix);
    out.push((e.key.clone(), root));
    if let Some(Value::Object(defs)) = defs {
        for (name, mut schema) in defs {
            rewrite_refs(&mut schema, &prefix);
            out.push((format!("{}.{}", e.key, sanitize(&name)), schema));
        }
    }
    out
}

fn rewrite_refs(v: &mut Value, prefix: &str) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == "$ref" {
                    if let Some(name) = child.as_str().and_then(|r| r.strip_prefix("#/$defs/")) {
                        *child = Value::String(format!("{prefix}{}", sanitize(name)));
                    }
                } else {
                    rewrite_refs(child, prefix);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|c| rewrite_refs(c, prefix)),
        _ => {}
    }
}

/// Keeps `[A-Za-z0-9._-]`, the characters AsyncAPI allows in component keys.
fn sanitize(name: &str) -> String {
    name.replace("::", ".")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}
