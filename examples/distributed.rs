//! The same handlers across processes on NATS JetStream: this program starts two worker
//! processes (itself, with `worker a` and `worker b`), publishes orders from a third, and
//! prints who handled what. Every order is charged once (the two workers share the
//! `charge` handler's consumer) and audited once, and a shipment that the carrier refuses
//! ends in the dead-letter stream.
//!
//! ```sh
//! nats-server -js &                                   # or any NATS server with JetStream
//! cargo run --example distributed                     # NATS_URL defaults to 127.0.0.1:4222
//! ```

use std::process::{Command, Stdio};
use std::time::Duration;

use events::nats::{Nats, NatsOptions};
use events::{Bus, Context, Event, HandlerError, State, handler};

/// A customer placed an order.
#[derive(Event, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "order.placed")]
struct OrderPlaced {
    order: u64,
    total_cents: u64,
}

/// Which worker this is.
struct Worker(String);

/// Competing consumers: each order reaches one of the workers.
#[handler]
async fn charge(ev: &OrderPlaced, me: State<Worker>, ctx: &Context) -> Result<(), HandlerError> {
    if ev.order == 5 {
        return Err(HandlerError::permanent("card declined"));
    }
    println!(
        "worker {}: charged order {} ({:.2} EUR), attempt {}",
        me.0,
        ev.order,
        ev.total_cents as f64 / 100.0,
        ctx.attempt()
    );
    Ok(())
}

/// A second handler: every order reaches it too (fan-out), in one of the workers.
#[handler]
fn audit(ev: &OrderPlaced, me: State<Worker>) {
    println!("worker {}: audited order {}", me.0, ev.order);
}

fn url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".into())
}

/// A stream of its own per run (named after the producer's process id, which the workers
/// are given), so that runs do not see each other's orders.
fn options() -> NatsOptions {
    let run = std::env::var("EVENTS_RUN").unwrap_or_else(|_| std::process::id().to_string());
    NatsOptions::new(format!("demo-{run}")).memory_storage()
}

async fn bus(name: &str) -> Result<Bus, Box<dyn std::error::Error>> {
    let nats = Nats::connect(&url(), options()).await?;
    Ok(Bus::builder()
        .source("distributed-demo")
        .state(Worker(name.to_owned()))
        .transport(nats)
        .build()?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, role, name] = &args[..] {
        if role == "worker" {
            let bus = bus(name).await?;
            let _consumers = bus.consume().await?;
            // Handle until the producer stops us.
            tokio::time::sleep(Duration::from_secs(30)).await;
            return Ok(());
        }
    }

    let run = std::process::id().to_string();
    let me = std::env::current_exe()?;
    let mut workers = Vec::new();
    for name in ["a", "b"] {
        workers.push(
            Command::new(&me)
                .args(["worker", name])
                .env("EVENTS_RUN", &run)
                .env("NATS_URL", url())
                .stdout(Stdio::inherit())
                .spawn()?,
        );
    }
    // Give the workers a moment to bind their consumers (they would catch up anyway:
    // the consumers start from the beginning of the stream).
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The producer is a bus like the workers' (it runs no consumers).
    let producer = bus("producer").await?;
    for order in 1..=6 {
        let receipt = producer
            .publish(OrderPlaced {
                order,
                total_cents: 1000 * order,
            })
            .await?;
        println!(
            "producer: order {order} stored in JetStream as #{}",
            receipt.sequence().unwrap_or_default()
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for mut w in workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    println!("producer: done; order 5 was declined and is in the stream DEMO_{run}_DLQ");
    Ok(())
}
