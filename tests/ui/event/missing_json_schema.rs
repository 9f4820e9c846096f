// Deriving `JsonSchema` with schemars 0.8 is the same as not deriving schemars 1.x's: the
// derive's own note says which crate and version.
#[derive(events::Event, serde::Serialize, serde::Deserialize)]
struct OrderPlaced {
    id: u64,
}

fn main() {}
