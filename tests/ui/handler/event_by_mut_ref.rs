use events::{Event, handler};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct OrderPlaced {
    id: u64,
}

#[handler]
fn on_order(ev: &mut OrderPlaced) {
    let _ = ev;
}

fn main() {}
