use events::{Event, handler};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct OrderPlaced {
    id: u64,
}

fn big(ev: &OrderPlaced) -> bool {
    ev.id > 10
}

#[handler(filter = big)]
fn on_order(ev: &OrderPlaced) {
    let _ = ev;
}

fn main() {}
