#[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "Order.Placed", verison = 2, kind = "notice")]
struct OrderPlaced;

fn main() {}
