use events::Event;

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(kind = "query")]
struct GetPrice {
    sku: String,
}

fn main() {}
