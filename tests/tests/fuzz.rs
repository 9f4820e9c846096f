//! Outside bytes, mutated at random from valid inputs, through every ingest entry point:
//! none panics; a refusal dispatches nothing; an acceptance hands the handler exactly the
//! value the bytes say (checked against `serde_json`'s own reading of them).
//!
//! The mutations are seeded from the clock and the seed is printed; `FUZZ_SEED=<n>` replays
//! a run, `FUZZ_CASES=<n>` sets how many inputs each entry point gets (default 4,000).

#![allow(unreachable_pub)]

use std::cell::RefCell;

use events::{Bus, Event, IngestError, IngestLimits, PublishOptions, handler};
use events_tests::SeededRng as Rng;
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

fn take_seen() -> Vec<Value> {
    SEEN.with(|s| std::mem::take(&mut *s.borrow_mut()))
}

fn bus() -> Bus {
    Bus::builder()
        .scope(module_path!())
        .ingest_limits(IngestLimits::new(2048, 6))
        .build()
        .unwrap()
}

fn cases() -> usize {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4000)
}

/// Pieces that make JSON, CloudEvents and their checks interesting.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b",",
    b":",
    b"null",
    b"true",
    b"-1",
    b"0.5",
    b"1e400",
    b"18446744073709551616",
    b"4294967296",
    b"\"\\u0000\"",
    b"\"\\ud800\"",
    b"\xff\xfe",
    b"[[[[[[[[[[",
    b"{\"a\":{\"b\":{\"c\":{\"d\":{}}}}}",
    b"\"order.placed\"",
    b"\"user.renamed\"",
    b"\"order_id\"",
    b"\"lines\"",
    b"\"specversion\"",
    b"\"1.0\"",
    b"\"data\"",
    b"\"data_base64\"",
    b"\"eventversion\"",
    b"\"time\"",
    b"\"9999-99-99T99:99:99Z\"",
    b"\"datacontenttype\"",
    b"\"text/plain\"",
    b"\"correlationid\"",
    b"\"causationid\"",
    b"\"0190a7c2-0000-7000-8000-000000000000\"",
];

/// One random change: flip, delete, insert a token, duplicate a span, or truncate.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(3) {
        let at = if out.is_empty() {
            0
        } else {
            rng.below(out.len() + 1)
        };
        match rng.below(6) {
            0 if at < out.len() => out[at] ^= 1 << rng.below(8),
            1 if at < out.len() => {
                let end = (at + 1 + rng.below(8)).min(out.len());
                out.drain(at..end);
            }
            2 | 3 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                out.splice(at..at, token.iter().copied());
            }
            4 if at < out.len() => {
                let end = (at + 1 + rng.below(32)).min(out.len());
                let span = out[at..end].to_vec();
                out.splice(end..end, span);
            }
            _ => out.truncate(at),
        }
    }
    out
}

