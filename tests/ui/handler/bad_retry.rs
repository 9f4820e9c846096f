use events::{Event, handler};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct OrderPlaced {
    id: u64,
}

#[handler(retry(max = 0, backoff = "linear", base = "soon", jitter = true))]
async fn on_order(ev: &OrderPlaced) {
    let _ = ev;
}

fn main() {}
