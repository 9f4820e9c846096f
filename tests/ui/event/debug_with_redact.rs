// `#[derive(Event)]` writes `Debug` for an event with redacted fields: a `Debug` derived
// beside it is a mistake the error names.
#[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[derive(Debug)]
#[event(name = "ui.card")]
struct Card {
    #[event(redact)]
    number: String,
}

fn main() {}
