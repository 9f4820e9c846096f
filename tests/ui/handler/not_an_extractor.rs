use events::{Event, handler};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct OrderPlaced {
    id: u64,
}

#[handler]
fn on_order(ev: &OrderPlaced, retries: u32) {
    let _ = (ev, retries);
}

fn main() {}
