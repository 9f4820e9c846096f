//! Workload (10): end to end through NATS JetStream, on a `nats-server -js` started for the
//! run (memory storage, its own port). `events`: publishers publish (each call resolves on
//! JetStream's ack), the bus's consumer delivers to one handler, which the run waits for.
//! Raw `async-nats`: the same bytes (the CloudEvent `events` sends) published with the same
//! `Nats-Msg-Id` header by the same number of tasks, consumed by one pull consumer that acks
//! each message. Throughput is events per second from the first publish to the last event
//! handled (acked); latency is one publish call, until its ack.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use events::nats::{Nats, NatsOptions};
use events::{Bus, Event, handler};
use futures_util::StreamExt;

#[derive(Event, Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "bench.tick_remote")]
pub struct TickRemote {
    pub seq: u64,
    pub amount: u64,
}

pub static REMOTE: AtomicU64 = AtomicU64::new(0);

#[handler]
fn tick_remote(ev: &TickRemote) {
    crate::handle(&REMOTE, ev.amount);
}

/// One measurement.
#[derive(Debug, Clone, Copy)]
pub struct Remote {
    pub events_per_sec: f64,
    /// `(p50, p99)` of one publish, until JetStream's ack.
    pub latency: (Duration, Duration),
}

/// A `nats-server -js` for one run; killed on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts one, or says why not (no `nats-server` on the machine).
    pub fn start() -> Result<Server, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("n/a: cannot start nats-server: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("n/a: nats-server did not start".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Server {
            child,
            url: format!("127.0.0.1:{port}"),
            _dir: dir,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `events`: `publishers` tasks publish `per` events each; one handler consumes them.
pub fn events_nats(server: &Server, run: u32, publishers: u64, per: u64) -> Remote {
    let total = publishers * per;
    runtime().block_on(async {
        let options = NatsOptions::new(format!("bench-ev-{run}")).memory_storage();
        let nats = Nats::connect(&server.url, options).await.expect("connect");
        let bus = Bus::builder()
            .scope(module_path!())
            .transport(nats)
            .build()
            .expect("bus");
        let _consumers = bus.consume().await.expect("consumers");
        let start_count = REMOTE.load(Ordering::Relaxed);
        let started = Instant::now();
        let latencies =
            crate::publish_concurrently(&bus, publishers, per, |seq| TickRemote { seq, amount: 1 })
                .await;
        while REMOTE.load(Ordering::Relaxed) - start_count < total {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        Remote {
            events_per_sec: total as f64 / started.elapsed().as_secs_f64(),
            latency: crate::percentiles(latencies),
        }
    })
}

/// Raw `async-nats`: the same bytes and header, the same publishers, one pull consumer.
pub fn raw_nats(server: &Server, run: u32, publishers: u64, per: u64) -> Remote {
    let total = publishers * per;
    runtime().block_on(async {
        let client = async_nats::connect(&server.url).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        let prefix = format!("bench-raw-{run}");
        let stream = js
            .get_or_create_stream(async_nats::jetstream::stream::Config {
                name: format!("BENCH_RAW_{run}"),
                subjects: vec![format!("{prefix}.>")],
                storage: async_nats::jetstream::stream::StorageType::Memory,
                ..Default::default()
            })
            .await
            .expect("stream");
        let consumer: async_nats::jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(
                "raw",
                async_nats::jetstream::consumer::pull::Config {
                    durable_name: Some("raw".into()),
                    ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
                    ..Default::default()
                },
            )
            .await
            .expect("consumer");
        // The bytes `events` sends for one event.
        let body = serde_json::to_vec(&serde_json::json!({
            "specversion": "1.0",
            "id": events::EventId::new().to_string(),
            "source": "compare",
            "type": "bench.tick_remote",
            "time": "2026-11-24T00:00:00.000000000Z",
            "datacontenttype": "application/json",
            "dataschema": "urn:events:schema:bench.tick_remote:v1",
            "eventversion": "1",
            "correlationid": events::EventId::new().to_string(),
            "data": {"seq": 0, "amount": 1},
        }))
        .expect("json");
        let handled = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&handled);
        let consuming = tokio::spawn(async move {
            let mut messages = consumer.messages().await.expect("messages");
            while let Some(Ok(m)) = messages.next().await {
                let _ = m.ack().await;
                if counter.fetch_add(1, Ordering::Relaxed) + 1 >= total {
                    break;
                }
            }
        });
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..publishers {
            let js = js.clone();
            let body = body.clone();
            let subject = format!("{prefix}.bench.tick_remote");
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per as usize);
                for _ in 0..per {
                    let t = Instant::now();
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert(
                        async_nats::header::NATS_MESSAGE_ID,
                        events::EventId::new().to_string().as_str(),
                    );
                    js.publish_with_headers(subject.clone(), headers, body.clone().into())
                        .await
                        .expect("publish")
                        .await
                        .expect("ack");
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await.expect("task"));
        }
        let _ = consuming.await;
        Remote {
            events_per_sec: total as f64 / started.elapsed().as_secs_f64(),
            latency: crate::percentiles(latencies),
        }
    })
}
