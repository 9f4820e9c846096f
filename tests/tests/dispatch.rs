//! Typed dispatch: order, sync and async handlers, state, filters, failure isolation,
//! receipts, envelopes and child events.

#![allow(unreachable_pub)]

use std::sync::{Arc, Mutex};

use events::{
    Bus, Context, Event, EventId, EventKind, HandlerError, Meta, Outcome, PublishError,
    PublishOptions, State, handler,
};

/// What handlers saw, per bus (state is per bus, so parallel tests do not mix).
#[derive(Default)]
struct Log(Mutex<Vec<String>>);

impl Log {
    fn push(&self, s: impl Into<String>) {
        self.0.lock().unwrap().push(s.into());
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[derive(Default)]
struct Metas(Mutex<Vec<Meta>>);

fn bus() -> (Bus, Arc<Log>, Arc<Metas>) {
    let log = Arc::new(Log::default());
    let metas = Arc::new(Metas::default());
    let bus = Bus::builder()
        .source("dispatch-tests")
        .shared_state(log.clone())
        .shared_state(metas.clone())
        .max_depth(5)
        .build()
        .unwrap();
    (bus, log, metas)
}

fn names(receipt: &events::Receipt) -> Vec<(String, String)> {
    receipt
        .outcomes()
        .map(|o| {
            (
                o.handler.rsplit("::").next().unwrap().to_owned(),
                o.outcome.to_string(),
            )
        })
        .collect()
}

mod order {
    use super::*;

    #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    pub struct Ordered;

    #[handler]
    fn b_plain(_: &Ordered, log: State<Log>) {
        log.push("b_plain");
    }
    #[handler]
    fn a_plain(_: &Ordered, log: State<Log>) {
        log.push("a_plain");
    }
    #[handler(priority = 5)]
    fn z_urgent(_: &Ordered, log: State<Log>) {
        log.push("z_urgent");
    }
    #[handler(priority = -1)]
    async fn a_late(_: &Ordered, log: State<Log>) {
        tokio::task::yield_now().await;
        log.push("a_late");
    }
    #[handler]
    async fn c_async(_: &Ordered, log: State<Log>) {
        tokio::task::yield_now().await;
        log.push("c_async");
    }
}

#[tokio::test]
async fn handlers_run_in_priority_then_name_order_sync_and_async_alike() {
    let (bus, log, _) = bus();
    let expected = ["z_urgent", "a_plain", "b_plain", "c_async", "a_late"];
    for _ in 0..3 {
        let receipt = bus.publish(order::Ordered).await.unwrap();
        assert_eq!(log.take(), expected);
        let seen: Vec<String> = names(&receipt).into_iter().map(|(n, _)| n).collect();
        assert_eq!(seen, expected);
        assert_eq!(receipt.delivered(), 5);
        assert!(receipt.is_ok());
    }
    let listed: Vec<String> = bus
        .handler_names::<order::Ordered>()
        .iter()
        .map(|n| n.rsplit("::").next().unwrap().to_owned())
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(bus.handler_count::<order::Ordered>(), 5);
}

#[test]
fn publish_blocking_runs_sync_handlers_and_reports_async_ones_as_skipped() {
    let (bus, log, _) = bus();
    let receipt = bus.publish_blocking(order::Ordered).unwrap();
    assert_eq!(log.take(), ["z_urgent", "a_plain", "b_plain"]);
    assert_eq!(receipt.delivered(), 3);
    assert!(matches!(
        receipt.outcome("dispatch::order::c_async"),
        Some(Outcome::SkippedAsync)
    ));
    assert!(matches!(
        receipt.outcome("dispatch::order::a_late"),
        Some(Outcome::SkippedAsync)
    ));
    assert!(receipt.is_ok(), "skipping is not a failure");
}

mod failures {
    use super::*;

    #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    pub struct Fragile;

    #[derive(Debug, thiserror::Error)]
    #[error("card declined")]
    pub struct Declined;

    #[handler(priority = 4)]
    fn a_fails(_: &Fragile) -> Result<(), Declined> {
        Err(Declined)
    }
    #[handler(priority = 3)]
    fn b_panics(_: &Fragile) {
        panic!("boom in a sync handler");
    }
    #[handler(priority = 2)]
    async fn c_async_panics(_: &Fragile) {
        tokio::task::yield_now().await;
        panic!("boom in an async handler");
    }
    #[handler(priority = 1)]
    async fn d_async_fails(_: &Fragile) -> Result<(), HandlerError> {
        Err(HandlerError::permanent("no such customer"))
    }
    #[handler(priority = 0)]
    fn e_still_runs(_: &Fragile, log: State<Log>) {
        log.push("e_still_runs");
    }
}

#[tokio::test]
async fn errors_and_panics_are_isolated_and_reported_in_the_receipt() {
    let (bus, log, _) = bus();
    let receipt = bus
        .publish(failures::Fragile)
        .await
        .expect("a failing handler is not a publish error");
    assert_eq!(
        log.take(),
        ["e_still_runs"],
        "handlers after the failures still ran"
    );
    assert_eq!(
        names(&receipt),
        [
            ("a_fails".into(), "failed: card declined".into()),
            ("b_panics".into(), "panicked: boom in a sync handler".into()),
            (
                "c_async_panics".into(),
                "panicked: boom in an async handler".into()
            ),
            ("d_async_fails".into(), "failed: no such customer".into()),
            ("e_still_runs".into(), "delivered".into()),
        ]
    );
    assert!(!receipt.is_ok());
    assert_eq!(receipt.failures().count(), 4);
    match receipt.outcome("dispatch::failures::a_fails") {
        Some(Outcome::Failed(e)) => {
            assert!(e.is_transient(), "errors converted with `?` are transient");
            assert!(e.downcast_ref::<failures::Declined>().is_some());
        }
        other => panic!("{other:?}"),
    }
    match receipt.outcome("dispatch::failures::d_async_fails") {
        Some(Outcome::Failed(e)) => assert!(!e.is_transient()),
        other => panic!("{other:?}"),
    }
    // The bus is still usable afterwards.
    assert_eq!(bus.publish(failures::Fragile).await.unwrap().delivered(), 1);
}

mod conversions {
    use super::*;

    #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    pub struct Convert {
        pub which: u8,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("io-ish")]
    pub struct Custom;

    fn anyhow_err() -> anyhow::Result<()> {
        anyhow::bail!("anyhow says no")
    }

    #[handler]
    fn by_question_mark(ev: &Convert) -> Result<(), HandlerError> {
        match ev.which {
            0 => anyhow_err()?,
            1 => Err(Custom)?,
            2 => Err(String::from("a String"))?,
            3 => Err("a str")?,
            4 => "x".parse::<u32>().map(drop)?,
            _ => {}
        }
        Ok(())
    }

    #[handler]
    fn returns_anyhow(ev: &Convert) -> anyhow::Result<()> {
        if ev.which == 9 {
            anyhow::bail!("straight anyhow");
        }
        Ok(())
    }
}

#[test]
fn any_error_converts_into_handler_error() {
    let (bus, _, _) = bus();
    let message = |which| {
        let r = bus
            .publish_blocking(conversions::Convert { which })
            .unwrap();
        r.failures()
            .map(|f| f.outcome.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(message(0), ["failed: anyhow says no"]);
    assert_eq!(message(1), ["failed: io-ish"]);
    assert_eq!(message(2), ["failed: a String"]);
    assert_eq!(message(3), ["failed: a str"]);
    assert_eq!(message(4), ["failed: invalid digit found in string"]);
    assert_eq!(message(5), Vec::<String>::new());
    assert_eq!(message(9), ["failed: straight anyhow"]);
}

mod filters {
    use super::*;

    #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    pub struct Payment {
        pub cents: u64,
    }

    pub fn large(ev: &Payment, _meta: &Meta) -> bool {
        ev.cents >= 10_000
    }

    pub fn from_backoffice(_: &Payment, meta: &Meta) -> bool {
        meta.source() == "backoffice"
    }

    #[handler(filter = large)]
    fn review(ev: &Payment, log: State<Log>) {
        log.push(format!("review {}", ev.cents));
    }

    #[handler(filter = from_backoffice)]
    fn audit(ev: &Payment, log: State<Log>) {
        log.push(format!("audit {}", ev.cents));
    }

    #[handler]
    fn record(ev: &Payment, log: State<Log>) {
        log.push(format!("record {}", ev.cents));
    }
}

#[test]
fn filters_decide_per_event_and_per_envelope() {
    let (bus, log, _) = bus();
    let small = bus.publish_blocking(filters::Payment { cents: 5 }).unwrap();
    assert_eq!(log.take(), ["record 5"]);
    assert!(matches!(
        small.outcome("dispatch::filters::review"),
        Some(Outcome::Filtered)
    ));
    assert!(matches!(
        small.outcome("dispatch::filters::audit"),
        Some(Outcome::Filtered)
    ));

    bus.publish_blocking(filters::Payment { cents: 20_000 })
        .unwrap();
    assert_eq!(
        log.take(),
        ["record 20000", "review 20000"],
        "audit wants the backoffice source"
    );

    let opts = PublishOptions::new().source("backoffice");
    bus.publish_blocking_with(filters::Payment { cents: 1 }, opts)
        .unwrap();
    assert_eq!(log.take(), ["audit 1", "record 1"]);
}

mod lineage {
    use super::*;

    #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    pub struct Root;
    #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    pub struct Child;
    #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    pub struct Grandchild;
    #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    pub struct Echo;

    #[handler]
    async fn on_root(_: &Root, ctx: &Context, metas: State<Metas>) -> Result<(), HandlerError> {
        metas.0.lock().unwrap().push(ctx.meta().clone());
        ctx.publish(Child).await?;
        Ok(())
    }
    // A sync handler publishing from a sync context.
    #[handler]
    fn on_child(_: &Child, ctx: &Context, metas: State<Metas>) -> Result<(), HandlerError> {
        metas.0.lock().unwrap().push(ctx.meta().clone());
        ctx.publish_blocking(Grandchild)?;
        Ok(())
    }
    #[handler]
    fn on_grandchild(_: &Grandchild, ctx: &Context, metas: State<Metas>) {
        metas.0.lock().unwrap().push(ctx.meta().clone());
    }

    /// Publishes itself forever: the depth limit stops it.
    #[handler]
    fn echo(_: &Echo, ctx: &Context, log: State<Log>) -> Result<(), HandlerError> {
        log.push(format!("depth {}", ctx.meta().depth()));
        match ctx.publish_blocking(Echo) {
            Ok(_) => Ok(()),
            Err(e) => {
                log.push(e.to_string());
                Err(e.into())
            }
        }
    }
}

#[tokio::test]
async fn child_events_keep_the_correlation_and_point_at_their_cause() {
    let (bus, _, metas) = bus();
    let receipt = bus.publish(lineage::Root).await.unwrap();
    assert!(receipt.is_ok());
    let m = std::mem::take(&mut *metas.0.lock().unwrap());
    assert_eq!(m.len(), 3);
    let (root, child, grandchild) = (&m[0], &m[1], &m[2]);

    assert_eq!(root.id(), receipt.event_id());
    assert_eq!(
        root.correlation_id(),
        root.id(),
        "a root event is its own correlation"
    );
    assert_eq!(root.causation_id(), None);
    assert_eq!(root.depth(), 0);
    assert_eq!(root.name(), "root");
    assert_eq!(root.source(), "dispatch-tests");

    assert_eq!(child.correlation_id(), root.id());
    assert_eq!(child.causation_id(), Some(root.id()));
    assert_eq!(child.depth(), 1);
    assert_eq!(child.name(), "child");

    assert_eq!(grandchild.correlation_id(), root.id());
    assert_eq!(grandchild.causation_id(), Some(child.id()));
    assert_eq!(grandchild.depth(), 2);

    assert!(
        root.id() < child.id() && child.id() < grandchild.id(),
        "ids are time-ordered"
    );
    assert!(root.time() <= child.time() && child.time() <= grandchild.time());
}

#[tokio::test]
async fn publish_options_set_correlation_source_and_metadata() {
    let (bus, _, metas) = bus();
    let flow = EventId::new();
    bus.publish_with(
        lineage::Root,
        PublishOptions::new()
            .correlation_id(flow)
            .source("checkout-api")
            .metadata("tenant", "acme"),
    )
    .await
    .unwrap();
    let m = std::mem::take(&mut *metas.0.lock().unwrap());
    assert_eq!(m[0].correlation_id(), flow);
    assert_eq!(m[0].source(), "checkout-api");
    assert_eq!(
        m[0].metadata()
            .get("tenant")
            .and_then(events::MetaValue::as_str),
        Some("acme")
    );
    assert_eq!(
        m[1].correlation_id(),
        flow,
        "children join the caller's flow"
    );
    assert_eq!(
        m[1].source(),
        "dispatch-tests",
        "children are published by this bus"
    );
}

#[test]
fn a_runaway_chain_of_child_events_stops_at_the_depth_limit() {
    let (bus, log, _) = bus();
    let receipt = bus.publish_blocking(lineage::Echo).unwrap();
    let lines = log.take();
    assert_eq!(
        &lines[..6],
        [
            "depth 0", "depth 1", "depth 2", "depth 3", "depth 4", "depth 5"
        ]
    );
    assert!(
        lines[6].contains("would be 6 generations below its root event (limit 5)"),
        "{}",
        lines[6]
    );
    assert!(
        receipt.is_ok(),
        "a child's failure stays in the child's receipt"
    );

    let too_deep = PublishError::TooDeep {
        name: "echo",
        depth: 6,
        limit: 5,
    };
    assert!(too_deep.to_string().contains("BusBuilder::max_depth"));
}

mod catalog {
    use super::*;

    /// A parcel left the warehouse.
    ///
    /// Sent once per parcel.
    #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[event(version = 3, kind = "notification", priority = 7)]
    pub struct ParcelShipped {
        /// The carrier's tracking number.
        pub tracking: String,
    }

    /// Cancel an order.
    #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[event(name = "orders.cancel", kind = "command")]
    pub enum CancelOrder {
        /// The customer asked.
        ByCustomer { order_id: u64 },
        /// Fraud was detected.
        Fraud(u64),
    }

    #[handler(name = "catalog.track", priority = 3, filter = any)]
    async fn track(_: &ParcelShipped, _ctx: &Context, _log: State<Log>) {}

    #[handler]
    fn cancel(ev: &CancelOrder, log: State<Log>) {
        match ev {
            CancelOrder::ByCustomer { order_id } => log.push(format!("customer {order_id}")),
            CancelOrder::Fraud(id) => log.push(format!("fraud {id}")),
        }
    }

    fn any(_: &ParcelShipped, _: &Meta) -> bool {
        true
    }
}

#[test]
fn derive_gives_name_version_kind_priority_and_schema() {
    use catalog::{CancelOrder, ParcelShipped};
    assert_eq!(ParcelShipped::NAME, "parcel.shipped");
    assert_eq!(ParcelShipped::VERSION, 3);
    assert_eq!(ParcelShipped::KIND, EventKind::Notification);
    assert_eq!(ParcelShipped::PRIORITY, 7);
    assert_eq!(CancelOrder::NAME, "orders.cancel");
    assert_eq!(CancelOrder::VERSION, 1);
    assert_eq!(CancelOrder::KIND, EventKind::Command);

    let info = ParcelShipped::info();
    assert_eq!(info.type_name(), "dispatch::catalog::ParcelShipped");
    assert_eq!(
        info.description(),
        Some("A parcel left the warehouse.\n\nSent once per parcel.")
    );
    assert_eq!(info.type_id(), std::any::TypeId::of::<ParcelShipped>());

    let schema = ParcelShipped::schema().as_value();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["type"], "object");
    assert_eq!(
        schema["properties"]["tracking"]["description"],
        "The carrier's tracking number."
    );
    assert_eq!(schema["required"], serde_json::json!(["tracking"]));
    assert!(
        std::ptr::eq(ParcelShipped::schema(), ParcelShipped::schema()),
        "computed once"
    );
    assert!(
        CancelOrder::schema().as_value()["oneOf"].is_array(),
        "enums get a schema too"
    );
}

#[test]
fn the_bus_lists_events_and_handlers() {
    let (bus, log, _) = bus();
    let shipped = bus
        .events()
        .iter()
        .find(|e| e.name() == "parcel.shipped")
        .unwrap();
    assert_eq!(
        (shipped.version(), shipped.kind(), shipped.priority()),
        (3, EventKind::Notification, 7)
    );
    let names: Vec<_> = bus
        .events()
        .iter()
        .map(|e| (e.name(), e.version()))
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "events are listed by name, then version");

