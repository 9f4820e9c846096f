use events::Event;

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "invoice.sent", version = 1)]
struct InvoiceSent {
    id: u64,
}

// Another event's type: upcasting goes from an older version of the same event.
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "order.placed", version = 2, upcast_from = InvoiceSent)]
struct OrderPlaced {
    order_id: u64,
}

impl From<InvoiceSent> for OrderPlaced {
    fn from(i: InvoiceSent) -> Self {
        OrderPlaced { order_id: i.id }
    }
}

fn main() {}
