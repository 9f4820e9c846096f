use events::{Event, handler};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct OrderPlaced;

#[handler(durable = true)]
fn bill(_: &OrderPlaced) {}

#[handler(replay = "no")]
fn mail(_: &OrderPlaced) {}

fn main() {}
