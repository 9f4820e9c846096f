//! The bus on the in-memory [`Loopback`] transport, as a test without a broker uses it: two
//! buses sharing one loopback stand for two processes. Handlers fan out and share work, a
//! transient failure is retried by the broker and a permanent one dead-lettered in the bus
//! and at the broker, a foreign message that fails the schema is terminated, and a local
//! event never reaches the broker.

#![allow(unreachable_pub)]

use std::time::Duration;

use events::transport::{Loopback, LoopbackOptions};
use events::{Bus, Event, HandlerError, State};
use events_tests::{Calls, until};

#[derive(Event, Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "loop.job")]
pub struct Job {
    pub n: u64,
}

#[derive(Event, Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "loop.note")]
pub struct Note {
    pub n: u64,
}

/// Which bus ran a handler.
#[derive(Debug)]
pub struct Tag(pub &'static str);

static CALLS: Calls = Calls::new();
/// The tests share `CALLS`: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn calls(handler: &str) -> Vec<(&'static str, u64, u32)> {
    CALLS.of(handler)
}

/// Fails job 2 once (transient) and job 3 for good.
#[events::handler(retry(max = 3, base = "10ms", jitter = false))]
fn charge(ev: &Job, tag: State<Tag>, ctx: &events::Context) -> Result<(), HandlerError> {
    CALLS.record("charge", tag.0, ev.n, ctx.attempt());
    match (ev.n, ctx.attempt()) {
        (2, 1) => Err(HandlerError::transient("the bank is busy")),
        (3, _) => Err(HandlerError::permanent("card declined")),
        _ => Ok(()),
    }
}

#[events::handler]
fn audit(ev: &Job, tag: State<Tag>) {
    CALLS.record("audit", tag.0, ev.n, 1);
}

#[events::handler]
fn note(ev: &Note, tag: State<Tag>) {
    CALLS.record("note", tag.0, ev.n, 1);
}

fn bus(broker: &Loopback, tag: &'static str) -> Bus {
    Bus::builder()
        .state(Tag(tag))
        .transport(broker.clone())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_buses_on_one_loopback_fan_out_share_work_and_settle_failures() {
    let _g = SERIAL.lock().await;
    CALLS.clear();
    let broker = Loopback::with_options(LoopbackOptions::new().local(Note::NAME));
    let (one, two) = (bus(&broker, "one"), bus(&broker, "two"));
    let _c1 = one.consume().await.unwrap();
    let _c2 = two.consume().await.unwrap();
    for n in 1..=6 {
        one.publish(Job { n }).await.unwrap();
    }
    until("six audits", || calls("audit").len() == 6).await;
    // Job 3: the first call, then nothing more (permanent).
    until("seven charges", || calls("charge").len() == 7).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Every job audited once and charged once (job 2 twice: its retry), across both buses.
    let mut audited: Vec<u64> = calls("audit").iter().map(|c| c.1).collect();
    audited.sort();
    assert_eq!(audited, [1, 2, 3, 4, 5, 6]);
    let charged = calls("charge");
    assert_eq!(charged.len(), 7, "{charged:?}");
    let job2: Vec<u32> = charged.iter().filter(|c| c.1 == 2).map(|c| c.2).collect();
    assert_eq!(job2, [1, 2], "retried by the broker with the next attempt");

    // Job 3 is a dead letter of the bus that ran it, and terminated at the broker.
    let dead: usize = [&one, &two]
        .iter()
        .map(|b| {
            b.dead_letters()
                .list(&events::DeadLetterFilter::default())
                .len()
        })
        .sum();
    assert_eq!(dead, 1);
    let at_broker = broker.dead_letters();
    assert_eq!(at_broker.len(), 1, "{at_broker:?}");
    assert!(
        at_broker[0].reason.contains("card declined"),
        "{at_broker:?}"
    );

    // A local event runs here and never reaches the broker.
    let sent = broker.messages().len();
    let receipt = one.publish(Note { n: 9 }).await.unwrap();
    assert_eq!(receipt.delivered(), 1);
    assert_eq!(broker.messages().len(), sent);
    assert_eq!(calls("note"), [("one", 9, 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_message_that_fails_the_schema_is_terminated_and_blocks_nothing() {
    let _g = SERIAL.lock().await;
    CALLS.clear();
    let broker = Loopback::new();
    let bus = bus(&broker, "solo");
    let _c = bus.consume().await.unwrap();
    let bad = serde_json::json!({
        "specversion": "1.0", "id": "x-1", "source": "elsewhere", "type": "loop.job",
        "data": { "n": "not a number" }
    });
    broker
        .inject("loop.job", None, serde_json::to_vec(&bad).unwrap())
        .unwrap();
    // On the address of another event: refused too, whatever its payload.
    let misrouted = serde_json::json!({
        "specversion": "1.0", "id": "x-2", "source": "elsewhere", "type": "loop.job",
        "data": { "n": 1 }
    });
    broker
        .inject("loop.note", None, serde_json::to_vec(&misrouted).unwrap())
        .unwrap();
    bus.publish(Job { n: 100 }).await.unwrap();
    until("the good job and two dead letters", || {
        calls("audit").iter().any(|c| c.1 == 100) && broker.dead_letters().len() >= 2
    })
    .await;
    let dead = broker.dead_letters();
    assert!(
        dead.iter()
            .any(|d| d.handler.ends_with("audit") && d.reason.contains("schema")),
        "{dead:?}"
    );
    assert!(
        dead.iter().any(|d| d.reason.contains("travels on")),
        "{dead:?}"
    );
}

/// A bus without a transport cannot consume (a typed error, not a panic), and a consumer
/// asked again with other settings is refused rather than silently changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consuming_without_a_transport_and_a_changed_consumer_are_typed_errors() {
    use events::transport::{ConsumerSpec, Selects, Transport, TransportError};
    let bus = Bus::builder().no_handlers().build().unwrap();
    assert!(matches!(
        bus.consume().await,
        Err(TransportError::NoTransport)
    ));
    let broker = Loopback::new();
    let spec = ConsumerSpec::new("loop.some_handler", Selects::Event(Job::NAME));
    assert!(broker.consumer(spec.clone()).await.is_ok());
    let changed = broker.consumer(spec.max_deliver(2)).await;
    assert!(
        matches!(&changed, Err(TransportError::Refused { what, .. }) if what.contains("loop.some_handler")),
        "{:?}",
        changed.err()
    );
}
