//! Background emission under backpressure: a producer much faster than its handlers, a
//! bounded queue that keeps memory flat, progress while it runs, then a graceful shutdown
//! and the metrics.
//!
//! ```sh
//! cargo run --example background
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use events::observe::{ErrorCollector, Metrics};
use events::{Bus, Event, HandlerError, handler};

/// A file was uploaded and needs a thumbnail.
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "upload.received")]
struct UploadReceived {
    id: u64,
    bytes: u64,
}

/// An upload was flagged by a moderator: jumps the queue.
#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "upload.flagged", priority = 10)]
struct UploadFlagged {
    id: u64,
}

static THUMBNAILS: AtomicU64 = AtomicU64::new(0);

/// Slow on purpose: 2 ms per upload.
#[handler]
async fn make_thumbnail(ev: &UploadReceived) -> Result<(), HandlerError> {
    tokio::time::sleep(Duration::from_millis(2)).await;
    if ev.id % 500 == 499 {
        return Err(HandlerError::transient(format!(
            "thumbnail service timed out for {}",
            ev.id
        )));
    }
    THUMBNAILS.fetch_add(ev.bytes.min(1), Ordering::Relaxed);
    Ok(())
}

#[handler]
fn review(ev: &UploadFlagged) {
    println!(
        "  [review] upload {} flagged, handled ahead of the queue",
        ev.id
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let metrics = Metrics::new();
    let errors = ErrorCollector::new(10);
    let capacity = 64;
    let bus = Bus::builder()
        .queue_capacity(capacity)
        .workers(4)
        .observer(metrics.clone())
        .observer(errors.clone())
        .build()?;

    let total = 2_000u64;
    println!("Emitting {total} uploads into a queue of {capacity}; each takes 2 ms to handle.");
    let started = Instant::now();
    let mut deepest = 0;
    for id in 0..total {
        // Waits while the queue is full: the producer slows to the handlers' pace.
        bus.emit(UploadReceived {
            id,
            bytes: 1024 + id,
        })
        .await?;
        deepest = deepest.max(bus.queue_len());
        if id == 1_000 {
            bus.emit(UploadFlagged { id }).await?;
        }
        if (id + 1) % 400 == 0 {
            println!(
                "  emitted {:>5}  queue {:>3}/{capacity}  handled {:>5}  {:>5.0} ms",
                id + 1,
                bus.queue_len(),
                THUMBNAILS.load(Ordering::Relaxed),
                started.elapsed().as_secs_f64() * 1e3,
            );
        }
    }
    println!(
        "Producer done after {:.0} ms; the queue never held more than {deepest} events.",
        started.elapsed().as_secs_f64() * 1e3
    );

    let report = bus.shutdown(Duration::from_secs(30)).await;
    println!(
        "Shutdown: drained {} events, {} left unhandled, {} still running.",
        report.drained,
        report.unprocessed.len(),
        report.still_running
    );

    let snapshot = metrics.snapshot(&bus);
    println!("\nMetrics:");
    for (event, s) in &snapshot.events {
        println!(
            "  {event:<16} published {:>5}  delivered {:>5}  failed {:>3}  rejected {}",
            s.published, s.delivered, s.failed, s.rejected
        );
    }
    for (handler, h) in &snapshot.handlers {
        println!(
            "  {handler:<32} calls {:>5}  failures {:>3}  p50 <= {:?}  p99 <= {:?}",
            h.calls,
            h.failures,
            h.latency.quantile(0.5).unwrap_or_default(),
            h.latency.quantile(0.99).unwrap_or_default(),
        );
    }
    println!("\nLast errors:");
    for e in errors.errors() {
        println!("  {} {} -> {}", e.event, e.handler, e.message);
    }
    Ok(())
}
