//! The workloads of the comparison, each written once per peer as a runner
//! `FnMut(iterations) -> Duration` (criterion's `iter_custom` shape), shared by the
//! criterion suite (`benches/dispatch.rs`) and the comparison runner (`src/bin/compare.rs`).
//!
//! Every peer does the same work on the same event type: a 16-byte event whose handler adds
//! one field to an atomic counter.

#![allow(missing_docs, unreachable_pub, clippy::new_without_default)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use events::{Bus, Event, handler};

/// `publishers` tasks each publish `per` events (`make(sequence)`) one after the other on
/// `bus`; every publish call's latency, until it resolved.
pub async fn publish_concurrently<E: Event>(
    bus: &Bus,
    publishers: u64,
    per: u64,
    make: fn(u64) -> E,
) -> Vec<Duration> {
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per as usize);
            for i in 0..per {
                let t = Instant::now();
                bus.publish(make(p * per + i)).await.expect("publish");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    all
}

/// `(p50, p99)` of `latencies`.
pub fn percentiles(mut latencies: Vec<Duration>) -> (Duration, Duration) {
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
    (at(0.50), at(0.99))
}

pub mod durable;
pub mod http;
pub mod memory;
pub mod outbox;
pub mod postgres;
pub mod remote;
pub mod sourcing;

/// What every handler does.
#[inline]
pub fn handle(counter: &AtomicU64, amount: u64) {
    counter.fetch_add(black_box(amount), Ordering::Relaxed);
}

macro_rules! events {
    ($($ty:ident = $name:literal),* $(,)?) => {$(
        #[derive(Event, Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
        #[event(name = $name)]
        pub struct $ty {
            pub seq: u64,
            pub amount: u64,
        }
        impl messagebus::Message for $ty {}
        impl $ty {
            #[inline]
            pub fn new(seq: u64) -> Self {
                $ty { seq, amount: 1 }
            }
        }
    )*};
}

events!(
    Tick1 = "bench.tick1",
    Tick10 = "bench.tick10",
    TickAsync = "bench.tick_async",
    TickQueued = "bench.tick_queued",
    TickOther = "bench.tick_other",
    TickWild = "bench.wild.tick",
    TickJson = "bench.tick_json",
);

macro_rules! other_events {
    ($($ty:ident),*) => {$(
        #[derive(Event, Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
        pub struct $ty;
    )*};
}
/// Calls `$mac!` with the 100 "other" event types of workload (5).
macro_rules! others {
    ($mac:ident) => {
        $mac!(
            O0, O1, O2, O3, O4, O5, O6, O7, O8, O9, O10, O11, O12, O13, O14, O15, O16, O17, O18,
            O19, O20, O21, O22, O23, O24, O25, O26, O27, O28, O29, O30, O31, O32, O33, O34, O35,
            O36, O37, O38, O39, O40, O41, O42, O43, O44, O45, O46, O47, O48, O49, O50, O51, O52,
            O53, O54, O55, O56, O57, O58, O59, O60, O61, O62, O63, O64, O65, O66, O67, O68, O69,
            O70, O71, O72, O73, O74, O75, O76, O77, O78, O79, O80, O81, O82, O83, O84, O85, O86,
            O87, O88, O89, O90, O91, O92, O93, O94, O95, O96, O97, O98, O99
        );
    };
}
others!(other_events);

pub static SINK: AtomicU64 = AtomicU64::new(0);
/// Events handled by the queued workload's handler.
pub static QUEUED: AtomicU64 = AtomicU64::new(0);

#[handler]
fn tick1(ev: &Tick1) {
    handle(&SINK, ev.amount);
}

macro_rules! fan_out {
    ($($m:ident),*) => {$(
        mod $m {
            #[events::handler]
            fn h(ev: &super::Tick10) {
                super::handle(&super::SINK, ev.amount);
            }
        }
    )*};
}
fan_out!(f0, f1, f2, f3, f4, f5, f6, f7, f8, f9);

