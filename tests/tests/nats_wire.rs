//! What the bus puts on the wire, read by a plain NATS client (issue 15): no header can be
//! injected from an ingested CloudEvent, both CloudEvents content modes are written and read,
//! every message says its mode in `Content-Type`, a message of a known type on another type's
//! subject is dead-lettered with the reason, and a message that no consumer takes is reported
//! instead of waiting in the stream unseen.

#![allow(unreachable_pub)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use events::nats::{ContentMode, Nats, NatsOptions};
use events::{Bus, Event, MetaValue, PublishOptions};
use events_tests::{NatsServer as Server, until};
use futures_util::StreamExt;

#[derive(Event, Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "wire.order")]
pub struct Order {
    pub order_id: u64,
    pub note: String,
}

#[derive(Event, Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "wire.refund")]
pub struct Refund {
    pub order_id: u64,
}

/// `(order_id, source, region metadata, attempts metadata)` of an order handled.
type Seen = (u64, String, Option<MetaValue>, Option<MetaValue>);
static ORDERS: Mutex<Vec<Seen>> = Mutex::new(Vec::new());
static REFUNDS: Mutex<Vec<u64>> = Mutex::new(Vec::new());
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

mod handlers {
    use super::*;

    #[events::handler]
    fn take_order(ev: &Order, ctx: &events::Context) {
        let md = ctx.meta().metadata();
        ORDERS.lock().unwrap().push((
            ev.order_id,
            ctx.meta().source().to_owned(),
            md.get("region").cloned(),
            md.get("attempts").cloned(),
        ));
    }

    #[events::handler]
    fn take_refund(ev: &Refund) {
        REFUNDS.lock().unwrap().push(ev.order_id);
    }
}

async fn bus(url: &str, options: NatsOptions) -> Bus {
    let nats = Nats::connect(url, options).await.unwrap();
    Bus::builder()
        .scope("nats_wire::handlers")
        .transport(nats)
        .build()
        .unwrap()
}

fn header(m: &async_nats::Message, name: &str) -> Option<String> {
    // Headers compare by exact name; a plain reader sees them by name as sent.
    m.headers.as_ref().and_then(|h| {
        h.iter()
            .find(|(k, _)| AsRef::<str>::as_ref(*k) == name)
            .and_then(|(_, v)| v.first())
            .map(|v| v.to_string())
    })
}

