//! Hostile input at the boundary: what an attacker sends must not set internal keys, cost
//! more than the limits allow, leak a redacted value into any message, or reach a handler or
//! the store with bytes a log line or a header cannot carry. Each case here failed before its
//! fix (issue 15).

#![allow(unreachable_pub)]

use events::testing::TestBus;
use events::{Bus, Event, IngestError, IngestLimits, PublishOptions};

#[derive(Event, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "hostile.order")]
struct Order {
    order_id: u64,
}

#[derive(Event, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "hostile.items")]
struct Items {
    items: Vec<u8>,
}

/// A card number that refuses itself with a message naming the value, as user validation
/// code often does.
#[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String")]
#[schemars(with = "String")]
struct Card(String);

impl TryFrom<String> for Card {
    type Error = String;
    fn try_from(s: String) -> Result<Card, String> {
        if s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Card(s))
        } else {
            Err(format!("`{s}` is not a card number"))
        }
    }
}

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "hostile.payment")]
struct Payment {
    order_id: u64,
    #[event(redact)]
    card: Card,
    #[event(redact)]
    pin: u32,
}

/// A bus without handlers that captures what it dispatches.
fn bus() -> TestBus {
    bus_with(IngestLimits::default())
}

fn bus_with(limits: IngestLimits) -> TestBus {
    TestBus::new(Bus::builder().no_handlers().ingest_limits(limits)).unwrap()
}

fn cloudevent(extra: &str) -> String {
    format!(
        r#"{{"specversion":"1.0","id":"a-1","source":"/test","type":"hostile.order",
            "data":{{"order_id":7}}{extra}}}"#
    )
}

/// Every way an error is shown: `Display`, `Debug`, and the `source` chain.
fn shown(e: &IngestError) -> String {
    format!("{e} {e:?}")
}

// 2. Identity spoofing ------------------------------------------------------------------

