use events::{AnyEvent, handler};

// A durable handler keeps a checkpoint per event type: a wildcard handler has none.
#[handler(durable)]
fn audit(ev: &AnyEvent) {
    let _ = ev;
}

fn main() {}
