//! The oracle of the fuzz tests (`tests/tests/fuzz.rs`) and the fuzz targets
//! (`fuzz/fuzz_targets/`): the event types and handlers they ingest into, and what a handler
//! must have been given for given bytes, read by `serde_json` alone. One file, included by
//! both with `#[path]`, so the two can never check different things.

#![allow(dead_code, unreachable_pub)]

use std::cell::RefCell;

use events::{Bus, Event, IngestLimits, handler};
use serde_json::Value;

/// An order was placed.
#[derive(
    Event, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[event(name = "order.placed", version = 2, upcast_from = OrderPlacedV1)]
struct OrderPlaced {
    order_id: u64,
    lines: Vec<Line>,
    coupon: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Line {
    sku: String,
    quantity: u32,
}

#[derive(
    Event, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[event(name = "order.placed", version = 1)]
struct OrderPlacedV1 {
    order_id: u64,
}

impl From<OrderPlacedV1> for OrderPlaced {
    fn from(v1: OrderPlacedV1) -> OrderPlaced {
        OrderPlaced {
            order_id: v1.order_id,
            lines: Vec::new(),
            coupon: None,
        }
    }
}

#[derive(
    Event, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[event(name = "user.renamed")]
struct UserRenamed {
    name: String,
}

thread_local! {
    /// What the handlers were given, on this thread (every entry point used here runs
    /// the handlers on the caller's thread).
    static SEEN: RefCell<Vec<Value>> = const { RefCell::new(Vec::new()) };
}

fn seen(v: impl serde::Serialize) {
    let v = serde_json::to_value(v).unwrap();
    SEEN.with(|s| s.borrow_mut().push(v));
}

#[handler]
fn on_order(ev: &OrderPlaced) {
    seen(ev);
}

#[handler]
fn on_rename(ev: &UserRenamed) {
    seen(ev);
}

pub fn take_seen() -> Vec<Value> {
    SEEN.with(|s| std::mem::take(&mut *s.borrow_mut()))
}

pub fn bus() -> Bus {
    Bus::builder()
        .scope(module_path!())
        .ingest_limits(IngestLimits::new(2048, 6))
        .build()
        .unwrap()
}

/// The handler's value for `payload`: serde_json's reading; or, where that fails only for
/// whole numbers written as floats (`1.0`, which JSON Schema counts as integers), the
/// reading with them as integers, if every number literal of `bytes` means exactly the
/// double serde_json read (`exact`).
pub fn expected(name: &str, version: u32, payload: &Value, exact: bool) -> Option<Value> {
    let typed = |v: Value| -> Option<Value> {
        match (name, version) {
            ("order.placed", 2) => serde_json::from_value::<OrderPlaced>(v)
                .ok()
                .map(|e| serde_json::to_value(e).unwrap()),
            ("order.placed", 1) => serde_json::from_value::<OrderPlacedV1>(v)
                .ok()
                .map(|e| serde_json::to_value(OrderPlaced::from(e)).unwrap()),
            ("user.renamed", 1) => serde_json::from_value::<UserRenamed>(v)
                .ok()
                .map(|e| serde_json::to_value(e).unwrap()),
            _ => None,
        }
    };
    typed(payload.clone()).or_else(|| {
        let mut whole = payload.clone();
        whole_floats_as_integers(&mut whole);
        exact.then(|| typed(whole)).flatten()
    })
}

fn whole_floats_as_integers(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap();
            if f.fract() == 0.0
                && (-9.223_372_036_854_776e18..1.844_674_407_370_955_2e19).contains(&f)
            {
                *n = if f < 0.0 {
                    (f as i64).into()
                } else {
                    (f as u64).into()
                };
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_floats_as_integers),
        Value::Object(map) => map.values_mut().for_each(whole_floats_as_integers),
        _ => {}
    }
}