macro_rules! fan_out_wild {
    ($($m:ident),*) => {$(
        mod $m {
            #[events::handler]
            fn h(ev: &super::TickWild) {
                super::handle(&super::SINK, ev.amount);
            }
        }
    )*};
}
fan_out_wild!(w0, w1, w2, w3, w4, w5, w6, w7, w8, w9);

/// Workload (7): a wildcard handler that matches `TickWild` (and reads its name, not JSON).
#[handler(pattern = "bench.wild.*")]
fn wild(ev: &events::AnyEvent) {
    handle(&SINK, ev.name().len() as u64);
}

#[handler]
async fn tick_async(ev: &TickAsync) {
    handle(&SINK, ev.amount);
}

#[handler]
fn tick_json(ev: &TickJson) {
    handle(&SINK, ev.amount);
}

#[handler]
fn tick_queued(ev: &TickQueued) {
    handle(&QUEUED, ev.amount);
}

/// The workloads, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Sync1,
    FanOut10,
    Async1,
    Queued,
    Sync1With100Subs,
    Sync1With10kSubs,
    FanOut10Wild,
    JsonIngest,
}

impl Workload {
    pub const ALL: [Workload; 8] = [
        Workload::Sync1,
        Workload::FanOut10,
        Workload::Async1,
        Workload::Queued,
        Workload::Sync1With100Subs,
        Workload::Sync1With10kSubs,
        Workload::FanOut10Wild,
        Workload::JsonIngest,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Workload::Sync1 => "(1) publish -> 1 sync handler, blocking API",
            Workload::FanOut10 => "(2) publish -> 10 sync handlers (fan-out)",
            Workload::Async1 => "(3) publish().await -> 1 async handler",
            Workload::Queued => "(4) queued: 1 producer -> handler on a worker task",
            Workload::Sync1With100Subs => "(5) as (1), 100 subscriptions to other types exist",
            Workload::Sync1With10kSubs => {
                "(5b) as (1), 10,000 subscriptions to the 100 other types exist"
            }
            Workload::FanOut10Wild => "(7) as (2), plus a matching wildcard handler (`&AnyEvent`)",
            Workload::JsonIngest => {
                "(8) JSON in: schema check + deserialize + 1 sync handler (floor: `jsonschema` + `serde_json` + a call)"
            }
        }
    }

    pub fn id(self) -> &'static str {
        match self {
            Workload::Sync1 => "sync1",
            Workload::FanOut10 => "fanout10",
            Workload::Async1 => "async1",
            Workload::Queued => "queued",
            Workload::Sync1With100Subs => "sync1_100subs",
            Workload::Sync1With10kSubs => "sync1_10ksubs",
            Workload::FanOut10Wild => "fanout10_wild",
            Workload::JsonIngest => "json",
        }
    }

    /// Iterations per timed sample: about 10 ms of work.
    pub fn sample_iters(self) -> u64 {
        match self {
            Workload::Queued => 200_000,
            _ => 50_000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Events,
    Floor,
    SpawnJoin,
    Broadcast,
    Mpsc,
    Flume,
    Jaeb,
    Messagebus,
}

impl Peer {
    pub const ALL: [Peer; 8] = [
        Peer::Events,
        Peer::Floor,
        Peer::SpawnJoin,
        Peer::Broadcast,
        Peer::Mpsc,
        Peer::Flume,
        Peer::Jaeb,
        Peer::Messagebus,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Peer::Events => "events",
            Peer::Floor => "`Box<dyn Fn>` (floor)",
            Peer::SpawnJoin => "`tokio::spawn`+join",
            Peer::Broadcast => "tokio broadcast",
            Peer::Mpsc => "tokio mpsc",
            Peer::Flume => "flume",
            Peer::Jaeb => "jaeb 0.5",
            Peer::Messagebus => "messagebus 0.15",
        }
    }

    pub fn id(self) -> &'static str {
        match self {
            Peer::Events => "events",
            Peer::Floor => "floor",
            Peer::SpawnJoin => "spawn_join",
            Peer::Broadcast => "broadcast",
            Peer::Mpsc => "mpsc",
            Peer::Flume => "flume",
            Peer::Jaeb => "jaeb",
            Peer::Messagebus => "messagebus",
        }
    }
}

