//! What a NATS consumer receives: header lines (`name: value`) up to a blank line, then the
//! payload; read as a delivery is (headers, `Content-Encoding: zstd` within the limit) and
//! ingested through the consumer's path.
#![no_main]

#[path = "../oracle.rs"]
mod oracle;

use std::str::FromStr;

use events::security::Principal;
use libfuzzer_sys::fuzz_target;
use oracle::*;

fuzz_target!(|data: &[u8]| {
    let (lines, payload) = split_headers(data);
    let mut headers = async_nats::HeaderMap::new();
    for (name, value) in &lines {
        let (Ok(name), Ok(value)) = (
            async_nats::HeaderName::from_str(name),
            async_nats::HeaderValue::from_str(value),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let headers = (!lines.is_empty()).then_some(&headers);
    let Ok((attributes, body)) = events::nats::__received(headers, payload, 1 << 16) else {
        return;
    };
    let anonymous = Principal::anonymous();
    let result = shared_bus()
        .ingress(&anonymous)
        .__ingest_parts_blocking(attributes.clone(), &body);
    let got = take_seen();
    match result {
        Ok(receipt) => {
            assert!(receipt.is_ok());
            check_accepted_cloudevent(attributes, &body, &got);
        }
        Err(e) => assert!(got.is_empty(), "refused ({e}) yet dispatched"),
    }
});
