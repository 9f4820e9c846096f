//! The criterion suite: every workload of the comparison, with `events` and each peer that
//! can express it, from the same runners as `src/bin/compare.rs`.
//!
//! ```sh
//! cargo bench -p events-benches                 # everything
//! cargo bench -p events-benches -- sync1/events # one cell
//! ```

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use events_benches::{Peer, Workload, runner};

fn workloads(c: &mut Criterion) {
    for workload in Workload::ALL {
        let mut group = c.benchmark_group(workload.id());
        group.throughput(Throughput::Elements(1));
        if workload == Workload::Queued {
            group
                .sample_size(20)
                .measurement_time(Duration::from_secs(8));
        }
        for peer in Peer::ALL {
            let Ok(mut run) = runner(workload, peer) else {
                continue;
            };
            group.bench_function(peer.id(), |b| b.iter_custom(&mut run));
        }
        group.finish();
    }
}

criterion_group!(benches, workloads);
criterion_main!(benches);
