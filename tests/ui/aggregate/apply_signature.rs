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

#[aggregate]
impl Account {
    // The state is changed in place: `&mut self`.
    #[apply]
    fn deposited(&self, e: &Deposited) {
        let _ = e;
    }

    // The event is taken by reference.
    #[apply]
    fn withdrawn(&mut self, e: Withdrawn) {
        self.balance -= e.cents;
    }
}

#[derive(Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Ledger {
    total: u64,
}

#[aggregate]
impl Ledger {
    // Applying cannot fail: deciding is a command's job.
    #[apply]
    fn deposited(&mut self, e: &Deposited) -> Result<(), String> {
        self.total += e.cents;
        Ok(())
    }

    // Loading applies events one after another: nothing to await.
    #[apply]
    async fn withdrawn(&mut self, e: &Withdrawn) {
        self.total -= e.cents;
    }

    // One event per apply.
    #[apply]
    fn both(&mut self, d: &Deposited, w: &Withdrawn) {
        let _ = (d, w);
    }
}

fn main() {}
