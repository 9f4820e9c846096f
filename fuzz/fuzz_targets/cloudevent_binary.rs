//! `Ingress::ingest_cloudevent_binary_blocking`: header lines (`name: value`) up to a blank
//! line, then the body, as the HTTP binding carries an event in binary mode.
#![no_main]

#[path = "../oracle.rs"]
mod oracle;

use events::security::Principal;
use libfuzzer_sys::fuzz_target;
use oracle::*;

fuzz_target!(|data: &[u8]| {
    let (headers, body) = split_headers(data);
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let anonymous = Principal::anonymous();
    let result = shared_bus()
        .ingress(&anonymous)
        .ingest_cloudevent_binary_blocking(pairs.iter().copied(), body);
    let got = take_seen();
    match result {
        Ok(receipt) => {
            assert!(receipt.is_ok());
            let attributes = events::cloudevents::binary_attributes(pairs.iter().copied())
                .expect("accepted headers that do not read as attributes");
            check_accepted_cloudevent(attributes, body, &got);
        }
        Err(e) => assert!(got.is_empty(), "refused ({e}) yet dispatched"),
    }
});
