//! Handlers for `link_orders`' events. Nothing here is public: the bus calls them, so a
//! binary that depends on this crate names nothing in it, and must link it with
//! `events::link!(link_billing)`.

use std::sync::atomic::Ordering;

use events::{Context, HandlerError, State, handler};
use link_orders::{Ledger, OrderCharged, OrderPlaced};

#[handler(name = "billing.charge")]
async fn charge(
    ev: &OrderPlaced,
    ctx: &Context,
    ledger: State<Ledger>,
) -> Result<(), HandlerError> {
    ledger
        .charged_cents
        .fetch_add(ev.total_cents, Ordering::SeqCst);
    ctx.publish(OrderCharged {
        order_id: ev.order_id,
    })
    .await?;
    Ok(())
}
