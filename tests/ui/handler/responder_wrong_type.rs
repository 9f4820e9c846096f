use events::{Event, handler};

#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Price {
    cents: u64,
}

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(kind = "query", response = Price)]
struct GetPrice {
    sku: String,
}

// Answers with the wrong type: the query's response is `Price`.
#[handler]
fn price(q: &GetPrice) -> Result<u64, std::io::Error> {
    Ok(q.sku.len() as u64)
}

fn main() {}
