//! Dynamic subscriptions beside link-time handlers.

#![allow(unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use events::{Bus, Event, Outcome, SubscribeOptions, handler};

#[derive(Event, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Tick(u32);

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Other;

#[handler(name = "m.static", priority = 1)]
fn static_tick(_: &Tick) {}

fn bus() -> Bus {
    Bus::builder().build().unwrap()
}

#[test]
fn a_subscription_receives_until_dropped() {
    let bus = bus();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let sub = bus.subscribe(move |t: &Tick, _ctx: &events::Context| s.lock().unwrap().push(t.0));
    assert!(sub.is_active());
    assert_eq!(bus.handler_count::<Tick>(), 2);
    bus.publish_blocking(Tick(1)).unwrap();
    bus.publish_blocking(Other).unwrap();
    drop(sub);
    assert_eq!(bus.handler_count::<Tick>(), 1);
    bus.publish_blocking(Tick(2)).unwrap();
    assert_eq!(*seen.lock().unwrap(), [1]);
}

#[test]
fn unsubscribe_and_detach() {
    let bus = bus();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let sub = bus.subscribe(move |_: &Tick, _: &events::Context| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    sub.unsubscribe();
    bus.publish_blocking(Tick(0)).unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 0);

    let c = count.clone();
    bus.subscribe(move |_: &Tick, _: &events::Context| {
        c.fetch_add(1, Ordering::SeqCst);
    })
    .detach();
    bus.publish_blocking(Tick(0)).unwrap();
    bus.publish_blocking(Tick(0)).unwrap();
    assert_eq!(
        count.load(Ordering::SeqCst),
        2,
        "a detached subscription stays"
    );
}

#[test]
fn subscriptions_and_handlers_share_one_order() {
    let bus = bus();
    let _first = bus.subscribe(|_: &Tick, _: &events::Context| {});
    let _urgent = bus.subscribe_with(
        SubscribeOptions::new().name("urgent").priority(5),
        |_: &Tick, _: &events::Context| {},
    );
    let _second = bus.subscribe(|_: &Tick, _: &events::Context| {});
    let _named = bus.subscribe_with(
        SubscribeOptions::new().name("a.named"),
        |_: &Tick, _: &events::Context| {},
    );
    assert_eq!(
        bus.handler_names::<Tick>(),
        [
            "urgent",
            "m.static",
            "a.named",
            "subscription",
            "subscription"
        ]
    );
    let receipt = bus.publish_blocking(Tick(3)).unwrap();
    let order: Vec<&str> = receipt.outcomes().map(|o| o.handler).collect();
    assert_eq!(
        order,
        [
            "urgent",
            "m.static",
            "a.named",
            "subscription",
            "subscription"
        ]
    );
}

#[test]
fn a_subscription_error_or_panic_is_isolated() {
    let bus = bus();
    let _a = bus.subscribe_with(
        SubscribeOptions::new().name("fails"),
        |_: &Tick, _: &events::Context| -> Result<(), String> { Err("nope".into()) },
    );
    let _b = bus.subscribe_with(
        SubscribeOptions::new().name("panics"),
        |_: &Tick, _: &events::Context| -> () { panic!("sub boom") },
    );
    let r = bus.publish_blocking(Tick(1)).unwrap();
    assert!(matches!(r.outcome("fails"), Some(Outcome::Failed(e)) if e.to_string() == "nope"));
    assert!(matches!(r.outcome("panics"), Some(Outcome::Panicked(m)) if m == "sub boom"));
    assert!(matches!(r.outcome("m.static"), Some(Outcome::Delivered)));
}