#[test]
fn outside_input_cannot_set_internal_metadata_keys() {
    let bus = bus();
    let victim = "0190f000-0000-7000-8000-000000000001";
    for member in [
        "cloudevents.id",
        "events.anything",
        "Region",
        "tenant-id",
        "x_y",
    ] {
        let err = bus
            .ingest_cloudevent_blocking(
                cloudevent(&format!(r#","{member}":"{victim}""#)).as_bytes(),
            )
            .unwrap_err();
        assert!(
            matches!(&err, IngestError::BadAttribute { .. }),
            "{member}: {err}"
        );
    }
    bus.expect_nothing(); // nothing was dispatched

    // The CloudEvent's own id survives as itself, and only it leaves as the id.
    bus.ingest_cloudevent_blocking(cloudevent("").as_bytes())
        .unwrap();
    let meta = bus.captured().swap_remove(0).meta;
    let out = events::cloudevents::to_json(&Order { order_id: 7 }, &meta).unwrap();
    assert_eq!(out["id"], "a-1");
}

// 3. Amplification -----------------------------------------------------------------------

#[test]
fn violations_are_capped_and_the_message_is_bounded() {
    let bus = bus();
    let defaults = IngestLimits::default();
    let items = |n: usize| {
        let mut body = String::from(r#"{"items":[-1"#);
        for _ in 1..n {
            body.push_str(",-1");
        }
        body.push_str("]}");
        body
    };
    // 1,000 violations: the first 16 described, the rest counted.
    let err = bus
        .publish_json_blocking(
            "hostile.items",
            1,
            items(1000).as_bytes(),
            PublishOptions::new(),
        )
        .unwrap_err();
    let IngestError::Invalid {
        violations, more, ..
    } = &err
    else {
        panic!("expected a schema violation, got {err}");
    };
    assert_eq!(violations.len(), defaults.max_violations);
    assert_eq!(*more, Some(1000 - defaults.max_violations));
    let text = err.to_string();
    assert!(
        text.len() <= defaults.max_error_bytes,
        "{} bytes",
        text.len()
    );
    assert!(text.contains("(1000 violations)"), "{text}");
    assert!(text.ends_with("and 984 more violations"), "{text}");

    // Just under 1 MiB, 349,000 violations: only the first is searched for.
    let mut body = String::from(r#"{"items":["#);
    while body.len() < (1 << 20) - 8 {
        body.push_str("-1,");
    }
    body.push_str("-1]}");
    let err = bus
        .publish_json_blocking("hostile.items", 1, body.as_bytes(), PublishOptions::new())
        .unwrap_err();
    let IngestError::Invalid {
        violations, more, ..
    } = &err
    else {
        panic!("expected a schema violation, got {err}");
    };
    assert_eq!((violations.len(), *more), (1, None));
    assert!(err.to_string().len() <= defaults.max_error_bytes);

    // A small error-byte budget is kept too.
    let small = bus_with(
        IngestLimits::default()
            .max_error_bytes(300)
            .max_violations(100),
    );
    let text = small
        .publish_json_blocking(
            "hostile.items",
            1,
            items(1000).as_bytes(),
            PublishOptions::new(),
        )
        .unwrap_err()
        .to_string();
    assert!(text.len() <= 300 + 40, "{} bytes: {text}", text.len());
    bus.expect_nothing();
}

#[test]
fn extensions_are_limited_in_number_and_size() {
    let bus = bus();
    let defaults = IngestLimits::default();
    let many: String = (0..=defaults.max_extensions)
        .map(|i| format!(r#","ext{i}":"v""#))
        .collect();
    let err = bus
        .ingest_cloudevent_blocking(cloudevent(&many).as_bytes())
        .unwrap_err();
    assert!(
        err.to_string().contains("extensions"),
        "too many extensions: {err}"
    );
    let long = format!(
        r#","big":"{}""#,
        "x".repeat(defaults.max_attribute_bytes + 1)
    );
    let err = bus
        .ingest_cloudevent_blocking(cloudevent(&long).as_bytes())
        .unwrap_err();
    assert!(
        matches!(&err, IngestError::BadAttribute { attribute, .. } if attribute == "big"),
        "{err}"
    );
    assert!(
        err.to_string().len() < 1024,
        "the value is not echoed whole"
    );
    // Exactly at the limits is fine.
    let at: String = (0..defaults.max_extensions)
        .map(|i| format!(r#","ext{i}":"v""#))
        .collect();
    bus.ingest_cloudevent_blocking(cloudevent(&at).as_bytes())
        .unwrap();
    assert_eq!(bus.captured().len(), 1);
}

// 4. Redaction -----------------------------------------------------------------------------

#[test]
fn no_message_contains_a_redacted_value_whatever_the_input() {
    let bus = bus();
    let inputs = [
        // serde refuses what the schema let through: the value is in serde's message.
        r#"{"order_id":1,"card":"SECRETCARD4111","pin":1234}"#,
        // A number where an integer is wanted, past the schema.
        r#"{"order_id":1,"card":"4111","pin":987654321.5}"#,
        r#"{"order_id":1,"card":"4111","pin":"987654321"}"#,
        r#"{"order_id":1,"card":987654321,"pin":1}"#,
        // The root is wrong: a message about it would echo everything.
        r#"["SECRETCARD4111",987654321]"#,
        r#""SECRETCARD4111 987654321""#,
        // A nested value under a redacted field.
        r#"{"order_id":1,"card":{"n":"SECRETCARD4111"},"pin":[987654321]}"#,
        // Another field is wrong; the redacted ones must not appear in its message.
        r#"{"order_id":"x1","card":"SECRETCARD4111","pin":987654321}"#,
    ];
    for input in inputs {
        let err = bus
            .publish_json_blocking(
                "hostile.payment",
                1,
                input.as_bytes(),
                PublishOptions::new(),
            )
            .unwrap_err();
        let text = shown(&err);
        assert!(!text.contains("SECRETCARD"), "{input}: {text}");
        assert!(!text.contains("987654321"), "{input}: {text}");
        let err = bus
            .decode_json("hostile.payment", 1, input.as_bytes())
            .unwrap_err();
        assert!(!shown(&err).contains("SECRETCARD"), "{input}");
    }
    bus.expect_nothing();
}

// 5. Envelope values -------------------------------------------------------------------------

#[test]
fn control_characters_and_overlong_sources_are_refused() {
    let bus = bus();
    for source in [
        "/a\\u0000b",
        "/a\\r\\nb",
        "/a\\nb",
        "/a\\u001b[31mb",
        "/a\\u007fb",
    ] {
        let err = bus
            .ingest_cloudevent_blocking(
                cloudevent("")
                    .replace(r#""source":"/test""#, &format!(r#""source":"{source}""#))
                    .as_bytes(),
            )
            .unwrap_err();
        assert!(
            matches!(&err, IngestError::BadAttribute { attribute, .. } if attribute == "source"),
            "{source}: {err}"
        );
        let text = err.to_string();
        assert!(
            !text.chars().any(|c| c.is_control()),
            "the message carries no control character: {text:?}"
        );
    }
    let long = "/".repeat(1 << 20);
    let err = bus
        .ingest_cloudevent_blocking(
            cloudevent("")
                .replace(r#""source":"/test""#, &format!(r#""source":"{long}""#))
                .as_bytes(),
        )
        .unwrap_err();
    assert!(err.to_string().len() < 1024, "{err}");
    bus.expect_nothing();
}

#[test]
fn times_outside_what_an_envelope_holds_are_refused_not_clamped() {
    let bus = bus();
    for time in [
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
    ] {
        let err = bus
            .ingest_cloudevent_blocking(cloudevent(&format!(r#","time":"{time}""#)).as_bytes())
            .unwrap_err();
        assert!(
            matches!(&err, IngestError::BadAttribute { attribute, .. } if attribute == "time"),
            "{time}: {err}"
        );
    }
    bus.expect_nothing();
    bus.ingest_cloudevent_blocking(
        cloudevent(r#","time":"2500-01-01T00:00:00.123456789Z""#).as_bytes(),
    )
    .unwrap();
    let meta = bus.captured().swap_remove(0).meta;
    let out = events::cloudevents::to_json(&Order { order_id: 7 }, &meta).unwrap();
    assert_eq!(
        out["time"], "2500-01-01T00:00:00.123456789Z",
        "kept exactly"
    );
}

#[test]
fn duplicate_keys_are_refused_everywhere() {
    let bus = bus();
    let err = bus
        .publish_json_blocking(
            "hostile.order",
            1,
            br#"{"order_id":1,"order_id":2}"#,
            PublishOptions::new(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("duplicate"), "{err}");
    let err = bus
        .ingest_cloudevent_blocking(cloudevent(r#","id":"b-2""#).as_bytes())
        .unwrap_err();
    assert!(err.to_string().contains("duplicate"), "{err}");
    let nested = r#"{"specversion":"1.0","id":"a","source":"/s","type":"hostile.order",
                     "data":{"order_id":1,"order_id":1}}"#;
    assert!(bus.ingest_cloudevent_blocking(nested.as_bytes()).is_err());
    bus.expect_nothing();
}

#[test]
fn names_from_outside_are_escaped_in_messages() {
    let bus = bus();
    let name = "order\u{1b}[2J\r\nFAKE LOG LINE\u{0}";
    let err = bus
        .publish_json_blocking(name, 1, b"{}", PublishOptions::new())
        .unwrap_err();
    let text = err.to_string();
    assert!(
        !text.chars().any(|c| c.is_control()),
        "no raw control character: {text:?}"
    );
    assert!(text.contains("\\u{1b}"), "escaped, still visible: {text}");
    let ce = r#"{"specversion":"1.0","id":"a","source":"/s","type":"a\u001b[2Jb","data":{}}"#;
    let text = bus
        .ingest_cloudevent_blocking(ce.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(!text.chars().any(|c| c.is_control()), "{text:?}");
}

#[test]
fn a_source_with_a_control_character_is_refused_when_the_bus_is_built() {
    let err = Bus::builder()
        .no_handlers()
        .source("checkout\r\nX-Injected: 1")
        .build()
        .unwrap_err();
    assert!(
        matches!(err.problems(), [events::Problem::BadSource { .. }]),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
    assert!(text.contains("\\u{d}\\u{a}X-Injected"), "{text}");
}
