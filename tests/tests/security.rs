//! Who may publish what from outside: access rules per principal and event pattern, the
//! principal recorded apart from the sender-claimed `source`, and rate limits per principal
//! and per event on tokio's paused clock. Every refusal is typed, counted, and dispatches
//! and stores nothing.

#![allow(unreachable_pub)]

use std::sync::Mutex;
use std::time::Duration;

use events::observe::Metrics;
use events::security::{AccessRules, Limit, Principal, RateLimit, RateLimits};
use events::store::{MemoryStore, StoreQuery};
use events::{Bus, Event, Filter, IngestError, PublishOptions, handler};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "pay.captured")]
struct Captured {
    cents: u64,
}

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "pay.refunded")]
struct Refunded {
    cents: u64,
}

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "shop.ping")]
struct Ping {}

static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[handler(filter = billing_only())]
fn from_billing(ev: &Captured, ctx: &events::Context) {
    SEEN.lock().unwrap().push(format!(
        "captured {} by {:?} claiming {}",
        ev.cents,
        ctx.meta().principal(),
        ctx.meta().source()
    ));
}

fn billing_only() -> Filter {
    Filter::principal("billing")
}

#[handler]
fn on_refund(ev: &Refunded, ctx: &events::Context) {
    SEEN.lock().unwrap().push(format!(
        "refunded {} by {:?}",
        ev.cents,
        ctx.meta().principal()
    ));
}

fn seen() -> Vec<String> {
    std::mem::take(&mut *SEEN.lock().unwrap())
}

static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn rules() -> AccessRules {
    AccessRules::new()
        .allow("billing", "pay.>")
        .allow("*", "pay.refunded")
        .allow("anonymous", "shop.ping")
}

fn cloudevent(kind: &str, source: &str, extra: &str) -> Vec<u8> {
    format!(
        r#"{{"specversion":"1.0","id":"e-{kind}","source":"{source}","type":"{kind}",
            "data":{{"cents":5}}{extra}}}"#
    )
    .into_bytes()
}

#[tokio::test]
async fn rules_allow_refuse_and_match_patterns_at_every_entry_point() {
    let _g = LOCK.lock().await;
    seen();
    let metrics = Metrics::new();
    let bus = Bus::builder()
        .scope(module_path!())
        .source("shop")
        .access(rules())
        .observer(metrics.clone())
        .store(MemoryStore::new())
        .build()
        .unwrap();
    let billing = Principal::new("billing").unwrap();
    let web = Principal::new("web").unwrap();
    let none = PublishOptions::new;

    // Allowed: billing by its pattern rule, web by the `*` rule, anyone for the ping.
    bus.ingress(&billing)
        .publish_json("pay.captured", 1, br#"{"cents":1}"#, none())
        .await
        .unwrap();
    bus.ingress(&web)
        .ingest_cloudevent(&cloudevent("pay.refunded", "web", ""))
        .await
        .unwrap();
    bus.publish_json("shop.ping", 1, b"{}", none())
        .await
        .unwrap();
    assert_eq!(
        seen(),
        [
            "captured 1 by Some(\"billing\") claiming shop",
            "refunded 5 by Some(\"web\")"
        ]
    );

    // Refused: web may not capture, anonymous may not refund, nobody may send what no
    // rule names (even an unknown name: the refusal comes before the catalog is asked, so
    // it says nothing of which events exist).
    let refusals = [
        bus.ingress(&web)
            .publish_json("pay.captured", 1, br#"{"cents":2}"#, none())
            .await
            .unwrap_err(),
        bus.publish_json("pay.refunded", 1, br#"{"cents":2}"#, none())
            .await
            .unwrap_err(),
        bus.ingress(&web)
            .ingest_cloudevent(&cloudevent("pay.captured", "billing", ""))
            .await
            .unwrap_err(),
        bus.ingress(&billing)
            .publish_json("secret.unknown", 1, b"{}", none())
            .await
            .unwrap_err(),
        bus.ingress(&web)
            .publish_json_blocking("pay.captured", 1, b"{ not even json", none())
            .unwrap_err(),
        bus.ingress(&web)
            .decode_json("pay.captured", 1, br#"{"cents":2}"#)
            .map(|_| ())
            .unwrap_err(),
    ];
    let text: Vec<String> = refusals.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            "principal `web` may not publish `pay.captured`",
            "principal `anonymous` may not publish `pay.refunded`",
            "principal `web` may not publish `pay.captured`",
            "principal `billing` may not publish `secret.unknown`",
            "principal `web` may not publish `pay.captured`",
            "principal `web` may not publish `pay.captured`",
        ]
    );
    assert!(
        refusals
            .iter()
            .all(|e| matches!(e, IngestError::Forbidden { .. }) && e.is_refusal())
    );

    // A batch with one refused event publishes none of them.
    let batch = format!(
        "[{},{}]",
        String::from_utf8(cloudevent("pay.refunded", "web", "")).unwrap(),
        String::from_utf8(cloudevent("pay.captured", "web", "")).unwrap()
    );
    let err = bus
        .ingress(&web)
        .ingest_cloudevents_batch(batch.as_bytes())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, IngestError::InBatch { index: 1, error } if matches!(**error, IngestError::Forbidden { .. }))
    );
    assert!(seen().is_empty(), "nothing refused was dispatched");
    let stored = bus.store().unwrap().query(&StoreQuery::all()).unwrap();
    let names: Vec<_> = stored.iter().map(|r| r.name.clone()).collect();
    assert_eq!(names, ["pay.captured", "pay.refunded", "shop.ping"]);
    assert_eq!(
        stored[0].metadata.get("events.principal"),
        Some(&"billing".into()),
        "the store keeps the principal"
    );
    assert_eq!(stored[2].metadata.get("events.principal"), None);

    let snapshot = metrics.snapshot(&bus);
    assert_eq!(snapshot.refused_inputs, 7);
    assert_eq!(
        snapshot.events["pay.captured"].refused, 0,
        "refused before lookup"
    );
    assert_eq!(
        snapshot.invalid_inputs, 0,
        "a refusal is not counted as invalid input"
    );
}

