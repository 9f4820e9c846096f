use events::{AnyEvent, handler};

#[handler(pattern = "order.>.placed")]
fn audit(ev: &AnyEvent) {
    let _ = ev;
}

fn main() {}
