use events::personal::Personal;

#[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "customer.registered")]
struct CustomerRegistered {
    #[event(subject)]
    email: Personal<String>,
}

#[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "customer.renamed")]
struct CustomerRenamed {
    #[event(subject)]
    customer_id: String,
    #[event(subject)]
    account_id: String,
    name: Option<Personal<String>>,
}

fn main() {}