#[tokio::test]
async fn a_spoofed_source_or_principal_extension_cannot_pass_a_principal_rule() {
    let _g = LOCK.lock().await;
    seen();
    let bus = Bus::builder()
        .scope(module_path!())
        .access(rules())
        .build()
        .unwrap();
    let web = Principal::new("web").unwrap();
    // `web` may capture nothing; claiming to be billing in `source` changes nothing.
    let err = bus
        .ingress(&web)
        .ingest_cloudevent(&cloudevent("pay.captured", "billing", ""))
        .await
        .unwrap_err();
    assert!(matches!(err, IngestError::Forbidden { .. }));
    // An extension cannot name the principal either: `events.principal` is not an
    // extension name, and a `principal` extension is plain metadata, not the principal.
    let err = bus
        .ingress(&web)
        .ingest_cloudevent(&cloudevent(
            "pay.refunded",
            "billing",
            r#","events.principal":"billing""#,
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, IngestError::BadAttribute { .. }), "{err}");
    bus.ingress(&web)
        .ingest_cloudevent(&cloudevent(
            "pay.refunded",
            "billing",
            r#","principal":"billing""#,
        ))
        .await
        .unwrap();
    assert_eq!(seen(), ["refunded 5 by Some(\"web\")"]);

    // Without rules, everyone may publish, and anonymous input carries no principal.
    let open = Bus::builder().scope(module_path!()).build().unwrap();
    open.ingest_cloudevent(&cloudevent("pay.captured", "billing", ""))
        .await
        .unwrap();
    assert!(
        seen().is_empty(),
        "the principal filter refuses an event that only claims to come from billing"
    );
}

#[test]
fn bad_rules_and_principals_are_refused_with_every_problem_listed() {
    let err = Bus::builder()
        .scope(module_path!())
        .access(
            AccessRules::new()
                .allow("bad name", "pay.>")
                .allow("web", "pay..x"),
        )
        .rate_limits(RateLimits::new().per_event("Pay", RateLimit::per_second(1)))
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("access rule for `bad name`: invalid principal name `bad name`"),
        "{err}"
    );
    assert!(
        err.contains("access rule for `web`: invalid event pattern `pay..x`"),
        "{err}"
    );
    assert!(
        err.contains("rate limit: invalid event pattern `Pay`"),
        "{err}"
    );
    for bad in ["", "*", "a b", "tab\there", &"x".repeat(129), "é"] {
        assert!(Principal::new(bad).is_err(), "{bad:?}");
    }
    assert!(Principal::new("svc:billing@eu-1/v2").is_ok());
    assert!(Principal::anonymous().is_anonymous());
}

#[tokio::test(start_paused = true)]
async fn rate_limits_per_principal_and_per_event_say_when_to_retry() {
    let _g = LOCK.lock().await;
    seen();
    let metrics = Metrics::new();
    let bus = Bus::builder()
        .scope(module_path!())
        .rate_limits(
            RateLimits::new()
                .per_principal(RateLimit::per_second(2))
                .per_event("pay.refunded", RateLimit::per_minute(3)),
        )
        .observer(metrics.clone())
        .build()
        .unwrap();
    let (a, b) = (Principal::new("a").unwrap(), Principal::new("b").unwrap());
    let refund = |p: &Principal| {
        bus.ingress(p).publish_json_blocking(
            "pay.refunded",
            1,
            br#"{"cents":1}"#,
            PublishOptions::new(),
        )
    };
    // `a` has a burst of two a second.
    refund(&a).unwrap();
    refund(&a).unwrap();
    let err = refund(&a).unwrap_err();
    let IngestError::RateLimited {
        limit, retry_after, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(
        (*limit, *retry_after),
        (Limit::Principal, Duration::from_millis(500))
    );
    assert_eq!(
        err.to_string(),
        "the principal's rate limit refused `pay.refunded` from principal `a`; retry after 500 ms"
    );
    // `b` has its own budget, but the event's (3 a minute, shared) is now spent.
    refund(&b).unwrap();
    let err = refund(&b).unwrap_err();
    assert!(
        matches!(err, IngestError::RateLimited { limit: Limit::Event, retry_after, .. } if retry_after == Duration::from_secs(20)),
        "{err}"
    );
    // Waiting as told lets the call through.
    tokio::time::advance(Duration::from_secs(20)).await;
    refund(&b).unwrap();
    assert_eq!(seen().len(), 4);
    // The payload is not read while limited: a malformed one is refused by the limit.
    let err = bus
        .ingress(&b)
        .publish_json("pay.refunded", 1, b"{ nope", PublishOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(err, IngestError::RateLimited { .. }), "{err}");
    let snapshot = metrics.snapshot(&bus);
    assert_eq!(snapshot.events["pay.refunded"].refused, 3);
    assert_eq!(snapshot.invalid_inputs, 0);
}

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "pay.failing")]
struct Failing {
    n: u64,
}

