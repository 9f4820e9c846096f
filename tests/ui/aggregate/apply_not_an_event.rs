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

/// Not an event: no `#[derive(Event)]`.
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Audited {
    by: String,
}

#[aggregate]
impl Account {
    #[apply]
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.cents;
    }

    // The state can only be built from events.
    #[apply]
    fn audited(&mut self, _: &Audited) {}
}

fn main() {}