    let track = bus
        .handlers()
        .iter()
        .find(|h| h.name() == "catalog.track")
        .unwrap();
    assert_eq!(track.event().unwrap().name(), "parcel.shipped");
    assert_eq!(track.priority(), 3);
    assert!(track.is_async());
    assert!(track.has_filter());
    assert_eq!(track.module(), "dispatch::catalog");
    assert!(track.location().0.ends_with("dispatch.rs"));
    let states: Vec<_> = track.states().map(|s| s.type_name()).collect();
    assert_eq!(states, ["dispatch::Log"]);
    let written: Vec<_> = track.states().map(|s| s.written()).collect();
    assert_eq!(written, ["Log"], "as the handler writes it");

    bus.publish_blocking(catalog::CancelOrder::Fraud(9))
        .unwrap();
    bus.publish_blocking(catalog::CancelOrder::ByCustomer { order_id: 4 })
        .unwrap();
    assert_eq!(log.take(), ["fraud 9", "customer 4"]);
}

#[test]
fn an_event_with_no_handlers_is_delivered_to_nobody() {
    #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    struct Lonely;
    let (bus, _, _) = bus();
    let r = bus.publish_blocking(Lonely).unwrap();
    assert_eq!(r.handler_count(), 0);
    // Nothing took it: not ok, and the receipt says the usual cause.
    assert!(r.is_unhandled());
    assert!(!r.is_ok());
    assert!(r.failed().next().is_none());
    assert!(r.to_string().contains("events::link!"), "{r}");
    assert_eq!(r.event_name(), "lonely");
    assert!(bus.unhandled_events().iter().any(|e| e.name() == "lonely"));

    // A subscription takes it: handled, and no longer listed.
    let _sub = bus.subscribe(|_: &Lonely, _: &events::Context| {});
    let r = bus.publish_blocking(Lonely).unwrap();
    assert!(!r.is_unhandled() && r.is_ok(), "{r}");
    assert!(!bus.unhandled_events().iter().any(|e| e.name() == "lonely"));
}

