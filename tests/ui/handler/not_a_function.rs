use events::handler;

#[handler]
struct NotAFunction;

fn main() {}
