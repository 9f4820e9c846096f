//! The HTTP ingress on a real server (a free port) with a real HTTP client (`ureq`): every
//! mode of the CloudEvents HTTP binding (structured, binary, batch) and plain JSON, every
//! refusal's status and problem document, and the credentials, access rules and rate
//! limits of the caller. Hostile requests get a 4xx, never a 5xx, and nothing is handled.

#![allow(unreachable_pub)]

mod common;

use std::sync::Mutex;

use common::serve;
use events::security::{AccessRules, Principal, RateLimit, RateLimits};
use events::{Bus, Event, IngestLimits, handler};
use events_http::HttpOptions;
use serde_json::{Value, json};

#[derive(Debug, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "shop.order.placed")]
pub struct OrderPlaced {
    pub order_id: u64,
    pub note: String,
}

static HANDLED: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());
static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

mod handlers {
    use super::*;

    #[handler]
    fn record(ev: &OrderPlaced, ctx: &events::Context) {
        HANDLED
            .lock()
            .unwrap()
            .push((ev.order_id, ctx.meta().source().to_owned()));
    }
}

fn handled() -> Vec<(u64, String)> {
    std::mem::take(&mut *HANDLED.lock().unwrap())
}

fn bus() -> Bus {
    Bus::builder()
        .scope("ingress::handlers")
        .ingest_limits(IngestLimits::new(4096, 32))
        .build()
        .unwrap()
}

/// A response: status, headers as pairs (lower-case names), body as JSON (or `Null`).
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A problem document of `status` and `kind`, served as `application/problem+json`.
    fn assert_problem(&self, status: u16, kind: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.body
        );
        assert_eq!(self.body["type"], format!("urn:events:problem:{kind}"));
        assert_eq!(self.body["status"], status);
        assert!(self.body["title"].is_string() && self.body["detail"].is_string());
    }
}

