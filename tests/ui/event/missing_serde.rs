#[derive(events::Event, schemars::JsonSchema)]
struct OrderPlaced {
    id: u64,
}

fn main() {}
