//! Without `events::link!`, the handler crate is a dependency that rustc never links: its
//! handlers do not exist. That is loud, and every message names the fix.

use std::io::Write;
use std::sync::{Arc, Mutex};

use events::Bus;
use link_orders::{Ledger, OrderPlaced};

/// The log, as text.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn an_unlinked_handler_crate_is_reported_with_the_fix() {
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let bus = Bus::builder().state(Ledger::default()).build().unwrap();
    assert!(bus.handlers().iter().all(|h| h.module() != "link_billing"));
    let unhandled: Vec<_> = bus.unhandled_events().iter().map(|e| e.name()).collect();
    assert_eq!(unhandled, ["order.charged", "order.placed"]);

    let receipt = bus
        .publish(OrderPlaced {
            order_id: 1,
            total_cents: 995,
        })
        .await
        .unwrap();
    assert!(receipt.is_unhandled());
    assert!(!receipt.is_ok(), "an event nothing took is not ok");
    let text = receipt.to_string();
    assert!(text.contains("no handler or subscription"), "{text}");
    assert!(text.contains("events::link!(crate_name);"), "{text}");

    // Warned once per event type, with the fix.
    bus.publish(OrderPlaced {
        order_id: 2,
        total_cents: 5,
    })
    .await
    .unwrap();
    let logged = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert_eq!(logged.matches("WARN").count(), 1, "{logged}");
    assert!(logged.contains("`order.placed` was published"), "{logged}");
    assert!(logged.contains("events::link!(crate_name);"), "{logged}");
}

#[test]
fn selecting_a_handler_of_the_unlinked_crate_fails_the_build_with_the_fix() {
    let err = Bus::builder()
        .handler("billing.charge")
        .build()
        .unwrap_err();
    let text = format!("{err:?}"); // what `build()?` in `main` prints
    assert!(
        text.contains("`.handler(\"billing.charge\")` selects no `#[handler]`"),
        "{text}"
    );
    assert!(text.contains("events::link!(crate_name);"), "{text}");
}
