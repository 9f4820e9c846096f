//! `Bus::publish_json_blocking` and `Bus::decode_json`: the first byte picks the event and
//! version, the rest is the payload. No panic; both agree; a refusal dispatches nothing; an
//! acceptance hands the handler exactly what `serde_json` reads.
#![no_main]

#[path = "../oracle.rs"]
mod oracle;

use events::PublishOptions;
use libfuzzer_sys::fuzz_target;
use oracle::*;

const TARGETS: [(&str, u32); 4] = [
    ("order.placed", 2),
    ("order.placed", 1),
    ("user.renamed", 1),
    ("order.placed", 3),
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let (name, version) = TARGETS[usize::from(pick) % TARGETS.len()];
    let bus = shared_bus();
    let decoded = bus.decode_json(name, version, payload);
    let published = bus.publish_json_blocking(name, version, payload, PublishOptions::new());
    let got = take_seen();
    match published {
        Ok(receipt) => {
            assert!(receipt.is_ok());
            assert!(decoded.is_ok(), "publish took what decode refused");
            check_accepted(name, version, payload, &got);
        }
        Err(e) => {
            assert!(got.is_empty(), "refused ({e}) yet dispatched");
            assert!(decoded.is_err(), "decode took what publish refused ({e})");
        }
    }
});
