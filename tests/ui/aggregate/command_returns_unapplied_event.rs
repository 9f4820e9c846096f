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

    // `Withdrawn` has no `#[apply]`: the event would be stored and never change the state.
    #[command]
    fn withdraw(&self, cents: u64) -> Result<Withdrawn, String> {
        Ok(Withdrawn { cents })
    }

    #[command]
    fn move_money(&self, cents: u64) -> Result<(Deposited, Withdrawn), String> {
        Ok((Deposited { cents }, Withdrawn { cents }))
    }
}

fn main() {}
