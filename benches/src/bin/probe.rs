//! Profiling aid: runs one cell of the comparison for a while and prints ns per event.
//!
//! `cargo run --release -p events-benches --bin probe -- fanout10 [iterations] [rounds] [peer]`;
//! under `valgrind --tool=cachegrind` it gives instruction counts, which the VM's timer
//! noise does not move.
fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "sync1".into());
    let iters: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5_000_000);
    let rounds: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let peer = args.next().unwrap_or_else(|| "events".into());
    let Some(peer) = events_benches::Peer::ALL
        .into_iter()
        .find(|p| p.id() == peer)
    else {
        eprintln!("unknown peer `{peer}`");
        std::process::exit(2);
    };
    let Some(w) = events_benches::Workload::ALL
        .into_iter()
        .find(|w| w.id() == which)
    else {
        eprintln!("unknown workload `{which}`");
        std::process::exit(2);
    };
    let mut run = match events_benches::runner(w, peer) {
        Ok(r) => r,
        Err(why) => {
            eprintln!("{why}");
            std::process::exit(2);
        }
    };
    for _ in 0..rounds {
        let d = run(iters);
        println!("{which}: {:.1} ns", d.as_nanos() as f64 / iters as f64);
    }
}
