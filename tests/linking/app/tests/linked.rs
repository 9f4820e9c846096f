//! With `events::link!`, the handler crate's handlers are part of the binary.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use events::Bus;
use link_orders::{Ledger, OrderPlaced};

events::link!(link_billing);

#[tokio::test]
async fn the_linked_crate_handles_the_event() {
    let ledger = Arc::new(Ledger::default());
    let bus = Bus::builder().shared_state(ledger.clone()).build().unwrap();
    assert_eq!(bus.handler_names::<OrderPlaced>(), ["billing.charge"]);
    assert!(bus.handlers().iter().any(|h| h.module() == "link_billing"));

    let receipt = bus
        .publish(OrderPlaced {
            order_id: 1,
            total_cents: 995,
        })
        .await
        .unwrap();
    assert!(receipt.is_ok(), "{receipt}");
    assert_eq!(receipt.delivered(), 1);
    assert_eq!(ledger.charged_cents.load(Ordering::SeqCst), 995);
    // `order.charged` has no handler anywhere: it is reported, by name.
    let unhandled: Vec<_> = bus.unhandled_events().iter().map(|e| e.name()).collect();
    assert_eq!(unhandled, ["order.charged"]);
}

#[test]
fn the_binary_links_it_too() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_link-app"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("1 handler\n  - billing.charge: delivered"),
        "{text}"
    );
}