/// What the handler of `name`/`version` must have been given for these payload bytes,
/// read by `serde_json` alone, or `None` if `serde_json` cannot read them as that type.
/// The handler's value for `payload`: serde_json's reading; or, where that fails only for
/// whole numbers written as floats (`1.0`, which JSON Schema counts as integers), the
/// reading with them as integers, if every number literal of `bytes` means exactly the
/// double serde_json read (`exact`).
fn expected(name: &str, version: u32, payload: &Value, exact: bool) -> Option<Value> {
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
fn all_numbers_exact(bytes: &[u8]) -> bool {
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

const PAYLOADS: &[(&str, u32, &str)] = &[
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

#[test]
fn mutated_json_payloads_are_refused_cleanly_or_handled_exactly() {
    let bus = bus();
    let mut rng = Rng::from_env("FUZZ_SEED");
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..cases() {
        let (name, version, seed) = PAYLOADS[rng.below(PAYLOADS.len())];
        let bytes = mutate(&mut rng, seed.as_bytes());
        let shown = String::from_utf8_lossy(&bytes);

        let decoded = bus.decode_json(name, version, &bytes);
        let published = bus.publish_json_blocking(name, version, &bytes, PublishOptions::new());
        let got = take_seen();
        match published {
            Ok(receipt) => {
                accepted += 1;
                assert!(receipt.is_ok(), "{shown}");
                assert!(decoded.is_ok(), "publish took what decode refused: {shown}");
                let payload: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                    panic!("accepted what serde_json cannot parse ({e}): {shown}")
                });
                let want = expected(name, version, &payload, all_numbers_exact(&bytes))
                    .unwrap_or_else(|| panic!("accepted what serde_json cannot decode: {shown}"));
                assert_eq!(
                    got,
                    [want],
                    "the handler was given something else for {shown}"
                );
            }
            Err(e) => {
                refused += 1;
                assert!(got.is_empty(), "refused ({e}) yet dispatched: {shown}");
                assert!(
                    decoded.is_err(),
                    "decode took what publish refused ({e}): {shown}"
                );
                assert!(!e.to_string().is_empty());
            }
        }
    }
    eprintln!("{accepted} accepted, {refused} refused");
    assert!(
        accepted > 0 && refused > 0,
        "the mutations should land on both sides"
    );
}

/// A CloudEvent around one of [`PAYLOADS`].
fn cloudevent(name: &str, version: u32, data: &str, n: usize) -> String {
    format!(
        r#"{{"specversion":"1.0","type":"{name}","source":"/fuzz","id":"ev-{n}","time":"2026-11-24T08:00:00Z","datacontenttype":"application/json","eventversion":"{version}","data":{data}}}"#
    )
}

/// What a CloudEvent's handler must have been given, read by `serde_json` alone: `type`
/// names the event, `eventversion` (a number, or one as a string; the newest when absent)
/// its version, `data` the payload.
fn expected_from_cloudevent(doc: &Value, exact: bool) -> Option<Value> {
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

#[test]
fn mutated_cloudevents_are_refused_cleanly_or_handled_exactly() {
    let bus = bus();
    let mut rng = Rng::from_env("FUZZ_SEED");
    let (mut accepted, mut refused) = (0, 0);
    for n in 0..cases() {
        let (name, version, data) = PAYLOADS[rng.below(PAYLOADS.len())];
        let bytes = mutate(&mut rng, cloudevent(name, version, data, n).as_bytes());
        let shown = String::from_utf8_lossy(&bytes);

        match bus.ingest_cloudevent_blocking(&bytes) {
            Ok(receipt) => {
                accepted += 1;
                assert!(receipt.is_ok(), "{shown}");
                let doc: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                    panic!("accepted what serde_json cannot parse ({e}): {shown}")
                });
                let want = expected_from_cloudevent(&doc, all_numbers_exact(&bytes))
                    .unwrap_or_else(|| panic!("accepted what serde_json cannot decode: {shown}"));
                assert_eq!(
                    take_seen(),
                    [want],
                    "the handler was given something else for {shown}"
                );
            }
            Err(e) => {
                refused += 1;
                let got = take_seen();
                assert!(got.is_empty(), "refused ({e}) yet dispatched: {shown}");
            }
        }
    }
    eprintln!("{accepted} accepted, {refused} refused");
    assert!(
        accepted > 0 && refused > 0,
        "the mutations should land on both sides"
    );
}

#[test]
fn a_mutated_batch_is_published_whole_or_not_at_all() {
    let bus = bus();
    let mut rng = Rng::from_env("FUZZ_SEED");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (mut accepted, mut refused) = (0, 0);
    for n in 0..cases() / 4 {
        let items: Vec<String> = (0..1 + rng.below(4))
            .map(|i| {
                let (name, version, data) = PAYLOADS[rng.below(PAYLOADS.len())];
                cloudevent(name, version, data, n * 8 + i)
            })
            .collect();
        let seed = format!("[{}]", items.join(","));
        let bytes = mutate(&mut rng, seed.as_bytes());
        let shown = String::from_utf8_lossy(&bytes);

        let result = runtime.block_on(bus.ingest_cloudevents_batch(&bytes));
        let got = take_seen();
        match result {
            Ok(receipts) => {
                accepted += 1;
                let doc: Value = serde_json::from_slice(&bytes).unwrap();
                let len = doc.as_array().map(Vec::len);
                assert_eq!(Some(receipts.len()), len, "{shown}");
                assert_eq!(got.len(), receipts.len(), "{shown}");
            }
            Err(IngestError::Publish(e)) => panic!("the bus refused a checked batch: {e}"),
            Err(e) => {
                refused += 1;
                assert!(got.is_empty(), "refused ({e}) yet published part: {shown}");
            }
        }
    }
    eprintln!("{accepted} accepted, {refused} refused");
    assert!(
        accepted > 0 && refused > 0,
        "the mutations should land on both sides"
    );
}
