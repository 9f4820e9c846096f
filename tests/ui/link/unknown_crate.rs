// A crate name that is not a dependency (here a typo of `serde_json`): the error is on it.
events::link!(serde_jsn);

fn main() {}
