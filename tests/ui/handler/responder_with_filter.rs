use events::{Event, Meta, handler};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(kind = "query", response = u64)]
struct CountOrders {
    open_only: bool,
}

fn open_only(q: &CountOrders, _: &Meta) -> bool {
    q.open_only
}

#[handler(filter = open_only)]
fn count(_: &CountOrders) -> u64 {
    0
}

fn main() {}