/// POSTs `body` to `url` with `headers`, off the runtime's threads.
async fn post(url: String, headers: Vec<(&'static str, String)>, body: Vec<u8>) -> Answer {
    tokio::task::spawn_blocking(move || {
        let agent = common::agent();
        let mut request = agent.post(&url);
        for (name, value) in &headers {
            request = request.header(*name, value);
        }
        let mut response = request.send(&body[..]).unwrap();
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        Answer {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    })
    .await
    .unwrap()
}

fn structured(id: &str, order_id: Value) -> Value {
    json!({
        "specversion": "1.0", "id": id, "source": "/checkout", "type": "shop.order.placed",
        "datacontenttype": "application/json",
        "data": { "order_id": order_id, "note": "n" }
    })
}

fn ce_json() -> Vec<(&'static str, String)> {
    vec![("content-type", "application/cloudevents+json".into())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_of_the_binding_publishes_once_checked() {
    let _g = LOCK.lock().await;
    handled();
    let base = serve(bus(), HttpOptions::new()).await;
    let events = format!("{base}/events");

    // Structured mode.
    let id = "0190a5c1-7c1a-7000-8000-000000000001";
    let answer = post(
        events.clone(),
        ce_json(),
        structured(id, json!(1)).to_string().into_bytes(),
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert_eq!(answer.body["id"], id);
    assert_eq!(handled(), [(1, "/checkout".to_owned())]);

    // Binary mode: attributes in headers, percent-encoded; the data in the body.
    let answer = post(
        events.clone(),
        vec![
            ("ce-specversion", "1.0".into()),
            ("ce-id", "order-2".into()),
            ("ce-source", "/caf%C3%A9".into()),
            ("ce-type", "shop.order.placed".into()),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            ),
            ("content-type", "application/json".into()),
        ],
        br#"{ "order_id": 2, "note": "n" }"#.to_vec(),
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert!(answer.body["id"].is_string());
    assert_eq!(handled(), [(2, "/café".to_owned())]);

    // A batch: all or nothing.
    let batch = json!([
        structured("0190a5c1-7c1a-7000-8000-000000000003", json!(3)),
        structured("0190a5c1-7c1a-7000-8000-000000000004", json!(4))
    ]);
    let batch_type = vec![("content-type", "application/cloudevents-batch+json".into())];
    let answer = post(
        events.clone(),
        batch_type.clone(),
        batch.to_string().into_bytes(),
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert_eq!(answer.body["ids"].as_array().unwrap().len(), 2);
    assert_eq!(handled().len(), 2);
    let bad_batch = json!([
        structured("0190a5c1-7c1a-7000-8000-000000000005", json!(5)),
        structured("0190a5c1-7c1a-7000-8000-000000000006", json!("six"))
    ]);
    let answer = post(
        events.clone(),
        batch_type,
        bad_batch.to_string().into_bytes(),
    )
    .await;
    answer.assert_problem(422, "invalid");
    assert_eq!(answer.body["index"], 1);
    assert_eq!(answer.body["violations"][0]["path"], "/order_id");
    assert!(
        handled().is_empty(),
        "nothing of a refused batch is handled"
    );

    // Plain JSON by name and version.
    let plain = format!("{base}/events/shop.order.placed/1");
    let json_type = vec![("content-type", "application/json".into())];
    let answer = post(
        plain.clone(),
        json_type.clone(),
        br#"{ "order_id": 7, "note": "n" }"#.to_vec(),
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert_eq!(handled().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_has_its_status_and_problem_document() {
    let _g = LOCK.lock().await;
    handled();
    let base = serve(bus(), HttpOptions::new()).await;
    let events = format!("{base}/events");
    let plain = format!("{base}/events/shop.order.placed/1");
    let json_type = || vec![("content-type", "application/json".to_owned())];
    let ok = br#"{ "order_id": 7, "note": "n" }"#.to_vec();

    let a = post(
        plain.clone(),
        json_type(),
        br#"{ "order_id": -1, "note": "n" }"#.to_vec(),
    )
    .await;
    a.assert_problem(422, "invalid");
    assert_eq!(a.body["violations"][0]["path"], "/order_id");
    post(plain.clone(), json_type(), b"{ not json".to_vec())
        .await
        .assert_problem(400, "malformed");
    post(
        plain.clone(),
        vec![("content-type", "text/plain".into())],
        ok.clone(),
    )
    .await
    .assert_problem(415, "unsupported-media-type");
    post(plain.clone(), vec![], ok.clone())
        .await
        .assert_problem(415, "unsupported-media-type");
    post(
        format!("{base}/events/shop.order.plaecd/1"),
        json_type(),
        ok.clone(),
    )
    .await
    .assert_problem(404, "unknown-event");
    post(
        format!("{base}/events/shop.order.placed/9"),
        json_type(),
        ok.clone(),
    )
    .await
    .assert_problem(404, "unknown-version");
    post(
        format!("{base}/events/shop.order.placed/x"),
        json_type(),
        ok.clone(),
    )
    .await
    .assert_problem(404, "unknown-version");
    // Past the limit, by Content-Length and in chunks without one.
    let big = format!(r#"{{ "order_id": 7, "note": "{}" }}"#, "x".repeat(5000)).into_bytes();
    post(plain.clone(), json_type(), big.clone())
        .await
        .assert_problem(413, "too-large");
    let mut chunked = json_type();
    chunked.push(("transfer-encoding", "chunked".into()));
    post(plain.clone(), chunked, big)
        .await
        .assert_problem(413, "too-large");
    // CloudEvents.
    let mut no_id = structured("x", json!(1));
    no_id.as_object_mut().unwrap().remove("id");
    post(events.clone(), ce_json(), no_id.to_string().into_bytes())
        .await
        .assert_problem(400, "missing-attribute");
    let mut old = structured("x", json!(1));
    old["specversion"] = json!("0.3");
    post(events.clone(), ce_json(), old.to_string().into_bytes())
        .await
        .assert_problem(400, "unsupported-specversion");
    let mut binary_data = structured("x", json!(1));
    binary_data.as_object_mut().unwrap().remove("data");
    binary_data["data_base64"] = json!("AAEC");
    post(
        events.clone(),
        ce_json(),
        binary_data.to_string().into_bytes(),
    )
    .await
    .assert_problem(415, "unsupported-data");
    post(events.clone(), ce_json(), b"[1, 2]".to_vec())
        .await
        .assert_problem(400, "not-an-event");
    let a = post(
        events.clone(),
        vec![
            ("ce-specversion", "1.0".into()),
            ("ce-id", "a".into()),
            ("ce-source", "/s%ZZ".into()),
            ("ce-type", "shop.order.placed".into()),
            ("content-type", "application/json".into()),
        ],
        ok.clone(),
    )
    .await;
    a.assert_problem(400, "bad-attribute");
    // A refusal never echoes what it refused beyond the limits: a huge unknown name is
    // clipped.
    let long = "a".repeat(3000);
    let a = post(format!("{base}/events/{long}/1"), json_type(), ok.clone()).await;
    a.assert_problem(404, "unknown-event");
    assert!(a.body["detail"].as_str().unwrap().len() < 600, "{}", a.body);
    assert!(handled().is_empty(), "nothing refused is handled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_access_rules_and_rate_limits_decide_who_may_publish() {
    let _g = LOCK.lock().await;
    handled();
    let bus = Bus::builder()
        .scope("ingress::handlers")
        .access(AccessRules::new().allow("checkout", "shop.>"))
        .rate_limits(RateLimits::new().per_principal(RateLimit::per_minute(1)))
        .build()
        .unwrap();
    let options = HttpOptions::new()
        .bearer("tok-checkout", Principal::new("checkout").unwrap())
        .bearer("tok-other", Principal::new("other").unwrap());
    let base = serve(bus, options).await;
    let plain = format!("{base}/events/shop.order.placed/1");
    let ok = br#"{ "order_id": 7, "note": "n" }"#.to_vec();
    let with = |token: Option<&str>| {
        let mut h = vec![("content-type", "application/json".to_owned())];
        if let Some(t) = token {
            h.push(("authorization", format!("Bearer {t}")));
        }
        h
    };
    let a = post(plain.clone(), with(None), ok.clone()).await;
    a.assert_problem(401, "unauthorized");
    assert_eq!(a.header("www-authenticate"), Some("Bearer"));
    post(plain.clone(), with(Some("tok-unknown")), ok.clone())
        .await
        .assert_problem(401, "unauthorized");
    let mut basic = with(None);
    basic.push(("authorization", "Basic dXNlcjpwYXNz".into()));
    post(plain.clone(), basic, ok.clone())
        .await
        .assert_problem(401, "unauthorized");
    post(plain.clone(), with(Some("tok-other")), ok.clone())
        .await
        .assert_problem(403, "forbidden");
    assert!(handled().is_empty());
    let a = post(plain.clone(), with(Some("tok-checkout")), ok.clone()).await;
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(handled().len(), 1);
    let a = post(plain.clone(), with(Some("tok-checkout")), ok.clone()).await;
    a.assert_problem(429, "rate-limited");
    let retry: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert!(a.body["retry_after_ms"].as_u64().unwrap() > 0);
    assert!(handled().is_empty());
}

/// Hostile requests, chosen by a seeded generator: each gets a 4xx problem, none a 5xx,
/// and nothing is handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_a_4xx_never_a_5xx() {
    let _g = LOCK.lock().await;
    handled();
    let base = serve(bus(), HttpOptions::new()).await;
    let mut seed: u64 = std::env::var("HTTP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pieces: [&[u8]; 12] = [
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"order_id\":",
        b"1e999",
        b"-0",
        b"\"\\ud800\"",
        b",",
        b"\"data\":",
        b"null",
        b"\xff\xfe",
    ];
    let mut accepted = 0;
    for round in 0..200 {
        let mut body = Vec::new();
        for _ in 0..(next() % 40) {
            body.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
        }
        if round % 10 == 0 {
            body = "[".repeat(200).into_bytes();
        }
        let (url, headers) = match next() % 4 {
            0 => (
                format!("{base}/events/shop.order.placed/1"),
                vec![("content-type", "application/json".to_owned())],
            ),
            1 => (format!("{base}/events"), ce_json()),
            2 => (
                format!("{base}/events"),
                vec![(
                    "content-type",
                    "application/cloudevents-batch+json".to_owned(),
                )],
            ),
            _ => (
                format!("{base}/events"),
                vec![
                    ("ce-specversion", "1.0".to_owned()),
                    ("ce-id", format!("{}", next())),
                    ("ce-source", "/x".to_owned()),
                    ("ce-type", "shop.order.placed".to_owned()),
                    (
                        "ce-time",
                        ["2024-13-40T00:00:00Z", "x", "2024-01-01T00:00:00Z"]
                            [(next() % 3) as usize]
                            .to_owned(),
                    ),
                    ("content-type", "application/json".to_owned()),
                ],
            ),
        };
        let a = post(url, headers, body.clone()).await;
        assert!(
            (400..500).contains(&a.status) || a.status == 202,
            "round {round}: {} for {:?}: {}",
            a.status,
            String::from_utf8_lossy(&body),
            a.body
        );
        if a.status == 202 {
            accepted += 1;
        } else {
            assert_eq!(a.header("content-type"), Some("application/problem+json"));
        }
    }
    assert_eq!(
        handled().len(),
        accepted,
        "only what was accepted is handled"
    );
}