/// Runs `iterations` events and returns how long they took.
pub type Runner = Box<dyn FnMut(u64) -> Duration>;

/// The runner for one cell of the table, or why the peer cannot express the workload.
pub fn runner(workload: Workload, peer: Peer) -> Result<Runner, &'static str> {
    use Peer::*;
    use Workload::*;
    match (workload, peer) {
        (Sync1, Events) => Ok(events_blocking::<Tick1>(ours())),
        (Sync1 | Sync1With100Subs | Sync1With10kSubs, Floor) => Ok(floor_sync(1)),
        (Sync1, Broadcast) => Ok(broadcast_sync(1)),
        (Sync1, Mpsc) => Ok(mpsc_sync(1)),
        (Sync1, Flume) => Ok(flume_sync(1)),
        (Sync1, Jaeb) => Ok(jaeb_sync(1, false)),
        (FanOut10, Events) => Ok(events_blocking::<Tick10>(ours())),
        (FanOut10, Floor) => Ok(floor_sync(10)),
        (FanOut10, Broadcast) => Ok(broadcast_sync(10)),
        (FanOut10, Mpsc) => Ok(mpsc_sync(10)),
        (FanOut10, Flume) => Ok(flume_sync(10)),
        (FanOut10, Jaeb) => Ok(jaeb_sync(10, false)),
        (Async1, Events) => Ok(events_async()),
        (Async1, Floor) => Ok(floor_async()),
        (Async1, SpawnJoin) => Ok(spawn_join()),
        (Async1, Broadcast) => Ok(broadcast_async()),
        (Async1, Mpsc) => Ok(mpsc_async()),
        (Async1, Flume) => Ok(flume_async()),
        (Async1, Jaeb) => Ok(jaeb_async()),
        (Async1, Messagebus) => Ok(messagebus_async()),
        (Queued, Events) => Ok(events_queued()),
        (Queued, Mpsc) => Ok(mpsc_queued()),
        (Queued, Flume) => Ok(flume_queued()),
        (Queued, Jaeb) => Ok(jaeb_queued()),
        (Queued, Messagebus) => Ok(messagebus_queued()),
        (Queued, Broadcast) => Err("n/a: drops events when the receiver lags (no backpressure)"),
        (Queued, Floor | SpawnJoin) => Err("n/a: no queue"),
        (FanOut10Wild, Events) => Ok(events_blocking::<TickWild>(ours())),
        (FanOut10Wild, Floor) => Ok(floor_sync(11)),
        (FanOut10Wild, _) => Err("n/a: no wildcard handlers"),
        (JsonIngest, Events) => Ok(events_json()),
        (JsonIngest, Floor) => Ok(floor_json()),
        (JsonIngest, _) => Err("n/a: no schema-checked JSON ingest"),
        (Sync1With100Subs, Events) => Ok(events_blocking::<Tick1>(ours_with_subscriptions(1))),
        (Sync1With10kSubs, Events) => Ok(events_blocking::<Tick1>(ours_with_subscriptions(100))),
        (Sync1With100Subs, Jaeb) => Ok(jaeb_sync(1, true)),
        (Sync1With10kSubs, Jaeb) => Err("not measured: 100 subscriptions are row (5)"),
        (Sync1With100Subs | Sync1With10kSubs, Broadcast | Mpsc | Flume) => {
            Err("= (1): one channel per type, nothing shared")
        }
        (Sync1 | FanOut10 | Sync1With100Subs | Sync1With10kSubs, Messagebus) => {
            Err("n/a: handlers are async tasks behind a queue")
        }
        (Sync1 | FanOut10 | Sync1With100Subs | Sync1With10kSubs, SpawnJoin) => Err(""),
    }
}

fn ours() -> Bus {
    Bus::builder().build().expect("bus")
}

