//! Outside bytes, mutated at random from valid inputs, through every ingest entry point:
//! none panics; a refusal dispatches nothing; an acceptance hands the handler exactly the
//! value the bytes say (checked against `serde_json`'s own reading of them).
//!
//! The mutations are seeded from the clock and the seed is printed; `FUZZ_SEED=<n>` replays
//! a run, `FUZZ_CASES=<n>` sets how many inputs each entry point gets (default 4,000).

#![allow(unreachable_pub)]

#[path = "../../fuzz/oracle.rs"]
mod oracle;

use events::{IngestError, PublishOptions};
use events_tests::SeededRng as Rng;
use oracle::*;
use serde_json::Value;

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
