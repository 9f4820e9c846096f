//! CloudEvents 1.0 JSON format: the specification's own examples, required attributes,
//! batches, and round trips through `cloudevents::to_json`.

#![allow(unreachable_pub, non_snake_case)]

use events::testing::TestBus;
use events::{Bus, Event, EventId, IngestError, Meta, PublishOptions, cloudevents};

/// The payload of the specification's JSON examples.
#[derive(Event, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "com.example.someevent")]
struct SomeEvent {
    appinfoA: String,
    appinfoB: i64,
    appinfoC: bool,
}

#[derive(Event, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "com.example.someotherevent")]
struct SomeOtherEvent {
    appinfoA: String,
    appinfoB: i64,
    appinfoC: bool,
}

#[derive(
    Event, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[event(name = "order.placed", version = 2)]
struct OrderPlaced {
    order_id: u64,
}

#[derive(
    Event, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[event(name = "order.placed", version = 1)]
struct OrderPlacedV1 {
    id: u64,
}

/// A bus without handlers that captures every event it dispatches.
fn recording_bus() -> TestBus {
    TestBus::new(Bus::builder().no_handlers().source("receiver")).unwrap()
}

/// A captured event's envelope and payload.
fn nth(bus: &TestBus, i: usize) -> (Meta, serde_json::Value) {
    let c = bus.captured().swap_remove(i);
    (c.meta, c.payload.unwrap())
}

/// Section 3.2, "Example event with JSON Object-valued data", verbatim.
const SPEC_JSON_EXAMPLE: &str = r#"{
    "specversion" : "1.0",
    "type" : "com.example.someevent",
    "source" : "/mycontext",
    "subject": null,
    "id" : "C234-1234-1234",
    "time" : "2018-04-05T17:31:00Z",
    "comexampleextension1" : "value",
    "comexampleothervalue" : 5,
    "datacontenttype" : "application/json",
    "data" : {
        "appinfoA" : "abc",
        "appinfoB" : 123,
        "appinfoC" : true
    }
}"#;

#[test]
fn the_specifications_json_example_is_ingested_with_its_attributes() {
    let bus = recording_bus();
    let receipt = bus
        .ingest_cloudevent_blocking(SPEC_JSON_EXAMPLE.as_bytes())
        .unwrap();
    assert_eq!(receipt.event_name(), "com.example.someevent");
    let (meta, data) = &nth(&bus, 0);
    assert_eq!(
        data,
        &serde_json::json!({ "appinfoA": "abc", "appinfoB": 123, "appinfoC": true })
    );
    assert_eq!(meta.source(), "/mycontext");
    assert_eq!(
        meta.time(),
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_522_949_460)
    );
    let md = meta.metadata();
    assert_eq!(
        md["cloudevents.id"], "C234-1234-1234",
        "a non-UUID id is kept"
    );
    assert_eq!(md["comexampleextension1"], "value");
    assert_eq!(
        md["comexampleothervalue"],
        events::MetaValue::Integer(5),
        "an integer extension stays an integer"
    );
    assert!(!md.contains_key("subject"), "a null attribute is absent");

    // And back out: the same attributes, the original id.
    let ce = cloudevents::to_json(
        &SomeEvent {
            appinfoA: "abc".into(),
            appinfoB: 123,
            appinfoC: true,
        },
        meta,
    )
    .unwrap();
    assert_eq!(ce["id"], "C234-1234-1234");
    assert_eq!(ce["source"], "/mycontext");
    assert_eq!(ce["time"], "2018-04-05T17:31:00Z");
    assert_eq!(ce["comexampleothervalue"], 5, "and leaves as one");
    assert_eq!(
        ce["dataschema"],
        "urn:events:schema:com.example.someevent:v1"
    );
    assert_eq!(ce["eventversion"], 1);
}

