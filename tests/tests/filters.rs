//! Composable filters: each part, the combinators, on dynamic subscriptions and on
//! link-time handlers.

#![allow(unreachable_pub)]

use std::sync::{Arc, Mutex};

use events::{
    AnyEvent, Bus, Context, Event, Filter, Meta, Outcome, PublishOptions, SubscribeOptions, handler,
};

#[derive(Event, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "order.placed", priority = 5)]
struct OrderPlaced {
    cents: u64,
}

#[derive(Event, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "order.shipped")]
struct OrderShipped;

#[derive(Event, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "user.signed-up")]
struct SignedUp;

/// What the link-time handlers below saw, by handler.
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn billing() -> Filter {
    Filter::target("billing") | Filter::untargeted()
}

#[handler(name = "billing.charge", filter = billing())]
fn charge(ev: &OrderPlaced) {
    SEEN.lock().unwrap().push(format!("charge {}", ev.cents));
}

#[handler(
    name = "billing.big",
    filter = Filter::event::<OrderPlaced>(|o, _| o.cents >= 100) & !Filter::source("load-test")
)]
fn big(ev: &OrderPlaced) {
    SEEN.lock().unwrap().push(format!("big {}", ev.cents));
}

#[handler(name = "audit.tenant", filter = |_: &AnyEvent, m: &Meta| m.metadata().contains_key("tenant"))]
fn audit(ev: &AnyEvent, ctx: &Context) {
    let tenant = &ctx.meta().metadata()["tenant"];
    SEEN.lock()
        .unwrap()
        .push(format!("audit {} {tenant}", ev.name()));
}

fn meta_of(bus: &Bus, options: PublishOptions) -> (Meta, OrderPlaced) {
    let got = Arc::new(Mutex::new(None));
    let g = got.clone();
    let sub = bus.subscribe(move |_: &OrderPlaced, ctx: &Context| {
        *g.lock().unwrap() = Some(ctx.meta().clone());
    });
    bus.publish_blocking_with(OrderPlaced { cents: 1 }, options)
        .unwrap();
    drop(sub);
    let meta = got.lock().unwrap().take().unwrap();
    (meta, OrderPlaced { cents: 1 })
}

/// A bus with this file's handlers; only one test publishes on one, since they record
/// into one static.
fn bus() -> Bus {
    Bus::builder()
        .source("shop")
        .scope(module_path!())
        .build()
        .unwrap()
}

/// A bus with no link-time handlers.
fn bare() -> Bus {
    Bus::builder().source("shop").no_handlers().build().unwrap()
}

#[test]
fn each_part_reads_its_field_of_the_envelope() {
    let bus = bare();
    let (plain, ev) = meta_of(&bus, PublishOptions::new());
    let (tagged, _) = meta_of(
        &bus,
        PublishOptions::new()
            .target("billing")
            .source("backoffice")
            .priority(9)
            .metadata("tenant", "acme"),
    );
    let check = |f: &Filter, m: &Meta| f.matches(&ev, m);

    assert!(check(&Filter::source("shop"), &plain));
    assert!(!check(&Filter::source("shop"), &tagged));
    assert!(check(&Filter::source("backoffice"), &tagged));

    assert!(check(&Filter::untargeted(), &plain));
    assert!(!check(&Filter::target("billing"), &plain));
    assert!(check(&Filter::target("billing"), &tagged));
    assert!(!check(&Filter::target("shipping"), &tagged));

    // The event type's priority is 5; the publisher raised it to 9.
    assert!(check(&Filter::priority(5..=5), &plain));
    assert!(!check(&Filter::priority(6..), &plain));
    assert!(check(&Filter::priority(6..), &tagged));
    assert!(!check(&Filter::priority(..9), &tagged));

    assert!(check(&Filter::name("order.*").unwrap(), &plain));
    assert!(check(&Filter::name(">").unwrap(), &plain));
    assert!(!check(&Filter::name("user.>").unwrap(), &plain));

    assert!(check(&Filter::metadata("tenant", "acme"), &tagged));
    assert!(!check(&Filter::metadata("tenant", "other"), &tagged));
    assert!(!check(&Filter::metadata("tenant", "acme"), &plain));

    let typed = Filter::event::<OrderPlaced>(|o, _| o.cents == 1);
    assert!(check(&typed, &plain));
    assert!(
        !typed.matches(&SignedUp, &plain),
        "another type never passes a typed filter"
    );
    assert!(check(
        &Filter::custom(|ev, m| ev.name() == m.name()),
        &plain
    ));
}

