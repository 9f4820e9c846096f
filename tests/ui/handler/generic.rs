use events::{Event, handler};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct OrderPlaced {
    id: u64,
}

#[handler]
fn on_any<E: Event>(ev: &E) {
    let _ = ev;
}

fn main() {}
