use events::{Event, handler};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct OrderPlaced {
    id: u64,
}

struct Service;

impl Service {
    #[handler]
    fn on_order(&self, ev: &OrderPlaced) {
        let _ = ev;
    }
}

fn main() {}
