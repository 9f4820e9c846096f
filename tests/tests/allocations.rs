//! The typed path allocates nothing per sync handler, and for async handlers only the boxed
//! future. Counted with a global allocator, in its own binary so nothing else allocates
//! meanwhile: without libtest's harness (`harness = false`), whose main thread allocates
//! while a test runs (it did, now and then, under load) and dhat counts every thread.

use events::{Bus, Context, Event, Meta, State, handler};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Sync10(u64);

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Async3(u64);

struct Counter(std::sync::atomic::AtomicU64);

fn odd(ev: &Sync10, _: &Meta) -> bool {
    ev.0 % 2 == 1
}

macro_rules! sync_handlers {
    ($($name:ident),*) => {$(
        #[handler]
        fn $name(ev: &Sync10, ctx: &Context, c: State<Counter>) {
            c.0.fetch_add(ev.0 + u64::from(ctx.meta().depth()), std::sync::atomic::Ordering::Relaxed);
        }
    )*};
}
sync_handlers!(h1, h2, h3, h4, h5, h6, h7, h8, h9);

#[handler(filter = odd)]
fn h10(ev: &Sync10, c: State<Counter>) -> Result<(), events::HandlerError> {
    c.0.fetch_add(ev.0, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// A wildcard handler that does not ask for JSON: its presence costs no allocation.
#[handler(pattern = "sync10")]
fn wild(ev: &events::AnyEvent) {
    std::hint::black_box(ev.name());
}

#[handler]
async fn a1(ev: &Async3, c: State<Counter>) {
    c.0.fetch_add(ev.0, std::sync::atomic::Ordering::Relaxed);
}
#[handler]
async fn a2(ev: &Async3, _ctx: &Context) {
    std::hint::black_box(ev.0);
}
#[handler]
async fn a3(ev: &Async3) {
    std::hint::black_box(ev.0);
}

fn blocks() -> u64 {
    dhat::HeapStats::get().total_blocks
}

fn main() {
    typed_publish_allocates_nothing_for_sync_handlers_and_one_box_per_async_handler();
    println!("allocations: 1 passed, 0 failed");
}

fn typed_publish_allocates_nothing_for_sync_handlers_and_one_box_per_async_handler() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let bus = Bus::builder().state(Counter(0.into())).build().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(
        bus.handler_count::<Sync10>(),
        11,
        "10 typed handlers and the wildcard"
    );

    // Warm up per-thread state (id generator, arc-swap's debt list).
    let _ = bus.publish_blocking(Sync10(1)).unwrap();
    rt.block_on(async {
        let _ = bus.publish(Sync10(1)).await.unwrap();
        let _ = bus.publish(Async3(1)).await.unwrap();
    });

    let before = blocks();
    for i in 0..1_000 {
        let r = bus.publish_blocking(Sync10(i)).unwrap();
        assert_eq!(r.delivered(), if i % 2 == 1 { 11 } else { 10 });
    }
    assert_eq!(
        blocks() - before,
        0,
        "publish_blocking to 11 sync handlers allocated"
    );

    let before = blocks();
    rt.block_on(async {
        for i in 0..1_000 {
            let r = bus.publish(Sync10(i)).await.unwrap();
            assert!(r.is_ok());
        }
    });
    assert_eq!(
        blocks() - before,
        0,
        "publish().await to 11 sync handlers allocated"
    );

    let before = blocks();
    rt.block_on(async {
        for i in 0..1_000 {
            let r = bus.publish(Async3(i)).await.unwrap();
            assert!(r.is_ok());
        }
    });
    assert_eq!(
        blocks() - before,
        3 * 1_000,
        "one boxed future per async handler, nothing else"
    );
}
