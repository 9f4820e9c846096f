#[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct OrderPlaced {
    #[event(secret)]
    card: String,
}

fn main() {}
