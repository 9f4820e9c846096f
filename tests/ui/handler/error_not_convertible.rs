use events::{Event, handler};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct OrderPlaced {
    id: u64,
}

#[handler]
fn on_order(ev: &OrderPlaced) -> Result<(), u32> {
    Err(ev.id as u32)
}

fn main() {}
