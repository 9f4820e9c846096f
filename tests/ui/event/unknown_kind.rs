#[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(kind = "notice")]
struct OrderPlaced;

fn main() {}
