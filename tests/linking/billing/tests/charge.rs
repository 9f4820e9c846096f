//! The handler crate's own integration test: a test binary links this crate only when it
//! names it, so it too says `events::link!`.

use std::sync::atomic::Ordering;

use events::Bus;
use events::testing::TestBus;
use link_orders::{Ledger, OrderCharged, OrderPlaced};

events::link!(link_billing);

#[tokio::test]
async fn charging_an_order_books_it_and_announces_it() {
    let ledger = std::sync::Arc::new(Ledger::default());
    let t = TestBus::new(
        Bus::builder()
            .handler("billing.charge")
            .shared_state(ledger.clone()),
    )
    .unwrap();
    let receipt = t
        .publish(OrderPlaced {
            order_id: 3,
            total_cents: 250,
        })
        .await
        .unwrap();
    assert!(receipt.is_ok(), "{receipt}");
    assert_eq!(ledger.charged_cents.load(Ordering::SeqCst), 250);
    t.expect_one::<OrderCharged>(|c| c.order_id == 3);
}
