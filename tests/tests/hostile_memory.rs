//! Peak memory for hostile input within the limits: a small multiple of the input's size,
//! whatever its shape (issue 15, item 3: 1 MiB of `[-1,-1,...]` once cost ~205 MB and an
//! 18 MB error message). Measured with a counting global allocator, in its own binary.

#![allow(unreachable_pub)]

use events::{Bus, Event, PublishOptions};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "memory.items")]
struct Items {
    items: Vec<u8>,
}

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "memory.order")]
struct Order {
    order_id: u64,
}

/// Nearly `size` bytes of `{"items":[-1,-1,...]}`: one violation every three bytes.
fn minus_ones(size: usize) -> Vec<u8> {
    let mut body = String::from(r#"{"items":["#);
    while body.len() < size - 8 {
        body.push_str("-1,");
    }
    body.push_str("-1]}");
    body.into_bytes()
}

/// A CloudEvent of nearly `size` bytes made of one-character extensions.
fn many_extensions(size: usize) -> Vec<u8> {
    let mut ce = String::from(
        r#"{"specversion":"1.0","id":"a","source":"/s","type":"memory.order","data":{"order_id":1}"#,
    );
    let mut i = 0;
    while ce.len() < size - 32 {
        ce.push_str(&format!(r#","e{i}":"v""#));
        i += 1;
    }
    ce.push('}');
    ce.into_bytes()
}

#[test]
fn peak_memory_is_a_small_multiple_of_the_input() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let bus = Bus::builder().no_handlers().build().unwrap();
    // A zero with a huge exponent (found by `cargo fuzz`, target `json_ingest`): 25 bytes
    // once cost one byte per unit of exponent (here 2 GB) while checking whether the float
    // reads back as the integer it says.
    let input = br#"{"order_id":0e2000000000}"#;
    // Once first, so that the schema's compiled validator is not counted.
    bus.publish_json_blocking(
        "memory.order",
        1,
        br#"{"order_id":1}"#,
        PublishOptions::new(),
    )
    .unwrap();
    let before = dhat::HeapStats::get();
    bus.publish_json_blocking("memory.order", 1, input, PublishOptions::new())
        .unwrap();
    let after = dhat::HeapStats::get();
    let peak = after.max_bytes.saturating_sub(before.curr_bytes);
    eprintln!("0e2000000000: peak {peak} bytes");
    assert!(
        peak <= 1 << 20,
        "peak {peak} bytes for {} bytes of input",
        input.len()
    );

    let size = (1 << 20) - 16;
    for (what, input, cloudevent) in [
        ("[-1,-1,...]", minus_ones(size), false),
        ("extensions", many_extensions(size), true),
    ] {
        let before = dhat::HeapStats::get();
        let err = if cloudevent {
            bus.ingest_cloudevent_blocking(&input).unwrap_err()
        } else {
            bus.publish_json_blocking("memory.items", 1, &input, PublishOptions::new())
                .unwrap_err()
        };
        let after = dhat::HeapStats::get();
        let message = err.to_string();
        // The peak over the whole test so far, less what was live before this input.
        let peak = after.max_bytes.saturating_sub(before.curr_bytes);
        eprintln!(
            "{what}: input {} bytes, peak {} bytes ({:.1}x), message {} bytes",
            input.len(),
            peak,
            peak as f64 / input.len() as f64,
            message.len()
        );
        assert!(message.len() <= 4096, "{what}: {message}");
        assert!(
            peak <= 24 * input.len(),
            "{what}: peak {peak} bytes for {} bytes of input",
            input.len()
        );
    }
}
