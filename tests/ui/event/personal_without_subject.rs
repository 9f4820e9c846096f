use events::personal::Personal;

#[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "customer.registered")]
struct CustomerRegistered {
    customer_id: String,
    email: Personal<String>,
}

fn main() {}
