use events::Event;

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(kind = "notification", response = u64)]
struct OrderPlaced {
    id: u64,
}

fn main() {}
