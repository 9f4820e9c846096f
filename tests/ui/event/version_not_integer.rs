#[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(version = "2")]
struct OrderPlaced;

fn main() {}