mod crowd {
    #[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    pub struct Crowd;

    pub fn never(_: &Crowd, _: &events::Meta) -> bool {
        false
    }

    #[events::handler(filter = never)]
    fn z_filtered(_: &Crowd) {}

    #[events::handler]
    async fn zz_async(_: &Crowd) {}

    mod m00 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m01 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m02 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m03 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m04 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m05 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m06 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m07 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m08 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m09 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m10 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m11 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m12 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m13 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m14 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m15 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m16 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m17 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m18 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m19 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m20 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m21 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m22 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m23 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m24 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m25 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m26 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m27 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m28 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m29 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m30 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m31 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m32 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m33 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m34 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m35 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m36 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m37 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m38 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m39 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m40 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m41 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m42 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m43 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m44 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m45 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m46 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m47 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m48 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m49 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m50 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m51 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m52 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m53 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m54 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m55 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m56 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m57 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m58 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m59 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m60 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m61 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m62 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m63 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m64 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m65 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m66 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m67 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m68 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
    mod m69 {
        #[events::handler]
        fn h(_: &super::Crowd) {}
    }
}

#[test]
fn receipts_stay_exact_past_64_handlers() {
    let (bus, _, _) = bus();
    let r = bus.publish_blocking(crowd::Crowd).unwrap();
    assert_eq!(r.handler_count(), 72);
    let outcomes: Vec<_> = r.outcomes().collect();
    assert_eq!(outcomes.len(), 72);
    assert!(
        outcomes[..70]
            .iter()
            .all(|o| matches!(o.outcome, Outcome::Delivered))
    );
    assert!(
        matches!(outcomes[70].outcome, Outcome::Filtered),
        "{:?}",
        outcomes[70]
    );
    assert!(
        matches!(outcomes[71].outcome, Outcome::SkippedAsync),
        "{:?}",
        outcomes[71]
    );
    assert_eq!(r.delivered(), 70);
    assert!(r.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_futures_are_send_so_they_can_be_spawned() {
    fn assert_send<T: Send>(t: T) -> T {
        t
    }
    let (bus, _, metas) = bus();
    let task = tokio::spawn(async move { assert_send(bus.publish(lineage::Root)).await });
    let receipt = task.await.unwrap().unwrap();
    assert!(receipt.is_ok());
    assert_eq!(
        metas.0.lock().unwrap().len(),
        3,
        "root, child and grandchild were handled"
    );
}

mod unwinding {
    #[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    pub struct Spawner;
    #[derive(events::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    pub struct Later;
}

#[tokio::test(flavor = "current_thread")]
async fn a_panicking_task_leaves_no_current_event_behind() {
    let bus = Bus::builder().no_handlers().build().unwrap();
    let depths = Arc::new(Mutex::new(Vec::new()));
    let d = depths.clone();
    let _later = bus.subscribe(move |_: &unwinding::Later, ctx: &Context| {
        d.lock().unwrap().push(ctx.meta().depth());
    });
    let tasks = Arc::new(Mutex::new(Vec::new()));
    let t = tasks.clone();
    let _spawner = bus.subscribe(move |_: &unwinding::Spawner, _: &Context| {
        // Polled on this thread, as a child of `Spawner`, and panics mid-poll.
        t.lock()
            .unwrap()
            .push(events::spawn(async { panic!("task failed") }));
    });
    bus.publish(unwinding::Spawner).await.unwrap();
    let task = tasks.lock().unwrap().pop().unwrap();
    assert!(task.await.unwrap_err().is_panic());
    bus.publish(unwinding::Later).await.unwrap();
    bus.publish_blocking(unwinding::Later).unwrap();
    assert_eq!(
        *depths.lock().unwrap(),
        [0, 0],
        "after the panic, events published here are roots again"
    );
}