fn cloudevent(id: &str, extra: &str) -> String {
    format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"/shop","type":"wire.order",
            "data":{{"order_id":1,"note":"n"}}{extra}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingested_cloudevent_cannot_inject_a_header() {
    let _g = SERIAL.lock().await;
    let server = Server::start();
    let bus = bus(&server.url(), NatsOptions::new("w1").memory_storage()).await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let mut raw = client.subscribe("w1.>").await.unwrap();
    client.flush().await.unwrap();

    let victim = events::EventId::new();
    let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    // A line break in any attribute is refused: nothing is sent.
    for tail in [
        format!("\\r\\nNats-Msg-Id: {victim}"),
        "\\r\\nNats-Expected-Stream: x".to_owned(),
    ] {
        let ce = cloudevent(
            &events::EventId::new().to_string(),
            &format!(r#","traceparent":"{good}{tail}""#),
        );
        assert!(bus.ingest_cloudevent(ce.as_bytes()).await.is_err());
        let ce = cloudevent(&format!("a{tail}"), "");
        assert!(bus.ingest_cloudevent(ce.as_bytes()).await.is_err());
    }
    // A `traceparent` that is not W3C trace context (no control character) is dropped; the
    // event goes out with one of the bus's own.
    let ids: Vec<events::EventId> = (0..20).map(|_| events::EventId::new()).collect();
    for id in &ids {
        let ce = cloudevent(
            &id.to_string(),
            &format!(r#","traceparent":"{good} Nats-Msg-Id: {victim}""#),
        );
        bus.ingest_cloudevent(ce.as_bytes()).await.unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..20 {
        let m = tokio::time::timeout(Duration::from_secs(5), raw.next())
            .await
            .unwrap()
            .unwrap();
        let tp = header(&m, "traceparent").unwrap();
        assert!(
            tp.len() == 55 && tp.starts_with("00-") && !tp.contains(' '),
            "{tp}"
        );
        seen.push(header(&m, "Nats-Msg-Id").unwrap());
    }
    let expected: Vec<String> = ids.iter().map(ToString::to_string).collect();
    assert_eq!(
        seen, expected,
        "each event under its own id, none deduplicated away"
    );
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("W1").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_and_structured_modes_are_written_and_read() {
    let _g = SERIAL.lock().await;
    ORDERS.lock().unwrap().clear();
    let server = Server::start();
    let binary = bus(
        &server.url(),
        NatsOptions::new("w2")
            .memory_storage()
            .content_mode(ContentMode::Binary),
    )
    .await;
    let structured = bus(&server.url(), NatsOptions::new("w2").memory_storage()).await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let mut raw = client.subscribe("w2.wire.order").await.unwrap();
    client.flush().await.unwrap();

    let options = || {
        PublishOptions::new()
            .source("/shop front")
            .metadata("region", "eu%west")
            .metadata("attempts", 3)
    };
    binary
        .publish_with(
            Order {
                order_id: 1,
                note: "binary".into(),
            },
            options(),
        )
        .await
        .unwrap();
    structured
        .publish_with(
            Order {
                order_id: 2,
                note: "structured".into(),
            },
            options(),
        )
        .await
        .unwrap();

    // Binary: attributes in `ce-` headers, percent-encoded; the data is the body.
    let m = raw.next().await.unwrap();
    assert_eq!(
        header(&m, "Content-Type").as_deref(),
        Some("application/json")
    );
    assert_eq!(header(&m, "ce-specversion").as_deref(), Some("1.0"));
    assert_eq!(header(&m, "ce-type").as_deref(), Some("wire.order"));
    assert_eq!(header(&m, "ce-source").as_deref(), Some("/shop%20front"));
    assert_eq!(header(&m, "ce-region").as_deref(), Some("eu%25west"));
    assert_eq!(header(&m, "ce-attempts").as_deref(), Some("3"));
    assert_eq!(header(&m, "ce-eventversion").as_deref(), Some("1"));
    assert_eq!(header(&m, "ce-id"), header(&m, "Nats-Msg-Id"));
    let body: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(body, serde_json::json!({ "order_id": 1, "note": "binary" }));

    // Structured: the whole CloudEvent in the body, and the content type says so.
    let m = raw.next().await.unwrap();
    assert_eq!(
        header(&m, "Content-Type").as_deref(),
        Some("application/cloudevents+json")
    );
    assert!(header(&m, "ce-type").is_none());
    let body: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(body["data"]["note"], "structured");
    assert_eq!(body["attempts"], 3);

    // A plain client's binary message, as another SDK would send it.
    let mut headers = async_nats::HeaderMap::new();
    for (k, v) in [
        ("ce-specversion", "1.0"),
        ("ce-id", "plain-1"),
        ("ce-source", "/elsewhere%20too"),
        ("ce-type", "wire.order"),
        ("ce-region", "us"),
        ("Content-Type", "application/json"),
    ] {
        headers.insert(k, v);
    }
    let js = async_nats::jetstream::new(client.clone());
    js.publish_with_headers(
        "w2.wire.order",
        headers,
        br#"{"order_id":3,"note":"plain"}"#.to_vec().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();

    // Either bus's consumer reads every mode: the handler sees the same envelope.
    let _consumers = structured.consume().await.unwrap();
    until("three orders", || ORDERS.lock().unwrap().len() == 3).await;
    let mut orders = ORDERS.lock().unwrap().clone();
    orders.sort_by_key(|o| o.0);
    let eu = Some(MetaValue::from("eu%west"));
    assert_eq!(
        orders,
        [
            (
                1,
                "/shop front".into(),
                eu.clone(),
                Some(MetaValue::from("3"))
            ),
            (2, "/shop front".into(), eu, Some(MetaValue::Integer(3))),
            (
                3,
                "/elsewhere too".into(),
                Some(MetaValue::from("us")),
                None
            ),
        ],
        "binary mode carries every attribute as text (its integers arrive as strings)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misrouted_and_unrouted_messages_are_reported_not_left_unseen() {
    let _g = SERIAL.lock().await;
    REFUNDS.lock().unwrap().clear();
    let server = Server::start();
    let bus = bus(&server.url(), NatsOptions::new("w3").memory_storage()).await;
    let _consumers = bus.consume().await.unwrap();
    // A second process watching the same stream: still one report per subject and count.
    let other = another_bus(&server.url()).await;
    let _other_consumers = other.consume().await.unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let ce = |ty: &str, data: &str| {
        format!(
            r#"{{"specversion":"1.0","id":"{}","source":"x","type":"{ty}","data":{data}}}"#,
            events::EventId::new()
        )
    };
    // A refund on the orders' subject; a type no process handles, on its own subject.
    for (subject, body) in [
        ("w3.wire.order", ce("wire.refund", r#"{"order_id":9}"#)),
        ("w3.stock.counted", ce("stock.counted", r#"{"n":1}"#)),
        ("w3.wire.refund", ce("wire.refund", r#"{"order_id":10}"#)),
    ] {
        js.publish(subject, body.into_bytes().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    until("the routed refund", || !REFUNDS.lock().unwrap().is_empty()).await;
    let mut dlq = js.get_stream("W3_DLQ").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while dlq.info().await.unwrap().state.messages < 2 {
        assert!(Instant::now() < deadline, "dead letters missing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut reasons = Vec::new();
    for seq in 1..=2 {
        let m = dlq.get_raw_message(seq).await.unwrap();
        reasons.push((
            m.subject.to_string(),
            m.headers
                .get("Events-Error")
                .map(|v| v.to_string())
                .unwrap_or_default(),
        ));
    }
    reasons.sort();
    assert!(
        reasons[0].0.starts_with("w3-dlq.") && reasons[0].0.ends_with("take_order"),
        "{reasons:?}"
    );
    assert!(
        reasons[0]
            .1
            .contains("is a `wire.refund` event, which travels on `w3.wire.refund`"),
        "{reasons:?}"
    );
    assert_eq!(reasons[1].0, "w3-dlq.unrouted");
    assert!(
        reasons[1].1.contains("takes subject `w3.stock.counted`"),
        "{reasons:?}"
    );
    assert_eq!(
        *REFUNDS.lock().unwrap(),
        [10],
        "the misrouted refund is not handled"
    );

    // Reported once, by one of the two watchers, until more messages come.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(dlq.info().await.unwrap().state.messages, 2);
    js.publish(
        "w3.stock.counted",
        ce("stock.counted", r#"{"n":2}"#).into_bytes().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while dlq.info().await.unwrap().state.messages < 3 {
        assert!(
            Instant::now() < deadline,
            "the second message was not reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = dlq.get_raw_message(3).await.unwrap();
    let reason = report.headers.get("Events-Error").unwrap().to_string();
    assert!(reason.contains("(2 messages waiting)"), "{reason}");
    assert!(
        String::from_utf8_lossy(&report.payload).contains(r#""n":2"#),
        "the newest message"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        dlq.info().await.unwrap().state.messages,
        3,
        "no duplicate report"
    );
}

/// Another process's bus on stream `w3`.
async fn another_bus(url: &str) -> Bus {
    bus(url, NatsOptions::new("w3").memory_storage()).await
}

/// Validates `instance` against the schema at JSON pointer `at` in `doc`, resolving the
/// document's own `$ref`s.
fn check(doc: &serde_json::Value, at: &str, instance: &serde_json::Value) -> Vec<String> {
    let root = serde_json::json!({ "$ref": format!("#{at}"), "components": doc["components"] });
    let validator = jsonschema::validator_for(&root).unwrap();
    validator
        .iter_errors(instance)
        .map(|e| format!("{at}: {}: {e}", e.instance_path()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_asyncapi_document_describes_the_captured_traffic() {
    let _g = SERIAL.lock().await;
    ORDERS.lock().unwrap().clear();
    let server = Server::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    let mut raw = client.subscribe(">").await.unwrap();
    client.flush().await.unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(include_str!("../asyncapi/asyncapi-3.1.0.schema.json")).unwrap();
    let meta = jsonschema::validator_for(&meta).unwrap();

    let mut docs = Vec::new();
    for mode in [ContentMode::Structured, ContentMode::Binary] {
        let bus = bus(
            &server.url(),
            NatsOptions::new("w4").memory_storage().content_mode(mode),
        )
        .await;
        let doc = events::docs::asyncapi(&bus, &events::docs::Options::default()).unwrap();
        let errors: Vec<String> = meta.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:#?}");
        assert_eq!(doc["channels"]["wire.order"]["address"], "w4.wire.order");
        assert_eq!(doc["servers"]["nats"]["protocol"], "nats");
        let with_metadata = PublishOptions::new()
            .metadata("region", "eu")
            .metadata("attempts", 2)
            .metadata("subject", "order 5");
        bus.publish_with(
            Order {
                order_id: 5,
                note: "é\"%".into(),
            },
            with_metadata,
        )
        .await
        .unwrap();
        bus.publish(Refund { order_id: 6 }).await.unwrap();
        docs.push((bus, doc));
    }
    // A refund on the orders' subject: dead-lettered once a consumer runs.
    let js = async_nats::jetstream::new(client.clone());
    let misrouted =
        r#"{"specversion":"1.0","id":"m","source":"x","type":"wire.refund","data":{"order_id":7}}"#;
    let mut foreign = async_nats::HeaderMap::new();
    foreign.insert("X-Test", "foreign");
    js.publish_with_headers(
        "w4.wire.order",
        foreign,
        misrouted.as_bytes().to_vec().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let _consumers = docs[0].0.consume().await.unwrap();

    let doc = &docs[0].1;
    let mut checked = std::collections::BTreeMap::<String, usize>::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while checked.get("dead letter").copied().unwrap_or(0) == 0 || checked.len() < 3 {
        assert!(Instant::now() < deadline, "captured so far: {checked:?}");
        let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), raw.next()).await else {
            continue;
        };
        // JetStream's own traffic, and the test's foreign message: not the bus's.
        let foreign = m
            .headers
            .as_ref()
            .is_some_and(|h| h.get("X-Test").is_some());
        if m.subject.starts_with("$JS") || m.subject.starts_with("_INBOX") || foreign {
            continue;
        }
        let (key, channel) = doc["channels"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(_, c)| c["address"] == m.subject.as_str())
            .unwrap_or_else(|| panic!("no channel for subject {}", m.subject));
        let headers: serde_json::Map<String, serde_json::Value> = m
            .headers
            .iter()
            .flat_map(|h| h.iter())
            .map(|(k, v)| (AsRef::<str>::as_ref(k).to_owned(), v[0].to_string().into()))
            .collect();
        let content_type = headers.get("Content-Type").and_then(|v| v.as_str());
        let message = match content_type {
            _ if key.starts_with("dead-letters.") => "DeadLetter".to_owned(),
            Some("application/cloudevents+json") => format!("{key}.v1.structured"),
            Some("application/json") => format!("{key}.v1.binary"),
            other => panic!("{}: unexpected Content-Type {other:?}", m.subject),
        };
        assert!(
            channel["messages"].get(&message).is_some(),
            "channel {key} lists message {message}"
        );
        let at = format!("/components/messages/{message}");
        let body: serde_json::Value = if message == "DeadLetter" {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&m.payload).unwrap()
        };
        let mut errors = check(doc, &format!("{at}/payload"), &body);
        errors.extend(check(doc, &format!("{at}/headers"), &headers.into()));
        assert!(errors.is_empty(), "{}: {errors:#?}", m.subject);
        let kind = match message.rsplit('.').next() {
            Some("structured") => "structured",
            Some("binary") => "binary",
            _ => "dead letter",
        };
        *checked.entry(kind.to_owned()).or_default() += 1;
    }
    // And the check has teeth: a body of the other mode does not pass.
    let structured_body = serde_json::json!({ "order_id": 5, "note": "x" });
    assert!(
        !check(
            doc,
            "/components/messages/wire.order.v1.structured/payload",
            &structured_body
        )
        .is_empty()
    );
}

/// Compression (issue 19): a body above the threshold goes out zstd-compressed and marked,
/// comes back whole to a consuming bus, and is described by the AsyncAPI document; a small
/// one goes out as it is; a foreign message with another encoding, or one that would expand
/// past the limit, is dead-lettered with its header, not read as garbage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_travel_compressed_and_are_read_back_whole() {
    let _g = SERIAL.lock().await;
    ORDERS.lock().unwrap().clear();
    let server = Server::start();
    let options = || {
        NatsOptions::new("w5")
            .memory_storage()
            .compress_above(1024)
            .max_decompressed_bytes(64 * 1024)
    };
    let bus = bus(&server.url(), options()).await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let mut raw = client.subscribe("w5.>").await.unwrap();
    let mut dlq = client.subscribe("w5-dlq.>").await.unwrap();
    client.flush().await.unwrap();

    let note: String = (0..4096)
        .map(|i| char::from(b'a' + (i % 7) as u8))
        .collect();
    bus.publish(Order {
        order_id: 1,
        note: note.clone(),
    })
    .await
    .unwrap();
    bus.publish(Order {
        order_id: 2,
        note: "small".into(),
    })
    .await
    .unwrap();
    let big = raw.next().await.unwrap();
    assert_eq!(header(&big, "Content-Encoding").as_deref(), Some("zstd"));
    assert!(big.payload.len() < 1024, "{} bytes", big.payload.len());
    let whole = zstd::bulk::decompress(&big.payload, 1 << 20).unwrap();
    let cloudevent: serde_json::Value = serde_json::from_slice(&whole).unwrap();
    assert_eq!(cloudevent["data"]["note"], note.as_str());
    let small = raw.next().await.unwrap();
    assert_eq!(header(&small, "Content-Encoding"), None);
    serde_json::from_slice::<serde_json::Value>(&small.payload).unwrap();

    // Foreign messages: another encoding, and a zstd bomb past the limit.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Content-Encoding", "gzip");
    client
        .publish_with_headers(
            "w5.wire.order",
            headers,
            b"\x1f\x8b not json".to_vec().into(),
        )
        .await
        .unwrap();
    let bomb = zstd::bulk::compress(&vec![b' '; 1 << 20], 19).unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Content-Encoding", "zstd");
    client
        .publish_with_headers("w5.wire.order", headers, bomb.into())
        .await
        .unwrap();
    client.flush().await.unwrap();

    let _consumers = bus.consume().await.unwrap();
    until("both orders", || ORDERS.lock().unwrap().len() == 2).await;
    let mut got: Vec<u64> = ORDERS.lock().unwrap().iter().map(|o| o.0).collect();
    got.sort_unstable();
    assert_eq!(got, [1, 2]);
    let mut dead = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while dead.len() < 2 && Instant::now() < deadline {
        let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), dlq.next()).await else {
            break;
        };
        dead.push(m);
    }
    assert_eq!(dead.len(), 2, "both foreign messages dead-lettered");
    let errors: Vec<String> = dead
        .iter()
        .map(|m| header(m, "Events-Error").unwrap_or_default())
        .collect();
    assert!(errors[0].contains("gzip"), "{errors:?}");
    assert!(errors[1].contains("expands to 1048576 bytes"), "{errors:?}");
    assert_eq!(
        header(&dead[1], "Content-Encoding").as_deref(),
        Some("zstd")
    );

    let doc = events::docs::asyncapi(&bus, &events::docs::Options::default()).unwrap();
    let message = &doc["components"]["messages"]["wire.order.v1.structured"];
    assert_eq!(
        message["headers"]["properties"]["Content-Encoding"]["const"],
        "zstd"
    );
    assert_eq!(message["x-events-compression"]["above_bytes"], 1024);
    let dlq = &doc["components"]["messages"]["DeadLetter"];
    assert_eq!(
        dlq["headers"]["properties"]["Content-Encoding"]["const"],
        "zstd"
    );
}
