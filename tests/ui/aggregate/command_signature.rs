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
    #[apply]
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.cents;
    }

    // A command reads the state; only its events change it.
    #[command]
    fn deposit(&mut self, cents: u64) -> Result<Deposited, String> {
        self.balance += cents;
        Ok(Deposited { cents })
    }

    // A command may run again after a conflict: it decides from the state alone.
    #[command]
    async fn deposit_later(&self, cents: u64) -> Result<Deposited, String> {
        Ok(Deposited { cents })
    }
}

fn main() {}
