#[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(version = 0)]
struct OrderPlaced;

fn main() {}
