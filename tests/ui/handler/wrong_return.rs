use events::{Event, handler};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct OrderPlaced {
    id: u64,
}

#[handler]
fn on_order(ev: &OrderPlaced) -> u64 {
    ev.id
}

fn main() {}
