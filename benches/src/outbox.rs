//! Workload (12): the outbox. (a) Publishing on the local commit (`Ack::Local`) on SQLite
//! and PostgreSQL, with the broker away (the forwarder backs off meanwhile), next to the
//! durable rows (9) and (11). (b) The forwarder draining a backlog of events committed
//! while the broker was away into JetStream, next to raw `async-nats` publishing the same
//! bytes from memory, pipelined the same way, in the same run. (c) A 4 KB JSON event through
//! NATS with compression off and on: bytes in the stream per event, and CPU time per event
//! (publish and consume, the whole process).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use events::nats::{Nats, NatsOptions};
use events::outbox::OutboxOptions;
use events::store::{EventStore, SqliteStore, Synchronous};
use events::transport::Loopback;
use events::{Bus, Event, handler};

use crate::durable::Durable;
use crate::remote::Server;

#[derive(Event, Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "bench.tick_outbox")]
pub struct TickOutbox {
    pub seq: u64,
    pub amount: u64,
}

#[derive(Event, Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "bench.document")]
pub struct Document {
    pub seq: u64,
    /// About 4 KB of JSON-ish text: the payload of (c).
    pub body: String,
}

pub static DOCUMENTS: AtomicU64 = AtomicU64::new(0);

#[handler]
fn document(ev: &Document) {
    crate::handle(&DOCUMENTS, ev.seq);
}

fn outbox_options() -> OutboxOptions {
    OutboxOptions::new()
        .batch(512)
        .poll(Duration::from_millis(5))
}

/// (a) on SQLite: `publishers` tasks publish on the local commit, the broker away.
pub fn local_commit_sqlite(publishers: u64, per: u64) -> Durable {
    let dir = tempfile::tempdir().expect("temp dir");
    let store =
        SqliteStore::open_with(dir.path().join("outbox.db"), Synchronous::Full).expect("store");
    local_commit(store, publishers, per)
}

/// (a) on PostgreSQL.
pub fn local_commit_postgres(publishers: u64, per: u64) -> Durable {
    use events::postgres::{PostgresOptions, PostgresStore};
    let schema = format!("events_bench_outbox_{}", std::process::id());
    let store = PostgresStore::connect(
        &crate::postgres::config(),
        PostgresOptions::new().schema(schema).temporary(),
    )
    .expect("store");
    local_commit(store, publishers, per)
}

fn local_commit(store: impl EventStore, publishers: u64, per: u64) -> Durable {
    let broker =
        Loopback::with_options(events::transport::LoopbackOptions::new().max_messages(usize::MAX));
    broker.set_offline(true);
    // The bus (and its forwarder) on the measuring runtime.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let bus = rt.block_on(async {
        Bus::builder()
            .no_handlers()
            .store(store)
            .transport(broker)
            .outbox(outbox_options().backoff(Duration::from_secs(5), Duration::from_secs(5)))
            .build()
            .expect("bus")
    });
    crate::durable::measure_on(rt, bus, publishers, per, |seq| TickOutbox {
        seq,
        amount: 1,
    })
}

/// What (b) measured: events per second into the stream.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded {
    pub events_per_sec: f64,
}

/// (b) `events`: `backlog` events committed to a SQLite outbox while the broker was away,
/// then a bus on NATS forwards them; from its start until the backlog is empty.
pub fn forwarder(server: &Server, run: u32, backlog: u64) -> Forwarded {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("outbox.db");
    let rt = runtime();
    rt.block_on(async {
        let broker = Loopback::new();
        broker.set_offline(true);
        let bus = Bus::builder()
            .no_handlers()
            .store(SqliteStore::open_with(&path, Synchronous::Normal).expect("store"))
            .transport(broker)
            .outbox(outbox_options().backoff(Duration::from_secs(60), Duration::from_secs(60)))
            .build()
            .expect("bus");
        let mut seq = 0;
        while seq < backlog {
            let n = (backlog - seq).min(4096);
            let batch = (seq..seq + n).map(|s| TickOutbox { seq: s, amount: 1 });
            for r in bus.publish_batch(batch).await {
                r.expect("publish");
            }
            seq += n;
        }
    });
    rt.block_on(async {
        let options = NatsOptions::new(format!("bench-ob-{run}")).memory_storage();
        let nats = Nats::connect(&server.url, options).await.expect("connect");
        let started = Instant::now();
        let bus = Bus::builder()
            .no_handlers()
            .store(SqliteStore::open_with(&path, Synchronous::Normal).expect("store"))
            .transport(nats)
            .outbox(outbox_options())
            .build()
            .expect("bus");
        bus.drain_outbox(Duration::from_millis(2))
            .await
            .expect("drain");
        let elapsed = started.elapsed();
        let status = bus.outbox().expect("outbox").expect("status");
        assert_eq!(status.forwarded, backlog, "every entry forwarded once");
        Forwarded {
            events_per_sec: backlog as f64 / elapsed.as_secs_f64(),
        }
    })
}