#[test]
fn combinators_follow_boolean_logic() {
    let bus = bare();
    let (m, ev) = meta_of(&bus, PublishOptions::new().target("billing"));
    let yes = || Filter::target("billing");
    let no = || Filter::untargeted();
    let check = |f: Filter| f.matches(&ev, &m);

    assert!(check(yes() & yes()));
    assert!(!check(yes() & no()));
    assert!(check(yes() | no()));
    assert!(!check(no() | no()));
    assert!(check(!no()));
    assert!(!check(!yes()));
    assert!(check(Filter::all([])), "all of nothing is true");
    assert!(!check(Filter::any([])), "any of nothing is false");
    assert!(check(Filter::all([yes(), !no(), yes() | no()])));
    assert!(!check(Filter::any([no(), !yes()])));
    assert!(check(no().or(yes()).and(yes())));
}

#[test]
fn filters_stop_at_the_first_decisive_part() {
    let bus = bare();
    let (m, ev) = meta_of(&bus, PublishOptions::new());
    let calls = Arc::new(Mutex::new(0));
    let counting = |answer: bool| {
        let c = calls.clone();
        Filter::custom(move |_, _| {
            *c.lock().unwrap() += 1;
            answer
        })
    };
    assert!(!(counting(false) & counting(true)).matches(&ev, &m));
    assert!((counting(true) | counting(false)).matches(&ev, &m));
    assert_eq!(*calls.lock().unwrap(), 2);
}

#[test]
fn filters_print_as_they_read() {
    let f = (Filter::target("billing") | Filter::untargeted())
        & Filter::priority(1..10)
        & !Filter::metadata("tenant", "test")
        & Filter::name("order.>").unwrap()
        & Filter::event::<OrderPlaced>(|_, _| true);
    assert_eq!(
        f.to_string(),
        r#"all(any(target == "billing", untargeted), priority in 1..10, not(metadata["tenant"] == "test"), name ~ "order.>", event(order.placed, ..))"#
    );
    assert_eq!(
        format!("{:?}", Filter::priority(..=0)),
        "Filter(priority in ..=0)"
    );
}

#[test]
fn an_invalid_name_pattern_is_an_error() {
    let err = Filter::name("Order.*").unwrap_err();
    assert!(err.to_string().contains("`Order.*`"), "{err}");
}

#[test]
fn handler_filters_accept_filters_functions_and_closures() {
    let bus = bus();
    let take = || std::mem::take(&mut *SEEN.lock().unwrap());
    take();

    let receipt = bus.publish_blocking(OrderPlaced { cents: 150 }).unwrap();
    assert_eq!(take(), ["big 150", "charge 150"]);
    assert!(matches!(
        receipt.outcome("audit.tenant"),
        Some(Outcome::Filtered)
    ));

    let to_shipping = PublishOptions::new().target("shipping");
    bus.publish_blocking_with(OrderPlaced { cents: 150 }, to_shipping)
        .unwrap();
    assert_eq!(take(), ["big 150"], "charge only takes billing's events");

    let load = PublishOptions::new()
        .source("load-test")
        .target("billing")
        .metadata("tenant", "acme");
    bus.publish_blocking_with(OrderPlaced { cents: 150 }, load)
        .unwrap();
    assert_eq!(take(), ["audit order.placed acme", "charge 150"]);

    bus.publish_blocking_with(SignedUp, PublishOptions::new().metadata("tenant", "t1"))
        .unwrap();
    assert_eq!(take(), ["audit user.signed-up t1"]);
}

#[test]
fn subscriptions_take_a_filter_and_list_it() {
    let bus = bare();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let sub = bus
        .subscribe_pattern_with(
            SubscribeOptions::new()
                .name("vip")
                .filter(Filter::metadata("tier", "vip") & !Filter::name("order.shipped").unwrap()),
            "order.>",
            move |ev: &AnyEvent, _: &Context| s.lock().unwrap().push(ev.name()),
        )
        .unwrap();

    let vip = || PublishOptions::new().metadata("tier", "vip");
    let r = bus.publish_blocking(OrderPlaced { cents: 1 }).unwrap();
    assert!(matches!(r.outcome("vip"), Some(Outcome::Filtered)));
    bus.publish_blocking_with(OrderPlaced { cents: 1 }, vip())
        .unwrap();
    bus.publish_blocking_with(OrderShipped, vip()).unwrap();
    bus.publish_blocking_with(SignedUp, vip()).unwrap();
    assert_eq!(*seen.lock().unwrap(), ["order.placed"]);

    let listed = bus.subscriptions();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].filter.as_deref(),
        Some(r#"all(metadata["tier"] == "vip", not(name ~ "order.shipped"))"#)
    );
    drop(sub);

    let typed = bus.subscribe_with(
        SubscribeOptions::new().filter(Filter::event::<OrderPlaced>(|o, _| o.cents > 10)),
        {
            let seen = seen.clone();
            move |o: &OrderPlaced, _: &Context| {
                seen.lock()
                    .unwrap()
                    .push(if o.cents > 10 { "big" } else { "small" })
            }
        },
    );
    bus.publish_blocking(OrderPlaced { cents: 5 }).unwrap();
    bus.publish_blocking(OrderPlaced { cents: 50 }).unwrap();
    assert_eq!(*seen.lock().unwrap(), ["order.placed", "big"]);
    drop(typed);
}
