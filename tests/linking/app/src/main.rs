//! Publishes an order; `link_billing`'s handler charges it, because of the one line below.

use events::Bus;
use link_orders::{Ledger, OrderPlaced};

events::link!(link_billing);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bus = Bus::builder().state(Ledger::default()).build()?;
    let receipt = bus
        .publish(OrderPlaced {
            order_id: 1,
            total_cents: 995,
        })
        .await?;
    println!("{receipt}");
    Ok(())
}