#[test]
fn subscription_changes_do_not_disturb_concurrent_publishers() {
    let bus = bus();
    let delivered = Arc::new(AtomicUsize::new(0));
    let d = delivered.clone();
    let _always = bus.subscribe_with(
        SubscribeOptions::new().name("always"),
        move |_: &Tick, _: &events::Context| {
            d.fetch_add(1, Ordering::Relaxed);
        },
    );
    std::thread::scope(|s| {
        for _ in 0..2 {
            let bus = bus.clone();
            s.spawn(move || {
                for i in 0..20_000 {
                    let r = bus.publish_blocking(Tick(i)).unwrap();
                    assert!(r.is_ok());
                    assert!(r.handler_count() >= 2);
                }
            });
        }
        let bus = bus.clone();
        s.spawn(move || {
            for _ in 0..500 {
                let sub = bus.subscribe(|_: &Tick, _: &events::Context| {});
                drop(sub);
            }
        });
    });
    assert_eq!(
        delivered.load(Ordering::Relaxed),
        40_000,
        "no publish missed a stable subscriber"
    );
    assert_eq!(bus.handler_count::<Tick>(), 2);
}

#[test]
fn a_subscription_outliving_its_bus_is_harmless() {
    let bus = bus();
    let sub = bus.subscribe(|_: &Tick, _: &events::Context| {});
    drop(bus);
    assert!(!sub.is_active());
    drop(sub);
}

#[test]
fn a_paused_subscription_receives_nothing_until_resumed() {
    let bus = bus();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let sub = bus.subscribe_with(
        SubscribeOptions::new().name("pausable"),
        move |t: &Tick, _: &events::Context| s.lock().unwrap().push(t.0),
    );
    bus.publish_blocking(Tick(1)).unwrap();
    sub.pause();
    assert!(sub.is_paused());
    let r = bus.publish_blocking(Tick(2)).unwrap();
    assert!(matches!(r.outcome("pausable"), Some(Outcome::Paused)));
    assert!(
        matches!(r.outcome("m.static"), Some(Outcome::Delivered)),
        "others still run"
    );
    sub.resume();
    bus.publish_blocking(Tick(3)).unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [1, 3],
        "nothing while paused, and nothing kept for later"
    );
}

#[test]
fn the_bus_lists_its_subscriptions() {
    let bus = bus();
    assert!(bus.subscriptions().is_empty());
    let a = bus.subscribe_with(
        SubscribeOptions::new().name("a").priority(3),
        |_: &Tick, _: &events::Context| {},
    );
    let b = bus.subscribe(|_: &Other, _: &events::Context| {});
    b.pause();
    let list = bus.subscriptions();
    assert_eq!(list.len(), 2);
    assert_eq!(
        (
            list[0].id,
            list[0].name.as_str(),
            list[0].event.as_str(),
            list[0].priority,
            list[0].paused
        ),
        (a.id(), "a", "tick", 3, false)
    );
    assert_eq!(
        (
            list[1].id,
            list[1].name.as_str(),
            list[1].event.as_str(),
            list[1].paused
        ),
        (b.id(), "subscription", "other", true)
    );
    drop(a);
    assert_eq!(bus.subscriptions().len(), 1);
}

/// Subscriptions to other types leave a type on its link-time handlers (the fixed table:
/// its publishes cost the same however many there are); one to the type itself joins them
/// until it is dropped, also while the others stay.
#[test]
fn subscriptions_to_other_types_leave_a_type_on_its_link_time_handlers() {
    let bus = bus();
    let others: Vec<_> = (0..3)
        .map(|_| bus.subscribe(|_: &Other, _: &events::Context| {}))
        .collect();
    assert_eq!(bus.publish_blocking(Tick(1)).unwrap().handler_count(), 1);
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let sub = bus.subscribe(move |_: &Tick, _: &events::Context| {
        s.fetch_add(1, Ordering::SeqCst);
    });
    let receipt = bus.publish_blocking(Tick(2)).unwrap();
    assert_eq!((receipt.handler_count(), receipt.delivered()), (2, 2));
    drop(sub);
    assert_eq!(bus.publish_blocking(Tick(3)).unwrap().handler_count(), 1);
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert_eq!(bus.publish_blocking(Other).unwrap().handler_count(), 3);
    drop(others);
    assert_eq!(bus.publish_blocking(Other).unwrap().handler_count(), 0);
}