#[test]
fn the_specifications_other_examples_are_refused_with_the_reason() {
    let bus = recording_bus();
    // Binary data, and an XML document: not JSON payloads.
    let binary = r#"{
        "specversion" : "1.0", "type" : "com.example.someevent", "source" : "/mycontext",
        "id" : "A234-1234-1234", "time" : "2018-04-05T17:31:00Z",
        "comexampleextension1" : "value", "comexampleothervalue" : 5,
        "datacontenttype" : "application/vnd.apache.thrift.binary",
        "data_base64" : "... base64 encoded string ..."
    }"#;
    assert_eq!(
        bus.ingest_cloudevent_blocking(binary.as_bytes())
            .unwrap_err()
            .to_string(),
        "the CloudEvent's data cannot be an event payload: `datacontenttype` is \
         `application/vnd.apache.thrift.binary`; events carry JSON data (`application/json` or \
         another `*/json`, `*/*+json` type)"
    );
    let xml = r#"{
        "specversion" : "1.0", "type" : "com.example.someevent", "source" : "/mycontext",
        "id" : "B234-1234-1234", "time" : "2018-04-05T17:31:00Z",
        "comexampleextension1" : "value", "comexampleothervalue" : 5,
        "unsetextension": null,
        "datacontenttype" : "application/xml",
        "data" : "<much wow=\"xml\"/>"
    }"#;
    assert!(matches!(
        bus.ingest_cloudevent_blocking(xml.as_bytes()).unwrap_err(),
        IngestError::UnsupportedData { .. }
    ));
    // A JSON string as data, no content type: JSON, but not this event's payload.
    let string = r#"{
        "specversion" : "1.0", "type" : "com.example.someevent", "source" : "/mycontext",
        "subject": null, "id" : "D234-1234-1234", "time" : "2018-04-05T17:31:00Z",
        "comexampleextension1" : "value", "comexampleothervalue" : 5,
        "data" : "I'm just a string"
    }"#;
    assert_eq!(
        bus.ingest_cloudevent_blocking(string.as_bytes())
            .unwrap_err()
            .to_string(),
        "payload of `com.example.someevent` v1 does not match its schema (1 violation): \
         at /: \"I'm just a string\" is not of type \"object\""
    );
    bus.expect_nothing();
}

#[test]
fn required_attributes_and_their_types_are_checked() {
    let bus = recording_bus();
    let with = |edit: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
        let mut ce: serde_json::Value = serde_json::from_str(SPEC_JSON_EXAMPLE).unwrap();
        edit(ce.as_object_mut().unwrap());
        bus.ingest_cloudevent_blocking(ce.to_string().as_bytes())
            .unwrap_err()
            .to_string()
    };
    for attribute in ["specversion", "id", "source", "type"] {
        assert_eq!(
            with(&|ce| {
                ce.remove(attribute);
            }),
            format!("the CloudEvent has no `{attribute}` attribute, which is required")
        );
    }
    assert_eq!(
        with(&|ce| {
            ce.insert("id".into(), 42.into());
        }),
        "the CloudEvent's `id` attribute is invalid: expected a string, got a number"
    );
    assert_eq!(
        with(&|ce| {
            ce.insert("source".into(), "".into());
        }),
        "the CloudEvent's `source` attribute is invalid: it is empty"
    );
    assert_eq!(
        with(&|ce| {
            ce.insert("specversion".into(), "0.3".into());
        }),
        "CloudEvents specversion `0.3` is not supported; expected `1.0`"
    );
    assert_eq!(
        with(&|ce| {
            ce.insert("time".into(), "yesterday".into());
        }),
        "the CloudEvent's `time` attribute is invalid: expected an RFC 3339 timestamp, got `yesterday`"
    );
    assert_eq!(
        with(&|ce| {
            ce.insert("type".into(), "com.example.someevnt".into());
        }),
        "unknown event `com.example.someevnt`; did you mean `com.example.someevent`?"
    );
    assert_eq!(
        with(&|ce| {
            ce.insert("eventversion".into(), "two".into());
        }),
        "the CloudEvent's `eventversion` attribute is invalid: expected a version number (a \
         positive integer, or one as a string)"
    );
    assert_eq!(
        with(&|ce| {
            ce.insert("correlationid".into(), "abc".into());
        }),
        "the CloudEvent's `correlationid` attribute is invalid: expected an event id (a UUID), got `abc`"
    );
    assert_eq!(
        bus.ingest_cloudevent_blocking(b"[1]")
            .unwrap_err()
            .to_string(),
        "expected a CloudEvent (a JSON object), got an array"
    );
    bus.expect_nothing();
}

