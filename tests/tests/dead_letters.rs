//! The dead-letter queue: what lands there, and listing, retrying and discarding it.

#![allow(unreachable_pub)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use events::observe::Observer;
use events::{Bus, DeadLetter, DeadLetterFilter, Event, HandlerError, RetryPolicy, handler};

#[derive(Event, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "payment.due")]
struct PaymentDue {
    order_id: u64,
    mode: String,
    #[event(redact)]
    card: String,
}

/// Fails the way `mode` says, until `HEALED`.
static HEALED: AtomicBool = AtomicBool::new(false);
static CHARGES: Mutex<Vec<(u64, u32)>> = Mutex::new(Vec::new());
static RECEIPTS: AtomicUsize = AtomicUsize::new(0);

#[handler(name = "billing.charge")]
fn charge(ev: &PaymentDue, ctx: &events::Context) -> Result<(), HandlerError> {
    CHARGES.lock().unwrap().push((ev.order_id, ctx.attempt()));
    if HEALED.load(Ordering::SeqCst) {
        return Ok(());
    }
    match ev.mode.as_str() {
        "permanent" => Err(HandlerError::permanent("card declined")),
        "transient" => Err(HandlerError::transient("gateway down")),
        "panic" => panic!("gateway exploded"),
        _ => Ok(()),
    }
}

/// Always succeeds: a dead letter's retry must not run it again.
#[handler(name = "billing.receipt")]
fn receipt(_: &PaymentDue) {
    RECEIPTS.fetch_add(1, Ordering::SeqCst);
}

#[derive(Default)]
struct Told(Mutex<Vec<String>>);

impl Observer for &'static Told {
    fn dead_lettered(&self, letter: &DeadLetter) {
        self.0.lock().unwrap().push(letter.handler.clone());
    }
}

fn due(order_id: u64, mode: &str) -> PaymentDue {
    PaymentDue {
        order_id,
        mode: mode.into(),
        card: "4111111111111111".into(),
    }
}