#[handler]
fn always_fails(_: &Failing) -> Result<(), events::HandlerError> {
    Err(events::HandlerError::permanent("no"))
}

static AUDITED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Audit records are events: a handler takes them like any other.
#[handler]
fn on_refused(ev: &events::audit::Refused) {
    AUDITED
        .lock()
        .unwrap()
        .push(format!("{} {} {}", ev.principal, ev.reason, ev.suppressed));
}

#[tokio::test(start_paused = true)]
async fn refusals_dead_letter_actions_and_replays_are_recorded_as_events() {
    let _g = LOCK.lock().await;
    seen();
    AUDITED.lock().unwrap().clear();
    let bus = Bus::builder()
        .scope(module_path!())
        .access(rules().allow("billing", "pay.failing"))
        .store(MemoryStore::new())
        .audit(true)
        .no_retries()
        .build()
        .unwrap();
    let web = Principal::new("web").unwrap();
    // 150 refusals at once: 100 are recorded, then the next record counts the others.
    for _ in 0..150 {
        bus.ingress(&web)
            .publish_json("pay.captured", 1, br#"{"cents":1}"#, PublishOptions::new())
            .await
            .unwrap_err();
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    bus.publish_json("pay.refunded", 1, br#"{"cents":1}"#, PublishOptions::new())
        .await
        .unwrap_err();
    events_tests::until("the refusal records", || {
        AUDITED.lock().unwrap().len() == 101
    })
    .await;
    let audited = AUDITED.lock().unwrap().clone();
    assert_eq!(audited[0], "web forbidden 0");
    assert_eq!(audited[100], "anonymous forbidden 50");

    // A dead letter retried, then discarded; a replay.
    bus.publish(Failing { n: 1 }).await.unwrap();
    let letter = bus.dead_letters().list(&events::DeadLetterFilter::all())[0].id;
    assert!(bus.dead_letters().retry(letter).await);
    assert_eq!(
        bus.dead_letters().discard(&events::DeadLetterFilter::all()),
        1
    );
    bus.replay(StoreQuery::all().name("pay.failing").unwrap())
        .await
        .unwrap();

    let stored = || {
        bus.store()
            .unwrap()
            .query(&StoreQuery::all().name("events.audit.>").unwrap())
            .unwrap()
    };
    events_tests::until("the audit records", || stored().len() == 104).await;
    let records = stored();
    let names: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names
            .iter()
            .filter(|n| **n == "events.audit.refused")
            .count(),
        101
    );
    let tail: Vec<&str> = names[101..].to_vec();
    assert_eq!(
        tail,
        [
            "events.audit.dead_letter_retried",
            "events.audit.dead_letters_discarded",
            "events.audit.replayed"
        ]
    );
    // Outside input cannot pass for one of the bus's own records.
    const FORGED: &[u8] =
        br#"{"principal":"x","event":"x","reason":"x","message":"x","suppressed":0}"#;
    let forged = bus
        .ingress(&Principal::new("billing").unwrap())
        .publish_json("events.audit.refused", 1, FORGED, PublishOptions::new())
        .await
        .unwrap_err();
    assert!(
        matches!(
            forged,
            IngestError::Forbidden { .. } | IngestError::UnknownEvent { .. }
        ),
        "{forged}"
    );
    let open_bus = Bus::builder().no_handlers().audit(true).build().unwrap();
    let forged = open_bus
        .publish_json("events.audit.refused", 1, FORGED, PublishOptions::new())
        .await
        .unwrap_err();
    assert!(
        matches!(forged, IngestError::UnknownEvent { .. }),
        "{forged}"
    );
    let refused = records[0].payload_json().unwrap();
    assert_eq!(refused["principal"], "web");
    assert_eq!(refused["event"], "pay.captured");
    assert_eq!(
        refused["message"],
        "principal `web` may not publish `pay.captured`"
    );
    let retried = records[101].payload_json().unwrap();
    assert_eq!(retried["handler"], "security::always_fails");
    assert_eq!(retried["event"], "pay.failing");
    let replayed = records[103].payload_json().unwrap();
    assert_eq!(replayed["events"], 1);
}