#[tokio::test]
async fn a_batch_is_checked_whole_before_anything_is_published() {
    let bus = recording_bus();
    // Section 4.3's example: the first event carries binary data.
    let spec_batch = r#"[
      {
          "specversion" : "1.0", "type" : "com.example.someevent", "source" : "/mycontext/4",
          "id" : "B234-1234-1234", "time" : "2018-04-05T17:31:00Z",
          "comexampleextension1" : "value", "comexampleothervalue" : 5,
          "datacontenttype" : "application/vnd.apache.thrift.binary",
          "data_base64" : "... base64 encoded string ..."
      },
      {
          "specversion" : "1.0", "type" : "com.example.someotherevent", "source" : "/mycontext/9",
          "id" : "C234-1234-1234", "time" : "2018-04-05T17:31:05Z",
          "comexampleextension1" : "value", "comexampleothervalue" : 5,
          "datacontenttype" : "application/json",
          "data" : { "appinfoA" : "abc", "appinfoB" : 123, "appinfoC" : true }
      }
    ]"#;
    let err = bus
        .ingest_cloudevents_batch(spec_batch.as_bytes())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, IngestError::InBatch { index: 0, .. }),
        "{err}"
    );
    assert!(
        bus.captured().is_empty(),
        "nothing of a refused batch is published"
    );

    assert!(
        bus.ingest_cloudevents_batch(b"[]")
            .await
            .unwrap()
            .is_empty()
    );

    let good: serde_json::Value = serde_json::from_str(spec_batch).unwrap();
    let second = good[1].to_string();
    let batch = format!("[{SPEC_JSON_EXAMPLE}, {second}]");
    let receipts = bus
        .ingest_cloudevents_batch(batch.as_bytes())
        .await
        .unwrap();
    assert_eq!(receipts.len(), 2);
    let names: Vec<&str> = bus.captured().iter().map(|c| c.meta.name()).collect();
    assert_eq!(
        names,
        ["com.example.someevent", "com.example.someotherevent"]
    );
    assert_eq!(
        bus.ingest_cloudevents_batch(b"{}")
            .await
            .unwrap_err()
            .to_string(),
        "expected an array of CloudEvents, got an object"
    );
}

