//! A handler's failure or panic is reported through `tracing`. Its own binary, with a global
//! subscriber: tracing caches per-callsite interest process-wide, so a thread-local
//! subscriber would race with other tests' threads.

use std::io::Write;
use std::sync::{Arc, Mutex};

use events::{Bus, Event, HandlerError, handler};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Fragile;

#[handler(priority = 1)]
fn refuses(_: &Fragile) -> Result<(), HandlerError> {
    Err(HandlerError::permanent("card declined"))
}

#[handler]
fn explodes(_: &Fragile) {
    panic!("boom in a handler");
}

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn failures_and_panics_are_logged_with_event_and_handler() {
    let buf = Buf::default();
    let writer = buf.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let bus = Bus::builder().build().unwrap();
    let receipt = bus.publish_blocking(Fragile).unwrap();
    assert_eq!(receipt.failures().count(), 2);

    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let warn = out
        .lines()
        .find(|l| l.contains("event handler failed"))
        .expect(&out);
    assert!(warn.contains("WARN"), "{warn}");
    assert!(warn.contains(r#"event="fragile""#), "{warn}");
    assert!(
        warn.contains(&format!("event_id={}", receipt.event_id())),
        "{warn}"
    );
    assert!(warn.contains(r#"handler="tracing::refuses""#), "{warn}");
    assert!(warn.contains("transient=false"), "{warn}");
    assert!(warn.contains("card declined"), "{warn}");

    let error = out
        .lines()
        .find(|l| l.contains("event handler panicked"))
        .expect(&out);
    assert!(error.contains("ERROR"), "{error}");
    assert!(error.contains(r#"handler="tracing::explodes""#), "{error}");
    assert!(error.contains("boom in a handler"), "{error}");
}