/// A bus with `each` subscriptions to every one of the 100 other event types.
fn ours_with_subscriptions(each: usize) -> Bus {
    let bus = ours();
    macro_rules! subscribe {
        ($($ty:ident),*) => {$(
            for _ in 0..each {
                bus.subscribe(|_: &$ty, _: &events::Context| {}).detach();
            }
        )*};
    }
    others!(subscribe);
    bus
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The producer runs on the calling thread (`block_on`); handlers run on one runtime worker
/// thread: two threads for two cores, the same for every peer.
fn one_worker() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

fn timed(iters: u64, mut f: impl FnMut(u64)) -> Duration {
    let start = Instant::now();
    for i in 0..iters {
        f(i);
    }
    start.elapsed()
}

fn wait_until(counter: &AtomicU64, target: u64) {
    while counter.load(Ordering::Acquire) < target {
        std::thread::yield_now();
    }
}

async fn yield_until(counter: &AtomicU64, target: u64) {
    while counter.load(Ordering::Acquire) < target {
        tokio::task::yield_now().await;
    }
}

// ---------------------------------------------------------------------------------- events

fn events_blocking<E: Event + From<u64>>(bus: Bus) -> Runner {
    Box::new(move |iters| {
        timed(iters, |i| {
            let receipt = bus.publish_blocking(E::from(i)).expect("publish");
            black_box(receipt);
        })
    })
}

impl From<u64> for Tick1 {
    fn from(i: u64) -> Self {
        Tick1::new(i)
    }
}
impl From<u64> for TickWild {
    fn from(i: u64) -> Self {
        TickWild::new(i)
    }
}
impl From<u64> for Tick10 {
    fn from(i: u64) -> Self {
        Tick10::new(i)
    }
}

fn events_async() -> Runner {
    let bus = ours();
    let rt = current_thread();
    Box::new(move |iters| {
        rt.block_on(async {
            let start = Instant::now();
            for i in 0..iters {
                let receipt = bus.publish(TickAsync::new(i)).await.expect("publish");
                black_box(receipt);
            }
            start.elapsed()
        })
    })
}

fn events_queued() -> Runner {
    let rt = one_worker();
    let bus = Bus::builder().workers(1).build().expect("bus");
    Box::new(move |iters| {
        let target = QUEUED.load(Ordering::Acquire) + iters;
        rt.block_on(async {
            let start = Instant::now();
            for i in 0..iters {
                bus.emit(TickQueued::new(i)).await.expect("emit");
            }
            wait_until(&QUEUED, target);
            start.elapsed()
        })
    })
}

// ----------------------------------------------------------------------- floor and channels

fn floor_sync(handlers: usize) -> Runner {
    type SyncFn = Box<dyn Fn(&Tick1)>;
    let fns: Vec<SyncFn> = (0..handlers)
        .map(|_| Box::new(|ev: &Tick1| handle(&SINK, ev.amount)) as SyncFn)
        .collect();
    Box::new(move |iters| {
        timed(iters, |i| {
            let ev = black_box(Tick1::new(i));
            for f in &fns {
                f(&ev);
            }
        })
    })
}

/// The JSON body of workload (8): what an HTTP handler would receive.
fn json_body(i: u64) -> Vec<u8> {
    format!(r#"{{"seq": {i}, "amount": 1}}"#).into_bytes()
}

fn events_json() -> Runner {
    let bus = ours();
    let bodies: Vec<Vec<u8>> = (0..1024).map(json_body).collect();
    Box::new(move |iters| {
        timed(iters, |i| {
            let body = &bodies[(i % 1024) as usize];
            let receipt = bus
                .publish_json_blocking("bench.tick_json", 1, body, events::PublishOptions::new())
                .expect("valid");
            black_box(receipt);
        })
    })
}

/// What the ingest path cannot do with less: parse, validate with the same compiled
/// validator library, deserialize, call the handler.
fn floor_json() -> Runner {
    let schema = serde_json::to_value(TickJson::schema()).expect("schema");
    let validator = jsonschema::validator_for(&schema).expect("validator");
    let bodies: Vec<Vec<u8>> = (0..1024).map(json_body).collect();
    let handler: Box<dyn Fn(&TickJson)> = Box::new(|ev| handle(&SINK, ev.amount));
    Box::new(move |iters| {
        timed(iters, |i| {
            let body = &bodies[(i % 1024) as usize];
            let value: serde_json::Value = serde_json::from_slice(body).expect("json");
            assert!(validator.is_valid(&value));
            let ev: TickJson = serde_json::from_value(value).expect("event");
            handler(black_box(&ev));
        })
    })
}

type AsyncFn = Box<dyn Fn(&TickAsync) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>>>;

fn floor_async() -> Runner {
    let rt = current_thread();
    let f: AsyncFn = Box::new(|ev: &TickAsync| Box::pin(async move { handle(&SINK, ev.amount) }));
    Box::new(move |iters| {
        rt.block_on(async {
            let start = Instant::now();
            for i in 0..iters {
                let ev = black_box(TickAsync::new(i));
                f(&ev).await;
            }
            start.elapsed()
        })
    })
}

fn spawn_join() -> Runner {
    let rt = current_thread();
    Box::new(move |iters| {
        rt.block_on(async {
            let start = Instant::now();
            for i in 0..iters {
                let ev = TickAsync::new(i);
                tokio::spawn(async move { handle(&SINK, ev.amount) })
                    .await
                    .expect("join");
            }
            start.elapsed()
        })
    })
}

fn broadcast_sync(receivers: usize) -> Runner {
    let (tx, _) = tokio::sync::broadcast::channel::<Tick1>(1024);
    let mut rxs: Vec<_> = (0..receivers).map(|_| tx.subscribe()).collect();
    Box::new(move |iters| {
        timed(iters, |i| {
            tx.send(Tick1::new(i)).expect("send");
            for rx in &mut rxs {
                let ev = rx.try_recv().expect("recv");
                handle(&SINK, ev.amount);
            }
        })
    })
}

fn mpsc_sync(channels: usize) -> Runner {
    let (txs, mut rxs): (Vec<_>, Vec<_>) = (0..channels)
        .map(|_| tokio::sync::mpsc::channel::<Tick1>(1024))
        .unzip();
    Box::new(move |iters| {
        timed(iters, |i| {
            let ev = Tick1::new(i);
            for tx in &txs {
                tx.try_send(ev.clone()).expect("send");
            }
            for rx in &mut rxs {
                let ev = rx.try_recv().expect("recv");
                handle(&SINK, ev.amount);
            }
        })
    })
}

fn flume_sync(channels: usize) -> Runner {
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..channels).map(|_| flume::bounded::<Tick1>(1024)).unzip();
    Box::new(move |iters| {
        timed(iters, |i| {
            let ev = Tick1::new(i);
            for tx in &txs {
                tx.send(ev.clone()).expect("send");
            }
            for rx in &rxs {
                let ev = rx.try_recv().expect("recv");
                handle(&SINK, ev.amount);
            }
        })
    })
}

fn broadcast_async() -> Runner {
    let rt = current_thread();
    let (tx, mut rx) = tokio::sync::broadcast::channel::<TickAsync>(1024);
    Box::new(move |iters| {
        rt.block_on(async {
            let start = Instant::now();
            for i in 0..iters {
                tx.send(TickAsync::new(i)).expect("send");
                let ev = rx.recv().await.expect("recv");
                handle(&SINK, ev.amount);
            }
            start.elapsed()
        })
    })
}

fn mpsc_async() -> Runner {
    let rt = current_thread();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<TickAsync>(1024);
    Box::new(move |iters| {
        rt.block_on(async {
            let start = Instant::now();
            for i in 0..iters {
                tx.send(TickAsync::new(i)).await.expect("send");
                let ev = rx.recv().await.expect("recv");
                handle(&SINK, ev.amount);
            }
            start.elapsed()
        })
    })
}

fn flume_async() -> Runner {
    let rt = current_thread();
    let (tx, rx) = flume::bounded::<TickAsync>(1024);
    Box::new(move |iters| {
        rt.block_on(async {
            let start = Instant::now();
            for i in 0..iters {
                tx.send_async(TickAsync::new(i)).await.expect("send");
                let ev = rx.recv_async().await.expect("recv");
                handle(&SINK, ev.amount);
            }
            start.elapsed()
        })
    })
}

fn channel_queued<S, R>(
    make: impl FnOnce() -> (S, R),
    send: impl Fn(&S, TickQueued) -> std::pin::Pin<Box<dyn Future<Output = ()> + '_>> + 'static,
    consume: impl FnOnce(R, Arc<AtomicU64>) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
) -> Runner
where
    S: 'static,
{
    let rt = one_worker();
    let handled = Arc::new(AtomicU64::new(0));
    let (tx, rx) = make();
    rt.spawn(consume(rx, handled.clone()));
    Box::new(move |iters| {
        let target = handled.load(Ordering::Acquire) + iters;
        rt.block_on(async {
            let start = Instant::now();
            for i in 0..iters {
                send(&tx, TickQueued::new(i)).await;
            }
            wait_until(&handled, target);
            start.elapsed()
        })
    })
}

fn mpsc_queued() -> Runner {
    channel_queued(
        || tokio::sync::mpsc::channel::<TickQueued>(8192),
        |tx, ev| Box::pin(async move { tx.send(ev).await.expect("send") }),
        |mut rx, handled| {
            Box::pin(async move {
                while let Some(ev) = rx.recv().await {
                    handle(&handled, ev.amount);
                }
            })
        },
    )
}

fn flume_queued() -> Runner {
    channel_queued(
        || flume::bounded::<TickQueued>(8192),
        |tx, ev| Box::pin(async move { tx.send_async(ev).await.expect("send") }),
        |rx, handled| {
            Box::pin(async move {
                while let Ok(ev) = rx.recv_async().await {
                    handle(&handled, ev.amount);
                }
            })
        },
    )
}

// ------------------------------------------------------------------------------------ jaeb

fn jaeb_sync(handlers: usize, with_100_subscriptions: bool) -> Runner {
    let rt = current_thread();
    let bus = rt.block_on(async {
        let bus = jaeb::EventBus::builder().build().await.expect("jaeb");
        for _ in 0..handlers {
            let _keep = bus.subscribe::<TickOther, _, _>(|ev: &TickOther, _: &jaeb::EventBus| -> jaeb::HandlerResult {
                handle(&SINK, ev.amount);
                Ok(())
            })
            .await
            .expect("subscribe");
        }
        if with_100_subscriptions {
            macro_rules! subscribe {
                ($($ty:ident),*) => {$(
                    let _keep = bus
                        .subscribe::<$ty, _, _>(|_: &$ty, _: &jaeb::EventBus| -> jaeb::HandlerResult {
                            Ok(())
                        })
                        .await
                        .expect("subscribe");
                )*};
            }
            others!(subscribe);
        }
        bus
    });
    Box::new(move |iters| {
        rt.block_on(async {
            let start = Instant::now();
            for i in 0..iters {
                bus.publish(TickOther::new(i)).await.expect("publish");
            }
            start.elapsed()
        })
    })
}

/// A jaeb bus with one async subscriber that counts `E`s into `handled`.
async fn jaeb_counting<E: HasAmount + Clone + Send + Sync + 'static>(
    handled: Arc<AtomicU64>,
) -> jaeb::EventBus {
    let bus = jaeb::EventBus::builder().build().await.expect("jaeb");
    let _keep = bus
        .subscribe::<E, _, _>(move |ev: E, _: jaeb::EventBus| {
            let h = handled.clone();
            async move {
                handle(&h, ev.amount());
                Ok(())
            }
        })
        .await
        .expect("subscribe");
    bus
}

