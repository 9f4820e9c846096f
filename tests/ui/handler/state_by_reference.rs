// State taken by reference, as a new user writes it: the error says `State<Books>`.
use events::{Event, handler};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct OrderPlaced {
    id: u64,
}

struct Books;

#[handler]
fn on_order(ev: &OrderPlaced, books: &Books) {
    let _ = (ev, books);
}

fn main() {}
