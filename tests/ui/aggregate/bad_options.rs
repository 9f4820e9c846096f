use events::{Event, aggregate};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "account.deposited")]
struct Deposited {
    cents: u64,
}

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "account.withdrawn")]
struct Withdrawn {
    cents: u64,
}

#[derive(Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Account {
    balance: u64,
}

#[aggregate(name = "Accounts!", snapshots = 10)]
impl Account {
    #[apply]
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.cents;
    }
}

fn main() {}
