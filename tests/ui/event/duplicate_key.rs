#[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(version = 1, version = 2)]
struct OrderPlaced;

fn main() {}
