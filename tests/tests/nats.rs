//! The bus on NATS JetStream, against a real `nats-server -js` started by each test on a free
//! port with a temporary store directory: fan-out, competing consumers, the fates of
//! failures, deduplication, foreign invalid messages, local events, stream checks, and a
//! server restart mid-stream.

#![allow(unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use events::nats::{Nats, NatsError, NatsOptions};
use events::{Bus, DeadLetterFilter, Event, HandlerError, PublishOptions, State};
use events_tests::{Calls, NatsServer as Server, until};

#[derive(Event, Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "work.job")]
pub struct Job {
    pub n: u64,
    pub mode: String,
}

#[derive(Event, Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "work.tick")]
pub struct Tick {
    pub n: u64,
}

/// Which bus ("process") a handler ran on.
#[derive(Debug)]
pub struct Tag(pub &'static str);

/// `(handler, bus, n, attempt)`.
static CALLS: Calls = Calls::new();
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn record(handler: &'static str, tag: &Tag, n: u64, attempt: u32) {
    CALLS.record(handler, tag.0, n, attempt);
}

fn calls(handler: &str) -> Vec<(&'static str, u64, u32)> {
    CALLS.of(handler)
}

mod fanout {
    use super::*;

    #[events::handler]
    fn billing(ev: &Job, tag: State<Tag>, ctx: &events::Context) {
        record("billing", &tag, ev.n, ctx.attempt());
    }

    #[events::handler]
    async fn audit(ev: &Job, tag: State<Tag>, ctx: &events::Context) {
        record("audit", &tag, ev.n, ctx.attempt());
    }
}

async fn bus(url: &str, options: NatsOptions, scope: &'static str, tag: &'static str) -> Bus {
    let nats = Nats::connect(url, options).await.unwrap();
    Bus::builder()
        .scope(scope)
        .state(Tag(tag))
        .transport(nats)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_fan_out_and_processes_share_each_handlers_work() {
    let _g = SERIAL.lock().await;
    CALLS.clear();
    let server = Server::start();
    let options = NatsOptions::new("t1").memory_storage();
    let one = bus(&server.url(), options.clone(), "nats::fanout", "one").await;
    let two = bus(&server.url(), options.clone(), "nats::fanout", "two").await;
    let (_c1, _c2) = (one.consume().await.unwrap(), two.consume().await.unwrap());
    assert_eq!(_c1.len(), 2, "one consumer per handler");

    const N: u64 = 300;
    for n in 0..N {
        let receipt = one
            .publish(Job {
                n,
                mode: "ok".into(),
            })
            .await
            .unwrap();
        assert_eq!(receipt.sequence(), Some(n + 1), "the stream sequence");
        assert_eq!(receipt.handler_count(), 0, "handled by consumers, not here");
    }
    until("every job handled by both handlers", || {
        calls("billing").len() as u64 >= N && calls("audit").len() as u64 >= N
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for handler in ["billing", "audit"] {
        let got = calls(handler);
        let mut per_n = BTreeMap::new();
        let mut per_bus = BTreeMap::new();
        for (bus, n, _) in &got {
            *per_n.entry(*n).or_insert(0) += 1;
            *per_bus.entry(*bus).or_insert(0) += 1;
        }
        assert_eq!(per_n.len() as u64, N, "{handler}: every job");
        assert!(per_n.values().all(|&c| c == 1), "{handler}: none twice");
        assert_eq!(
            per_bus.len(),
            2,
            "{handler}: both processes took a share: {per_bus:?}"
        );
    }
}

mod fates {
    use super::*;

    #[events::handler(retry(max = 2, backoff = "fixed", base = "50ms", jitter = false))]
    fn worker(ev: &Job, tag: State<Tag>, ctx: &events::Context) -> Result<(), HandlerError> {
        record("worker", &tag, ev.n, ctx.attempt());
        match ev.mode.as_str() {
            "flaky" if ctx.attempt() < 2 => Err(HandlerError::transient("busy")),
            "always-busy" => Err(HandlerError::transient("still busy")),
            "bad" => Err(HandlerError::permanent("bad job")),
            "panic" => panic!("worker exploded"),
            _ => Ok(()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_nakked_and_the_rest_terminated_into_dead_letters() {
    let _g = SERIAL.lock().await;
    CALLS.clear();
    let server = Server::start();
    let options = NatsOptions::new("t2").memory_storage();
    let bus = bus(&server.url(), options, "nats::fates", "only").await;
    let _consumers = bus.consume().await.unwrap();
    for (n, mode) in [
        (1, "flaky"),
        (2, "always-busy"),
        (3, "bad"),
        (4, "panic"),
        (5, "ok"),
    ] {
        bus.publish(Job {
            n,
            mode: mode.into(),
        })
        .await
        .unwrap();
    }
    until("three dead letters", || {
        bus.dead_letters().list(&DeadLetterFilter::all()).len() >= 3
    })
    .await;
    until("the flaky job's second attempt", || {
        calls("worker").iter().any(|c| c.1 == 1 && c.2 == 2)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let attempts = |n| -> Vec<u32> {
        calls("worker")
            .iter()
            .filter(|c| c.1 == n)
            .map(|c| c.2)
            .collect()
    };
    assert_eq!(attempts(1), [1, 2], "nak, then redelivered and done");
    assert_eq!(
        attempts(2),
        [1, 2, 3],
        "max_deliver = retries + 1, then term"
    );
    assert_eq!(attempts(3), [1], "permanent: term at once");
    assert_eq!(attempts(4), [1], "panic: term at once");
    assert_eq!(attempts(5), [1]);
    let letters = bus.dead_letters().list(&DeadLetterFilter::all());
    let mut summary: Vec<(u64, String, bool, u32)> = letters
        .iter()
        .map(|l| {
            (
                l.payload["n"].as_u64().unwrap(),
                l.error.clone(),
                l.permanent,
                l.attempts,
            )
        })
        .collect();
    summary.sort();
    assert_eq!(
        summary,
        [
            (2, "still busy".to_owned(), false, 3),
            (3, "bad job".to_owned(), true, 1),
            (4, "panicked: worker exploded".to_owned(), true, 1),
        ]
    );
    // And each is in the dead-letter stream, with the reason in a header.
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut dlq = js.get_stream("T2_DLQ").await.unwrap();
    assert_eq!(dlq.info().await.unwrap().state.messages, 3);
}

mod dedup {
    use super::*;

    #[events::handler]
    fn once(ev: &Tick, tag: State<Tag>) {
        record("once", &tag, ev.n, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_published_twice_is_stored_and_handled_once() {
    let _g = SERIAL.lock().await;
    CALLS.clear();
    let server = Server::start();
    let bus = bus(
        &server.url(),
        NatsOptions::new("t3").memory_storage(),
        "nats::dedup",
        "only",
    )
    .await;
    let _consumers = bus.consume().await.unwrap();
    let id = events::EventId::new();
    let first = bus
        .publish_with(Tick { n: 7 }, PublishOptions::new().id(id))
        .await
        .unwrap();
    let again = bus
        .publish_with(Tick { n: 7 }, PublishOptions::new().id(id))
        .await
        .unwrap();
    assert_eq!(first.sequence(), again.sequence(), "stored once");
    bus.publish(Tick { n: 8 }).await.unwrap();
    until("the next event", || calls("once").len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(calls("once"), [("only", 7, 1), ("only", 8, 1)]);
}

mod foreign {
    use super::*;

    #[events::handler]
    fn careful(ev: &Job, tag: State<Tag>) {
        record("careful", &tag, ev.n, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_invalid_messages_are_terminated_as_dead_letters_and_block_nothing() {
    let _g = SERIAL.lock().await;
    CALLS.clear();
    let server = Server::start();
    let bus = bus(
        &server.url(),
        NatsOptions::new("t4").memory_storage(),
        "nats::foreign",
        "only",
    )
    .await;
    let _consumers = bus.consume().await.unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let ce = |data: &str| {
        format!(
            r#"{{"specversion":"1.0","id":"{}","source":"elsewhere","type":"work.job","data":{data}}}"#,
            events::EventId::new()
        )
    };
    for body in [
        "this is not json".to_owned(),
        ce(r#"{"n":"seven","mode":"ok"}"#), // violates the schema
        r#"{"specversion":"0.3","id":"1","source":"x","type":"work.job"}"#.to_owned(),
        ce(r#"{"n":1,"mode":"ok"}"#), // a good one, after the bad ones
    ] {
        js.publish("t4.work.job", body.into_bytes().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    until("the valid message", || !calls("careful").is_empty()).await;
    assert_eq!(calls("careful"), [("only", 1, 1)]);
    let mut dlq = js.get_stream("T4_DLQ").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while dlq.info().await.unwrap().state.messages < 3 {
        assert!(Instant::now() < deadline, "dead letters missing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = dlq.get_raw_message(1).await.unwrap();
    let reason = first
        .headers
        .get("Events-Error")
        .map(|v| v.to_string())
        .unwrap_or_default();
    assert!(
        reason.contains("not JSON") || reason.contains("malformed"),
        "{reason}"
    );
}

mod local {
    use super::*;

    #[events::handler]
    fn nearby(ev: &Tick, tag: State<Tag>) {
        record("nearby", &tag, ev.n, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_events_never_touch_the_network() {
    let _g = SERIAL.lock().await;
    CALLS.clear();
    let server = Server::start();
    let bus = bus(
        &server.url(),
        NatsOptions::new("t5").memory_storage().local::<Tick>(),
        "nats::local",
        "only",
    )
    .await;
    let consumers = bus.consume().await.unwrap();
    assert!(
        consumers.is_empty(),
        "no consumer for a local event's handler"
    );
    let receipt = bus.publish(Tick { n: 1 }).await.unwrap();
    assert_eq!(receipt.handler_count(), 1, "handled here, at once");
    assert_eq!(calls("nearby"), [("only", 1, 1)]);
    // The blocking API works for local events.
    bus.publish_blocking(Tick { n: 2 }).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("T5").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_with_other_settings_is_an_error_not_a_silent_change() {
    let server = Server::start();
    Nats::connect(&server.url(), NatsOptions::new("t6").memory_storage())
        .await
        .unwrap();
    let err = Nats::connect(
        &server.url(),
        NatsOptions::new("t6")
            .memory_storage()
            .max_age(Duration::from_secs(60)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, NatsError::StreamMismatch { stream, .. } if stream == "T6"),
        "{err}"
    );
    assert!(err.to_string().contains("left unchanged"), "{err}");
    // The blocking API refuses remote events with a clear error.
    let nats = Nats::connect(&server.url(), NatsOptions::new("t6").memory_storage())
        .await
        .unwrap();
    let bus = Bus::builder()
        .no_handlers()
        .transport(nats)
        .build()
        .unwrap();
    let err = bus.publish_blocking(Tick { n: 1 }).unwrap_err();
    assert!(err.to_string().contains("publish with `.await`"), "{err}");
}

mod fault {
    use super::*;

    #[events::handler]
    fn survivor(ev: &Tick, tag: State<Tag>) {
        record("survivor", &tag, ev.n, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_is_handled_across_a_server_restart() {
    let _g = SERIAL.lock().await;
    CALLS.clear();
    let server = Server::start();
    let url = server.url();
    let bus = bus(&url, NatsOptions::new("t7"), "nats::fault", "only").await;
    let _consumers = bus.consume().await.unwrap();
    let mut acked = Vec::new();
    let mut server = Some(server);
    let mut stopped: Option<(u16, tempfile::TempDir)> = None;
    for n in 0..210u64 {
        if n == 100 {
            stopped = server.take().map(Server::stop);
        }
        if n == 105 {
            let (port, dir) = stopped.take().unwrap();
            server = Some(Server::start_at(port, dir));
        }
        // While the server is down, publishing fails: those events are not acknowledged.
        if tokio::time::timeout(Duration::from_secs(1), bus.publish(Tick { n }))
            .await
            .is_ok_and(|r| r.is_ok())
        {
            acked.push(n);
        }
    }
    assert!(acked.len() >= 150, "acknowledged {}", acked.len());
    assert!(
        acked.iter().any(|&n| n >= 105),
        "published again after the restart"
    );
    until("every acknowledged event handled", || {
        let handled: std::collections::BTreeSet<u64> =
            calls("survivor").iter().map(|c| c.1).collect();
        acked.iter().all(|n| handled.contains(n))
    })
    .await;
    drop(server);
}

mod slow {
    use super::*;

    /// Takes longer than the consumer's ack wait.
    #[events::handler]
    async fn slow(ev: &Tick, tag: State<Tag>, ctx: &events::Context) {
        // Recorded when it starts, so that a redelivery would show at once.
        record("slow-start", &tag, ev.n, ctx.attempt());
        tokio::time::sleep(Duration::from_millis(2500)).await;
        CORRELATIONS
            .lock()
            .unwrap()
            .push((ctx.meta().correlation_id(), ctx.meta().source().to_owned()));
        record("slow", &tag, ev.n, ctx.attempt());
    }

    pub static CORRELATIONS: Mutex<Vec<(events::EventId, String)>> = Mutex::new(Vec::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_handler_keeps_its_message_and_the_envelope_travels() {
    let _g = SERIAL.lock().await;
    CALLS.clear();
    let server = Server::start();
    let options = NatsOptions::new("t8")
        .memory_storage()
        .ack_wait(Duration::from_secs(1));
    let bus = bus(&server.url(), options, "nats::slow", "only").await;
    let _consumers = bus.consume().await.unwrap();
    let flow = events::EventId::new();
    bus.publish_with(
        Tick { n: 1 },
        PublishOptions::new()
            .correlation_id(flow)
            .source("checkout"),
    )
    .await
    .unwrap();
    until("the slow handler", || !calls("slow").is_empty()).await;
    // Without in-progress the server would have redelivered it after 1 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        calls("slow"),
        [("only", 1, 1)],
        "handled once, first attempt"
    );
    assert_eq!(calls("slow-start"), [("only", 1, 1)], "never redelivered");
    assert_eq!(
        *slow::CORRELATIONS.lock().unwrap(),
        [(flow, "checkout".to_owned())],
        "correlation id and source restored on the receiving side"
    );
}

mod wide {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub static WIDE: (AtomicUsize, AtomicUsize) = (AtomicUsize::new(0), AtomicUsize::new(0));
    pub static NARROW: (AtomicUsize, AtomicUsize) = (AtomicUsize::new(0), AtomicUsize::new(0));

    /// Counts calls in flight and keeps the most seen at once.
    async fn in_flight(counter: &(AtomicUsize, AtomicUsize), pause: Duration) {
        let now = counter.0.fetch_add(1, Ordering::SeqCst) + 1;
        counter.1.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(pause).await;
        counter.0.fetch_sub(1, Ordering::SeqCst);
    }

    /// The most calls seen in flight at once.
    pub fn most(counter: &(AtomicUsize, AtomicUsize)) -> usize {
        counter.1.load(Ordering::SeqCst)
    }

    #[events::handler(concurrency = 3)]
    async fn wide(ev: &Tick, tag: State<Tag>, ctx: &events::Context) {
        in_flight(&WIDE, Duration::from_millis(150)).await;
        record("wide", &tag, ev.n, ctx.attempt());
    }

    #[events::handler]
    async fn narrow(ev: &Tick, tag: State<Tag>, ctx: &events::Context) {
        in_flight(&NARROW, Duration::from_millis(10)).await;
        record("narrow", &tag, ev.n, ctx.attempt());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_runs_as_many_calls_at_once_as_its_handlers_concurrency() {
    let _g = SERIAL.lock().await;
    CALLS.clear();
    let server = Server::start();
    let options = NatsOptions::new("t9").memory_storage();
    let bus = bus(&server.url(), options, "nats::wide", "only").await;
    for n in 0..12 {
        bus.publish(Tick { n }).await.unwrap();
    }
    let _consumers = bus.consume().await.unwrap();
    until("both handlers", || {
        calls("wide").len() == 12 && calls("narrow").len() == 12
    })
    .await;
    assert_eq!(
        wide::most(&wide::WIDE),
        3,
        "`concurrency = 3`: three calls at once, never more"
    );
    assert_eq!(
        wide::most(&wide::NARROW),
        1,
        "no `concurrency`: one call at a time"
    );
    let order: Vec<u64> = calls("narrow").iter().map(|c| c.1).collect();
    assert_eq!(
        order,
        (0..12).collect::<Vec<_>>(),
        "one at a time keeps the stream's order"
    );
    let mut taken: Vec<u64> = calls("wide").iter().map(|c| c.1).collect();
    taken.sort_unstable();
    assert_eq!(
        taken,
        (0..12).collect::<Vec<_>>(),
        "each message handled once"
    );
}
