use events::Event;

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "order.placed", version = 1)]
struct OrderPlacedV1 {
    id: u64,
}

// No `impl From<OrderPlacedV1> for OrderPlaced`.
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "order.placed", version = 2, upcast_from = OrderPlacedV1)]
struct OrderPlaced {
    order_id: u64,
}

fn main() {}
