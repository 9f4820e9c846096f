//! Workload (6): peak memory per 1M queued events. Each peer runs in its own process (the
//! comparison runner re-runs itself with `--memory PEER`), queues 1M events that nothing
//! consumes yet, and reports how far its peak resident memory rose above where it stood
//! before the queue was created.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::{Peer, TickQueued, messagebus_with};

pub const EVENTS: u64 = 1_000_000;

/// `VmRSS` and `VmHWM` of this process, in bytes.
fn rss_and_peak() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Queues [`EVENTS`] events with `peer` and returns the peak memory added, in bytes.
pub fn measure(peer: Peer) -> Result<u64, &'static str> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (before, _) = rss_and_peak();
    // On a current-thread runtime nothing consumes until this task yields, so every event
    // stays queued until the measurement.
    rt.block_on(async {
        match peer {
            Peer::Events => {
                let bus = events::Bus::builder()
                    .queue_capacity(EVENTS as usize)
                    .workers(1)
                    .build()
                    .expect("bus");
                for i in 0..EVENTS {
                    bus.try_emit(TickQueued::new(i)).expect("queue has room");
                }
                assert_eq!(bus.queue_len() as u64, EVENTS);
                Ok(peak_since(before))
            }
            Peer::Mpsc => {
                let (tx, _rx) = tokio::sync::mpsc::channel(EVENTS as usize);
                for i in 0..EVENTS {
                    tx.try_send(TickQueued::new(i)).expect("room");
                }
                Ok(peak_since(before))
            }
            Peer::Flume => {
                let (tx, _rx) = flume::bounded(EVENTS as usize);
                for i in 0..EVENTS {
                    tx.try_send(TickQueued::new(i)).expect("room");
                }
                Ok(peak_since(before))
            }
            Peer::Broadcast => {
                let (tx, _rx) = tokio::sync::broadcast::channel(EVENTS as usize);
                for i in 0..EVENTS {
                    tx.send(TickQueued::new(i)).expect("receiver");
                }
                Ok(peak_since(before))
            }
            Peer::Jaeb => {
                let bus = jaeb::EventBus::builder().build().await.expect("jaeb");
                let _keep = bus
                    .subscribe::<TickQueued, _, _>(|ev: TickQueued, _: jaeb::EventBus| async move {
                        std::hint::black_box(ev);
                        Ok(())
                    })
                    .await
                    .expect("subscribe");
                for i in 0..EVENTS {
                    bus.publish(TickQueued::new(i)).await.expect("publish");
                }
                Ok(peak_since(before))
            }
            Peer::Messagebus => {
                let bus =
                    messagebus_with::<TickQueued>(EVENTS as usize, Arc::new(AtomicU64::new(0)))
                        .await;
                for i in 0..EVENTS {
                    bus.send(TickQueued::new(i)).await.expect("send");
                }
                Ok(peak_since(before))
            }
            Peer::Floor | Peer::SpawnJoin => Err("n/a: no queue"),
        }
    })
}

fn peak_since(before: u64) -> u64 {
    rss_and_peak().1.saturating_sub(before)
}
