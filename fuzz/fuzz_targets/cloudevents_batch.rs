//! `Bus::ingest_cloudevents_batch`: published whole or not at all.
#![no_main]

#[path = "../oracle.rs"]
mod oracle;

use events::IngestError;
use libfuzzer_sys::fuzz_target;
use oracle::*;

fuzz_target!(|data: &[u8]| {
    static RUNTIME: std::sync::LazyLock<tokio::runtime::Runtime> = std::sync::LazyLock::new(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    });
    let result = RUNTIME.block_on(shared_bus().ingest_cloudevents_batch(data));
    let got = take_seen();
    match result {
        Ok(receipts) => {
            let doc: serde_json::Value = serde_json::from_slice(data).expect("accepted non-JSON");
            let items = doc
                .as_array()
                .expect("accepted a batch that is not an array");
            assert_eq!(receipts.len(), items.len());
            assert_eq!(got.len(), items.len(), "a handler per event");
            let exact = all_numbers_exact(data);
            for (item, value) in items.iter().zip(&got) {
                let want = expected_from_cloudevent(item, exact)
                    .expect("accepted an event serde_json cannot decode");
                assert_eq!(&want, value);
            }
        }
        Err(IngestError::Publish(e)) => panic!("the bus refused a checked batch: {e}"),
        Err(e) => assert!(got.is_empty(), "refused ({e}) yet published part"),
    }
});
