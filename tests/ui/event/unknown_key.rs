#[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(verison = 2)]
struct OrderPlaced;

fn main() {}
