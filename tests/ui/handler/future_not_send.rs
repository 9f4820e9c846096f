use events::{Event, handler};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct OrderPlaced {
    id: u64,
}

async fn later() {}

#[handler]
async fn on_order(ev: &OrderPlaced) {
    let counter = std::rc::Rc::new(ev.id);
    later().await;
    drop(counter);
}

fn main() {}