/// (b) raw `async-nats`: the same number of CloudEvents (the bytes `events` sends, each with
/// its `Nats-Msg-Id`), published from memory in rounds of 512, every message of a round
/// written before its acks are awaited: the forwarder's pattern, without a store.
pub fn raw_forward(server: &Server, run: u32, backlog: u64) -> Forwarded {
    runtime().block_on(async {
        let client = async_nats::connect(&server.url).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        let prefix = format!("bench-rawob-{run}");
        js.get_or_create_stream(async_nats::jetstream::stream::Config {
            name: format!("BENCH_RAWOB_{run}"),
            subjects: vec![format!("{prefix}.>")],
            storage: async_nats::jetstream::stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .expect("stream");
        let subject = format!("{prefix}.bench.tick_outbox");
        let messages: Vec<(String, Vec<u8>)> = (0..backlog)
            .map(|seq| {
                let id = events::EventId::new().to_string();
                let body = serde_json::to_vec(&serde_json::json!({
                    "specversion": "1.0",
                    "id": id,
                    "source": "compare",
                    "type": "bench.tick_outbox",
                    "time": "2026-12-07T00:00:00.000000000Z",
                    "datacontenttype": "application/json",
                    "dataschema": "urn:events:schema:bench.tick_outbox:v1",
                    "eventversion": 1,
                    "correlationid": id,
                    "data": {"seq": seq, "amount": 1},
                }))
                .expect("json");
                (id, body)
            })
            .collect();
        let started = Instant::now();
        for round in messages.chunks(512) {
            let mut acks = Vec::with_capacity(round.len());
            for (id, body) in round {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
                acks.push(
                    js.publish_with_headers(subject.clone(), headers, body.clone().into())
                        .await
                        .expect("publish"),
                );
            }
            for ack in acks {
                ack.await.expect("ack");
            }
        }
        Forwarded {
            events_per_sec: backlog as f64 / started.elapsed().as_secs_f64(),
        }
    })
}

/// What (c) measured for one setting.
#[derive(Debug, Clone, Copy)]
pub struct Compression {
    /// Bytes JetStream stores per event (the stream's bytes over its messages).
    pub bytes_per_event: f64,
    /// Process CPU time (user + system) per event, published and consumed.
    pub cpu_per_event: Duration,
}

/// The process's CPU time so far (user + system), from `/proc/self/stat`.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux reports in clock ticks of 1/100 s (USER_HZ).
    Some(Duration::from_millis(ticks * 10))
}

/// (c) `count` 4 KB events published and consumed through NATS, compressed above 1 KiB or
/// not.
pub fn compression(server: &Server, run: u32, count: u64, compress: bool) -> Option<Compression> {
    let body: String = (0..4096)
        .map(|i| {
            // JSON-like text: keys and values that repeat, as documents do.
            const WORDS: &[&str] = &["\"order\":", "\"line\",", "{\"sku\":", "12345,", "true}"];
            WORDS[i % WORDS.len()]
        })
        .collect::<String>()
        .chars()
        .take(4096)
        .collect();
    runtime().block_on(async {
        let prefix = format!("bench-z{}-{run}", u8::from(compress));
        let mut options = NatsOptions::new(prefix.clone()).memory_storage();
        if compress {
            options = options.compress_above(1024);
        }
        let nats = Nats::connect(&server.url, options).await.expect("connect");
        let bus = Bus::builder()
            .scope(module_path!())
            .transport(nats)
            .build()
            .expect("bus");
        let _consumers = bus.consume().await.expect("consumers");
        let start = DOCUMENTS.load(Ordering::Relaxed);
        let before = cpu_time()?;
        for chunk in (0..count).collect::<Vec<_>>().chunks(256) {
            let batch = chunk.iter().map(|&seq| Document {
                seq,
                body: body.clone(),
            });
            for r in bus.publish_batch(batch).await {
                r.expect("publish");
            }
        }
        while DOCUMENTS.load(Ordering::Relaxed) < start + count {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let cpu = cpu_time()? - before;
        let client = async_nats::connect(&server.url).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        let stream_name = NatsOptions::new(prefix).stream_name().to_owned();
        let mut stream = js.get_stream(stream_name).await.expect("stream");
        let info = stream.info().await.expect("info");
        let state = &info.state;
        Some(Compression {
            bytes_per_event: state.bytes as f64 / state.messages.max(1) as f64,
            cpu_per_event: cpu / count as u32,
        })
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
