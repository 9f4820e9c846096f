use events::outbox::InboxKey;
use events::{Event, handler};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "order.placed")]
struct OrderPlaced {
    id: u64,
}

// The key without the flag: the bus would never skip a delivery the inbox has.
#[handler]
fn charge(ev: &OrderPlaced, key: InboxKey) {
    let _ = (ev, key);
}

fn main() {}
