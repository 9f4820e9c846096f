use events::handler;

#[handler]
fn on_text(ev: &String) {
    let _ = ev;
}

fn main() {}
