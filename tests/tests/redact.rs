//! `#[event(redact)]`: the value reaches handlers and the wire, never `Debug`, dumps or
//! error messages.

#![allow(unreachable_pub)]

use std::sync::Mutex;

use events::{Bus, Event, Payload, PublishOptions, handler};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "payment.taken")]
struct PaymentTaken {
    order_id: u64,
    #[event(redact)]
    card_number: String,
    #[event(redact)]
    #[serde(rename = "cvv")]
    security_code: String,
}

static GOT: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[handler]
fn charge(ev: &PaymentTaken) {
    GOT.lock()
        .unwrap()
        .push(format!("{} {}", ev.card_number, ev.security_code));
}

fn payment() -> PaymentTaken {
    PaymentTaken {
        order_id: 7,
        card_number: "4111111111111111".into(),
        security_code: "123".into(),
    }
}

#[test]
fn debug_and_dumps_show_a_marker() {
    assert_eq!(
        format!("{:?}", payment()),
        r#"PaymentTaken { order_id: 7, card_number: [redacted], security_code: [redacted] }"#
    );
    assert_eq!(
        payment().to_redacted_json().unwrap(),
        serde_json::json!({ "order_id": 7, "card_number": "[redacted]", "cvv": "[redacted]" })
    );
    assert_eq!(
        <PaymentTaken as Event>::info().redacted_fields(),
        ["card_number", "cvv"]
    );
    // The data path is untouched.
    assert_eq!(payment().to_json().unwrap()["cvv"], "123");
}

#[test]
fn handlers_get_the_values_and_errors_do_not_echo_them() {
    let bus = Bus::builder().scope(module_path!()).build().unwrap();
    bus.publish_blocking(payment()).unwrap();
    bus.publish_json_blocking(
        "payment.taken",
        1,
        br#"{"order_id": 8, "card_number": "5500000000000004", "cvv": "999"}"#,
        PublishOptions::new(),
    )
    .unwrap();
    assert_eq!(
        *GOT.lock().unwrap(),
        ["4111111111111111 123", "5500000000000004 999"]
    );

    let err = bus
        .publish_json_blocking(
            "payment.taken",
            1,
            br#"{"order_id": "x", "card_number": 4111111111111111, "cvv": "999"}"#,
            PublishOptions::new(),
        )
        .unwrap_err()
        .to_string();
    assert!(!err.contains("4111111111111111"), "{err}");
    assert!(
        err.contains("at /card_number: value is not of type \"string\""),
        "{err}"
    );
    assert!(
        err.contains(r#"at /order_id: "x" is not of type "integer""#),
        "{err}"
    );
}
