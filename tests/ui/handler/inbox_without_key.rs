use events::{Event, handler};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "order.placed")]
struct OrderPlaced {
    id: u64,
}

// An inbox handler records its key in its own transaction: it must take the key.
#[handler(inbox)]
fn charge(ev: &OrderPlaced) {
    let _ = ev;
}

fn main() {}
