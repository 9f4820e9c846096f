#[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Wrapper<T> {
    inner: T,
}

fn main() {}