fn jaeb_async() -> Runner {
    let rt = current_thread();
    let handled = Arc::new(AtomicU64::new(0));
    let h = handled.clone();
    let bus = rt.block_on(jaeb_counting::<TickAsync>(h));
    Box::new(move |iters| {
        let base = handled.load(Ordering::Acquire);
        rt.block_on(async {
            let start = Instant::now();
            for i in 0..iters {
                bus.publish(TickAsync::new(i)).await.expect("publish");
                yield_until(&handled, base + i + 1).await;
            }
            start.elapsed()
        })
    })
}

fn jaeb_queued() -> Runner {
    let rt = one_worker();
    let handled = Arc::new(AtomicU64::new(0));
    let h = handled.clone();
    let bus = rt.block_on(jaeb_counting::<TickQueued>(h));
    Box::new(move |iters| {
        let target = handled.load(Ordering::Acquire) + iters;
        rt.block_on(async {
            let start = Instant::now();
            for i in 0..iters {
                bus.publish(TickQueued::new(i)).await.expect("publish");
            }
            wait_until(&handled, target);
            start.elapsed()
        })
    })
}

// ------------------------------------------------------------------------------ messagebus

#[derive(Debug)]
pub struct Counting {
    handled: Arc<AtomicU64>,
}

impl<M: messagebus::Message + HasAmount> messagebus::Handler<M> for Counting {
    type Result = ();
    type Error = anyhow::Error;

