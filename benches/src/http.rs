//! Workload (14): HTTP ingest of one validated event per request. `events`: `POST
//! /events/{name}/1` on [`events::http::router`], which checks the body against the event's
//! schema, deserializes it and publishes it to one sync handler before answering 202. The
//! floor: a bare axum handler on the same server stack that only parses the same JSON into
//! the same type (`axum::Json<T>`) and answers 202. The load generator is in process:
//! `clients` threads, each on one keep-alive connection, sending requests one after the
//! other (HTTP/1.1 written and read by hand, so the client costs the same on both sides).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use events::{Bus, Event, handler};

#[derive(Event, Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "bench.http.order")]
pub struct HttpOrder {
    pub order_id: u64,
    pub customer: String,
    pub amount: u64,
}

pub static HTTP_HANDLED: AtomicU64 = AtomicU64::new(0);

#[handler]
fn http_order(ev: &HttpOrder) {
    crate::handle(&HTTP_HANDLED, ev.amount);
}

/// One measurement.
#[derive(Debug, Clone, Copy)]
pub struct Http {
    pub requests_per_sec: f64,
    /// `(p50, p99)` of one request, from writing it to reading its answer.
    pub latency: (Duration, Duration),
}

const BODY: &str = r#"{"order_id":7,"customer":"c-1042","amount":1999}"#;

/// Serves `which` ("events" or "floor") on a free port, on a runtime of its own; the port.
fn serve(which: &'static str) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app =
                match which {
                    "events" => {
                        let bus = Bus::builder().no_retries().build().unwrap();
                        events::http::router(bus, events::http::HttpOptions::new())
                    }
                    _ => events::http::axum::Router::new().route(
                        "/floor",
                        events::http::axum::routing::post(
                            |events::http::axum::Json(order): events::http::axum::Json<
                                HttpOrder,
                            >| async move {
                                std::hint::black_box(order);
                                events::http::axum::http::StatusCode::ACCEPTED
                            },
                        ),
                    ),
                };
            events::http::axum::serve(listener, app).await.unwrap();
        });
    });
    port
}

/// Sends `per` requests from each of `clients` threads; throughput and latency.
fn load(port: u16, path: &str, clients: usize, per: usize) -> Http {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let request = request.clone();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                stream.set_nodelay(true).unwrap();
                let mut latencies = Vec::with_capacity(per);
                let mut buf = vec![0u8; 4096];
                for _ in 0..per {
                    let sent = Instant::now();
                    stream.write_all(request.as_bytes()).unwrap();
                    read_answer(&mut stream, &mut buf);
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let elapsed = start.elapsed();
    all.sort();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Http {
        requests_per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        latency: (at(0.5), at(0.99)),
    }
}

/// Reads one answer: its head, then `Content-Length` bytes. Panics on anything but 202.
fn read_answer(stream: &mut TcpStream, buf: &mut [u8]) {
    let mut got = 0;
    let head_end = loop {
        let n = stream.read(&mut buf[got..]).unwrap();
        assert!(n > 0, "the server closed the connection");
        got += n;
        if let Some(at) = buf[..got].windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = std::str::from_utf8(&buf[..head_end]).unwrap();
    assert!(head.starts_with("HTTP/1.1 202"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while got < head_end + length {
        let n = stream.read(&mut buf[got..]).unwrap();
        assert!(n > 0, "the server closed the connection");
        got += n;
    }
}

/// `(events, floor)`, each the median by throughput of `runs` runs, alternated.
pub fn compare(runs: u32, clients: usize, per: usize) -> (Http, Http) {
    let ours = serve("events");
    let floor = serve("floor");
    // Warm both (connections, the schema's validator).
    load(ours, "/events/bench.http.order/1", clients, 200);
    load(floor, "/floor", clients, 200);
    let (mut a, mut b): (Vec<Http>, Vec<Http>) = (0..runs)
        .map(|_| {
            (
                load(ours, "/events/bench.http.order/1", clients, per),
                load(floor, "/floor", clients, per),
            )
        })
        .unzip();
    let pick = |v: &mut Vec<Http>| {
        v.sort_by(|x, y| x.requests_per_sec.total_cmp(&y.requests_per_sec));
        v[v.len() / 2]
    };
    (pick(&mut a), pick(&mut b))
}
