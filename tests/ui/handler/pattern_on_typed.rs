use events::{Event, handler};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct OrderPlaced {
    id: u64,
}

#[handler(pattern = "order.*")]
fn on_order(ev: &OrderPlaced) {
    let _ = ev;
}

fn main() {}