    async fn handle(
        &mut self,
        msg: M,
        _ctx: messagebus::Context,
        _bus: messagebus::Bus,
    ) -> Result<impl messagebus::IntoMessages<Self::Result, Self::Error>, Self::Error> {
        handle(&self.handled, msg.amount());
        Ok(())
    }

    async fn handle_error(
        &mut self,
        _err: messagebus::Error,
        _ctx: messagebus::Context,
        _bus: messagebus::Bus,
    ) -> Result<impl messagebus::IntoMessages<Self::Result, Self::Error> + Send + '_, Self::Error>
    {
        Ok(None)
    }

    async fn finalize(self, _bus: messagebus::Bus) -> Result<(), Self::Error> {
        Ok(())
    }
}

pub trait HasAmount {
    fn amount(&self) -> u64;
}
impl HasAmount for TickAsync {
    fn amount(&self) -> u64 {
        self.amount
    }
}
impl HasAmount for TickQueued {
    fn amount(&self) -> u64 {
        self.amount
    }
}

pub async fn messagebus_with<M: messagebus::Message + HasAmount>(
    queue_size: usize,
    handled: Arc<AtomicU64>,
) -> messagebus::Bus {
    let bus = messagebus::Bus::new();
    bus.register(messagebus::DefaultBuilder::<M, Counting, _, _>::new(
        queue_size,
        move |_, _| {
            let handled = handled.clone();
            async move { Ok(Counting { handled }) }
        },
    ))
    .await;
    bus
}

fn messagebus_async() -> Runner {
    let rt = current_thread();
    let handled = Arc::new(AtomicU64::new(0));
    let bus = rt.block_on(messagebus_with::<TickAsync>(1024, handled.clone()));
    Box::new(move |iters| {
        let base = handled.load(Ordering::Acquire);
        rt.block_on(async {
            let start = Instant::now();
            for i in 0..iters {
                bus.send(TickAsync::new(i)).await.expect("send");
                yield_until(&handled, base + i + 1).await;
            }
            start.elapsed()
        })
    })
}

fn messagebus_queued() -> Runner {
    let rt = one_worker();
    let handled = Arc::new(AtomicU64::new(0));
    let bus = rt.block_on(messagebus_with::<TickQueued>(8192, handled.clone()));
    Box::new(move |iters| {
        let target = handled.load(Ordering::Acquire) + iters;
        rt.block_on(async {
            let start = Instant::now();
            for i in 0..iters {
                bus.send(TickQueued::new(i)).await.expect("send");
            }
            wait_until(&handled, target);
            start.elapsed()
        })
    })
}
