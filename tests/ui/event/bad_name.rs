#[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "Order Placed")]
struct OrderPlaced;

fn main() {}
