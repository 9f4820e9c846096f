use events::{Event, handler};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct OrderPlaced {
    id: u64,
}

// A string is not a filter: `Filter::source("vip")` is.
#[handler(filter = "vip")]
fn on_order(ev: &OrderPlaced) {
    let _ = ev;
}

fn main() {}
