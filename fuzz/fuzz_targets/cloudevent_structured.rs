//! `Bus::ingest_cloudevent_blocking`: the input is the whole CloudEvent (structured mode).
#![no_main]

#[path = "../oracle.rs"]
mod oracle;

use libfuzzer_sys::fuzz_target;
use oracle::*;

fuzz_target!(|data: &[u8]| {
    let result = shared_bus().ingest_cloudevent_blocking(data);
    let got = take_seen();
    match result {
        Ok(receipt) => {
            assert!(receipt.is_ok());
            check_accepted_cloudevent(None, data, &got);
        }
        Err(e) => assert!(got.is_empty(), "refused ({e}) yet dispatched"),
    }
});