#[tokio::test]
async fn an_envelope_survives_the_round_trip() {
    // The sender publishes an event; what it dispatched is written as a CloudEvent.
    let sender = TestBus::new(Bus::builder().no_handlers().source("checkout")).unwrap();
    let parent = EventId::new();
    let flow = EventId::new();
    let mut options = PublishOptions::new()
        .correlation_id(flow)
        .metadata(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .metadata("subject", "order/7")
        .metadata("attempts", 3)
        .metadata("vip", true);
    options = options.metadata("region", "eu");
    // A key that cannot travel as an extension is refused, not dropped on the way out.
    for key in ["tenant-id", "Region", "id", "eventversion", ""] {
        let err = sender
            .publish_with(
                OrderPlaced { order_id: 7 },
                PublishOptions::new().metadata(key, "x"),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, events::PublishError::BadMetadata { .. }),
            "{key}: {err}"
        );
    }
    // So is text a receiving bus would refuse: a control character in a value or the source.
    for options in [
        PublishOptions::new().metadata("region", "eu\r\nNats-Msg-Id: 1"),
        PublishOptions::new().source("/shop\u{1b}[2J"),
        // Attributes of their own form, which would otherwise be left out on the way out.
        PublishOptions::new().metadata("subject", 7),
        PublishOptions::new().metadata("traceparent", "not-a-trace"),
    ] {
        let err = sender
            .publish_with(OrderPlaced { order_id: 7 }, options)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, events::PublishError::BadMetadata { .. }),
            "{err}"
        );
        assert!(!err.to_string().chars().any(char::is_control), "{err}");
    }
    sender.expect_nothing(); // nothing was sent
    sender
        .publish_with(OrderPlaced { order_id: 7 }, options)
        .await
        .unwrap();
    let placed = sender.expect_one::<OrderPlaced>(|_| true);
    let (sent, ce) = (
        &placed.meta,
        cloudevents::to_json(&placed.event, &placed.meta).unwrap(),
    );
    assert_eq!(ce["type"], "order.placed");
    assert_eq!(ce["eventversion"], 2);
    assert_eq!(ce["subject"], "order/7");
    assert_eq!(
        ce["traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    assert_eq!(ce["attempts"], 3, "an integer extension");
    assert_eq!(ce["vip"], true, "a boolean extension");

    let receiver = recording_bus();
    let mut with_cause = ce.clone();
    with_cause["causationid"] = parent.to_string().into();
    receiver
        .ingest_cloudevent(with_cause.to_string().as_bytes())
        .await
        .unwrap();
    {
        let (got, data) = &nth(&receiver, 0);
        assert_eq!(data, &serde_json::json!({ "order_id": 7 }));
        assert_eq!(got.id(), sent.id());
        assert_eq!(got.time(), sent.time());
        assert_eq!(got.source(), "checkout");
        assert_eq!(got.correlation_id(), flow);
        assert_eq!(got.causation_id(), Some(parent));
        assert_eq!(got.version(), 2);
        assert_eq!(got.metadata()["subject"], "order/7");
        assert_eq!(got.metadata()["region"], "eu");
        assert_eq!(got.metadata()["attempts"], events::MetaValue::Integer(3));
        assert_eq!(got.metadata()["vip"], events::MetaValue::Boolean(true));
        assert_eq!(
            got.metadata()["traceparent"],
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
    }

    // With `eventversion` 1 the payload is checked against v1's schema and becomes a v1.
    let mut v1 = ce.clone();
    v1["eventversion"] = 1.into();
    v1["dataschema"] = "urn:events:schema:order.placed:v1".into();
    v1["data"] = serde_json::json!({ "id": 3 });
    receiver
        .ingest_cloudevent(v1.to_string().as_bytes())
        .await
        .unwrap();
    // Without it, the newest version (2), whose schema wants `order_id`.
    let mut unversioned = v1.clone();
    let map = unversioned.as_object_mut().unwrap();
    map.remove("eventversion");
    map.remove("dataschema");
    let err = receiver
        .ingest_cloudevent(unversioned.to_string().as_bytes())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, IngestError::Invalid { version: 2, .. }),
        "{err}"
    );
    assert_eq!(receiver.captured().len(), 2);
    let v1 = receiver.expect_one::<OrderPlacedV1>(|_| true);
    assert_eq!((v1.meta.version(), v1.id), (1, 3));
    let _ = OrderPlacedV1 { id: 0 };
}

#[test]
fn a_foreign_dataschema_is_accepted_and_the_event_leaves_with_its_own() {
    let bus = recording_bus();
    let mut ce: serde_json::Value = serde_json::from_str(SPEC_JSON_EXAMPLE).unwrap();
    ce["dataschema"] = "https://schemas.example.com/someevent/1.0.json".into();
    bus.ingest_cloudevent_blocking(ce.to_string().as_bytes())
        .unwrap();
    let (meta, _) = &nth(&bus, 0);
    let out = cloudevents::to_json(
        &SomeEvent {
            appinfoA: "abc".into(),
            appinfoB: 123,
            appinfoC: true,
        },
        meta,
    )
    .unwrap();
    assert_eq!(
        out["dataschema"],
        "urn:events:schema:com.example.someevent:v1"
    );
}

#[test]
fn extensions_of_other_types_are_refused() {
    let bus = recording_bus();
    for (value, why) in [
        (serde_json::json!(1.5), "CloudEvents Integer"),
        (serde_json::json!(4_294_967_296_u64), "CloudEvents Integer"),
        (serde_json::json!([1]), "got an array"),
        (serde_json::json!({ "a": 1 }), "got an object"),
    ] {
        let mut ce: serde_json::Value = serde_json::from_str(SPEC_JSON_EXAMPLE).unwrap();
        ce["comexampleothervalue"] = value.clone();
        let err = bus
            .ingest_cloudevent_blocking(ce.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains(why), "{value}: {err}");
    }
    bus.expect_nothing();
}