/// One test: the handlers share statics.
#[tokio::test(start_paused = true)]
async fn failures_for_good_are_kept_listed_retried_and_discarded() {
    static TOLD: Told = Told(Mutex::new(Vec::new()));
    let bus = Bus::builder()
        .scope(module_path!())
        .observer(&TOLD)
        .build()
        .unwrap();

    bus.publish(due(1, "permanent")).await.unwrap();
    bus.publish(due(2, "panic")).await.unwrap();
    bus.publish(due(3, "transient")).await.unwrap(); // no retry policy: final at once
    bus.publish(due(4, "fine")).await.unwrap();

    let all = bus.dead_letters().list(&DeadLetterFilter::all());
    let summary: Vec<(u64, &str, bool, u32)> = all
        .iter()
        .map(|d| {
            (
                d.payload["order_id"].as_u64().unwrap(),
                d.error.as_str(),
                d.permanent,
                d.attempts,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, "card declined", true, 1),
            (2, "panicked: gateway exploded", true, 1),
            (3, "gateway down", false, 1),
        ]
    );
    assert!(
        all.iter()
            .all(|d| d.handler == "billing.charge" && d.event_name() == "payment.due")
    );
    assert_eq!(
        *TOLD.0.lock().unwrap(),
        ["billing.charge"; 3],
        "observers are told"
    );

    // A dump never shows the redacted card; the stored payload keeps it for a retry.
    let dump = format!("{:?}", all[0]);
    assert!(dump.contains(r#""card": String("[redacted]")"#), "{dump}");
    assert!(!dump.contains("4111"), "{dump}");
    assert_eq!(all[0].payload["card"], "4111111111111111");

    // Filters.
    let permanent = bus
        .dead_letters()
        .list(&DeadLetterFilter::all().permanent(true));
    assert_eq!(permanent.len(), 2);
    assert!(
        bus.dead_letters()
            .list(&DeadLetterFilter::all().handler("other"))
            .is_empty()
    );
    assert_eq!(
        bus.dead_letters().get(all[2].id).unwrap().payload["order_id"],
        3
    );

    // Retrying one while the cause persists: it fails again and comes back, attempt 2.
    CHARGES.lock().unwrap().clear();
    let receipts_before = RECEIPTS.load(Ordering::SeqCst);
    assert!(bus.dead_letters().retry(all[2].id).await);
    assert_eq!(*CHARGES.lock().unwrap(), [(3, 2)]);
    assert_eq!(
        RECEIPTS.load(Ordering::SeqCst),
        receipts_before,
        "only the failed handler ran"
    );
    let back = bus
        .dead_letters()
        .list(&DeadLetterFilter::all().permanent(false));
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].attempts, 2);
    assert_ne!(back[0].id, all[2].id, "a new letter");
    assert_eq!(back[0].event_id(), all[2].event_id(), "the same event");

    // Healed: retrying all empties the queue, each to its handler only.
    HEALED.store(true, Ordering::SeqCst);
    CHARGES.lock().unwrap().clear();
    assert_eq!(
        bus.dead_letters().retry_all(&DeadLetterFilter::all()).await,
        3
    );
    let mut charged = CHARGES.lock().unwrap().clone();
    charged.sort();
    assert_eq!(charged, [(1, 2), (2, 2), (3, 3)]);
    assert!(bus.dead_letters().list(&DeadLetterFilter::all()).is_empty());
    assert!(!bus.dead_letters().retry(12345).await, "no such letter");
    HEALED.store(false, Ordering::SeqCst);

    // Exhausted retries land there too, with every attempt counted.
    let retrying = Bus::builder()
        .scope(module_path!())
        .retry(RetryPolicy::fixed(2, Duration::from_millis(10)))
        .build()
        .unwrap();
    retrying.publish(due(5, "transient")).await.unwrap();
    assert!(
        retrying
            .dead_letters()
            .list(&DeadLetterFilter::all())
            .is_empty(),
        "still retrying"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let exhausted = retrying.dead_letters().list(&DeadLetterFilter::all());
    assert_eq!(exhausted.len(), 1);
    assert_eq!(exhausted[0].attempts, 3);
    assert!(!exhausted[0].permanent);

    // Discard.
    assert_eq!(
        retrying
            .dead_letters()
            .discard(&DeadLetterFilter::all().event("payment.due")),
        1
    );
    assert!(
        retrying
            .dead_letters()
            .list(&DeadLetterFilter::all())
            .is_empty()
    );

    // Bounded: the oldest makes room.
    let small = Bus::builder()
        .scope(module_path!())
        .dead_letter_capacity(2)
        .build()
        .unwrap();
    for id in 10..13 {
        small.publish(due(id, "permanent")).await.unwrap();
    }
    let kept: Vec<u64> = small
        .dead_letters()
        .list(&DeadLetterFilter::all())
        .iter()
        .map(|d| d.payload["order_id"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, [11, 12]);
}

#[derive(Event, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "payment.refund")]
struct Refund {
    order_id: u64,
    mode: String,
    #[event(redact)]
    card: String,
}

/// What `billing.refund` was given: order, mode and card.
static REFUNDS: Mutex<Vec<(u64, String, String)>> = Mutex::new(Vec::new());

#[handler(name = "billing.refund")]
fn refund(ev: &Refund) -> Result<(), HandlerError> {
    REFUNDS
        .lock()
        .unwrap()
        .push((ev.order_id, ev.mode.clone(), ev.card.clone()));
    match ev.mode.as_str() {
        "ok" => Ok(()),
        _ => Err(HandlerError::permanent("refund refused")),
    }
}

/// An operator edits a dead letter's payload before retrying it: a merge patch, checked
/// against the schema; the redacted card, left out of the patch, keeps its stored (sealed)
/// value and reaches the handler opened.
#[tokio::test]
async fn a_retry_with_an_edited_payload_is_checked_and_keeps_what_it_leaves_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.db");
    let open = || {
        Bus::builder()
            .handler("billing.refund")
            .no_retries()
            .store(events::store::SqliteStore::open(&path).unwrap())
            .build()
            .unwrap()
    };
    let bus = open();
    bus.publish(Refund {
        order_id: 7,
        mode: "typo".into(),
        card: "4111-0000-secret".into(),
    })
    .await
    .unwrap();
    bus.shutdown(Duration::from_secs(5)).await;
    drop(bus);
    // A new process: the letter comes from the store, its card sealed.
    let bus = open();
    let letters = bus.dead_letters();
    let [letter] = &letters.list(&DeadLetterFilter::all())[..] else {
        panic!("one letter");
    };
    let id = letter.id;

    let refused = |patch: serde_json::Value| {
        let bus = bus.clone();
        async move { bus.dead_letters().retry_with(id, &patch).await.unwrap_err() }
    };
    let e = refused(serde_json::json!({ "order_id": "seven" })).await;
    assert!(
        matches!(&e, events::IngestError::Invalid { violations, .. } if violations.len() == 1 && violations[0].path == "/order_id"),
        "{e}"
    );
    let e = refused(serde_json::json!({ "card": ["4111-9999-secret"] })).await;
    assert!(!e.to_string().contains("4111-9999-secret"), "{e}");
    let deep = (0..40).fold(serde_json::json!(1), |v, _| serde_json::json!([v]));
    let e = refused(serde_json::json!({ "mode": deep })).await;
    assert!(matches!(e, events::IngestError::TooDeep { .. }), "{e}");
    assert!(REFUNDS.lock().unwrap().iter().all(|r| r.1 == "typo"));
    assert_eq!(
        letters.list(&DeadLetterFilter::all()).len(),
        1,
        "a refused edit keeps the letter"
    );

    assert!(
        !letters
            .retry_with(id + 100, &serde_json::json!({}))
            .await
            .unwrap()
    );
    assert!(
        letters
            .retry_with(id, &serde_json::json!({ "mode": "ok" }))
            .await
            .unwrap()
    );
    assert_eq!(
        REFUNDS.lock().unwrap().last().unwrap(),
        &(7, "ok".to_owned(), "4111-0000-secret".to_owned())
    );
    assert!(letters.list(&DeadLetterFilter::all()).is_empty());
    bus.shutdown(Duration::from_secs(5)).await;
    let reopened = open();
    assert!(
        reopened
            .dead_letters()
            .list(&DeadLetterFilter::all())
            .is_empty()
    );
}