/// Whether every number literal in `bytes` (outside strings) whose double is whole means
/// exactly that number: with `i128` arithmetic on the literal's digits.
pub fn all_numbers_exact(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let mut in_string = false;
    let mut escaped = false;
    let mut token = String::new();
    let mut tokens = Vec::new();
    for c in text.chars().chain([' ']) {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c.is_ascii_digit() || "+-.eE".contains(c) {
            token.push(c);
        } else {
            if !token.is_empty() {
                tokens.push(std::mem::take(&mut token));
            }
            in_string = c == '"';
        }
    }
    tokens.iter().all(|t| {
        let Ok(f) = t.parse::<f64>() else { return true };
        if f.fract() != 0.0 || t.parse::<i64>().is_ok() || t.parse::<u64>().is_ok() {
            return true;
        }
        let (mantissa, exp) = match t.find(['e', 'E']) {
            Some(at) => (&t[..at], t[at + 1..].parse::<i32>().unwrap_or(i32::MAX)),
            None => (&t[..], 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let Ok(m) = format!("{int}{frac}").parse::<i128>() else {
            return false;
        };
        let shift = exp.saturating_sub(frac.len() as i32);
        let n = if m == 0 {
            Some(0)
        } else if shift >= 0 {
            10i128
                .checked_pow(shift as u32)
                .and_then(|p| m.checked_mul(p))
        } else {
            let d = 10i128.checked_pow(shift.unsigned_abs());
            d.filter(|d| m % d == 0).map(|d| m / d)
        };
        // Outside [-2^63, 2^64) the bus never reads a float as an integer.
        n.is_some_and(|n| n == f as i128)
            || !(-9.223_372_036_854_776e18..1.844_674_407_370_955_2e19).contains(&f)
    })
}

pub const PAYLOADS: &[(&str, u32, &str)] = &[
    (
        "order.placed",
        2,
        r#"{"order_id":7,"lines":[{"sku":"A-1","quantity":2},{"sku":"B","quantity":1}],"coupon":"WELCOME"}"#,
    ),
    (
        "order.placed",
        2,
        r#"{"order_id":0,"lines":[],"coupon":null}"#,
    ),
    ("order.placed", 1, r#"{"order_id":18446744073709551615}"#),
    ("user.renamed", 1, r#"{"name":"Ada \u00e9"}"#),
];

/// A CloudEvent around one of [`PAYLOADS`].
pub fn cloudevent(name: &str, version: u32, data: &str, n: usize) -> String {
    format!(
        r#"{{"specversion":"1.0","type":"{name}","source":"/fuzz","id":"ev-{n}","time":"2026-11-24T08:00:00Z","datacontenttype":"application/json","eventversion":"{version}","data":{data}}}"#
    )
}

/// What a CloudEvent's handler must have been given, read by `serde_json` alone: `type`
/// names the event, `eventversion` (a number, or one as a string; the newest when absent)
/// its version, `data` the payload.
pub fn expected_from_cloudevent(doc: &Value, exact: bool) -> Option<Value> {
    let name = doc.get("type")?.as_str()?;
    let version = match doc.get("eventversion") {
        None if name == "order.placed" => 2,
        None => 1,
        Some(Value::Number(n)) => u32::try_from(n.as_u64()?).ok()?,
        Some(Value::String(s)) => s.parse().ok()?,
        Some(_) => return None,
    };
    expected(
        name,
        version,
        doc.get("data").unwrap_or(&Value::Null),
        exact,
    )
}

/// One bus for a whole fuzzing run.
pub fn shared_bus() -> &'static Bus {
    static BUS: std::sync::LazyLock<Bus> = std::sync::LazyLock::new(bus);
    &BUS
}

/// `payload`, accepted as event `name` at `version`, gave the handler exactly what
/// `serde_json` reads in it.
pub fn check_accepted(name: &str, version: u32, payload: &[u8], got: &[Value]) {
    let doc: Value =
        serde_json::from_slice(payload).expect("accepted what serde_json cannot parse");
    let want = expected(name, version, &doc, all_numbers_exact(payload))
        .expect("accepted what serde_json cannot decode");
    assert_eq!(got, [want], "the handler was given something else");
}

/// A CloudEvent accepted in binary mode (`attributes`, with `body` its data) or structured
/// mode (`None`: `body` is the event) gave the handler exactly what `serde_json` reads.
pub fn check_accepted_cloudevent(
    attributes: Option<serde_json::Map<String, Value>>,
    body: &[u8],
    got: &[Value],
) {
    let doc = match attributes {
        None => serde_json::from_slice(body).expect("accepted what serde_json cannot parse"),
        Some(mut ce) => {
            let data: Value =
                serde_json::from_slice(body).expect("accepted data serde_json cannot parse");
            ce.insert("data".into(), data);
            Value::Object(ce)
        }
    };
    let want = expected_from_cloudevent(&doc, all_numbers_exact(body))
        .expect("accepted an event serde_json cannot decode");
    assert_eq!(got, [want], "the handler was given something else");
}

/// Header lines (`name: value`, one a line) up to the first blank line, and the rest: how
/// the binary-mode targets split their input. Without a blank line, all is body.
pub fn split_headers(data: &[u8]) -> (Vec<(String, String)>, &[u8]) {
    let Some(at) = data.windows(2).position(|w| w == b"\n\n") else {
        return (Vec::new(), data);
    };
    let head = String::from_utf8_lossy(&data[..at]);
    let headers = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    (headers, &data[at + 2..])
}
