//! Retries: transient failures run the failed handler again on its own task with backoff;
//! permanent failures and panics do not. Timed with tokio's paused clock, not sleeps.

#![allow(unreachable_pub)]

use std::sync::Mutex;
use std::time::Duration;

use events::{Bus, Context, Event, HandlerError, Outcome, RetryPolicy, handler};
use tokio::time::Instant;

#[derive(Event, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "flaky.job")]
struct Job {
    /// How many attempts fail before one succeeds.
    fail_first: u32,
    /// Fail permanently, or panic, instead.
    mode: String,
}

/// `(handler, attempt, ms since the test's start)`.
static CALLS: Mutex<Vec<(&'static str, u32, u128)>> = Mutex::new(Vec::new());
static START: Mutex<Option<Instant>> = Mutex::new(None);

fn record(handler: &'static str, ctx: &Context) {
    let start = START.lock().unwrap().unwrap();
    CALLS
        .lock()
        .unwrap()
        .push((handler, ctx.attempt(), start.elapsed().as_millis()));
}

#[handler(retry(
    max = 4,
    backoff = "exponential",
    base = "100ms",
    max_delay = "250ms",
    jitter = false
))]
async fn flaky(job: &Job, ctx: &Context) -> Result<(), HandlerError> {
    record("flaky", ctx);
    match job.mode.as_str() {
        "permanent" => Err(HandlerError::permanent("bad input")),
        "panic" => panic!("boom"),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(())
        }
        _ if ctx.attempt() <= job.fail_first => Err(HandlerError::transient("try later")),
        _ => Ok(()),
    }
}

/// Succeeds every time: a retry of `flaky` must not run it again.
#[handler]
fn steady(_: &Job, ctx: &Context) {
    record("steady", ctx);
}

#[handler(retry(max = 2, backoff = "fixed", base = "1s", jitter = false))]
fn sync_flaky(job: &Job, ctx: &Context) -> Result<(), HandlerError> {
    record("sync_flaky", ctx);
    if job.mode == "sync" && ctx.attempt() == 1 {
        return Err(HandlerError::transient("first call fails"));
    }
    Ok(())
}

fn calls() -> Vec<(&'static str, u32, u128)> {
    std::mem::take(&mut *CALLS.lock().unwrap())
}

async fn settle_for(d: Duration) {
    // The paused clock jumps to each timer; yields let the spawned retries run.
    tokio::time::sleep(d).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// One test, in order: the handlers share `CALLS`.
#[tokio::test(start_paused = true)]
async fn each_failure_kind_has_its_fate() {
    let bus = Bus::builder().scope(module_path!()).build().unwrap();
    *START.lock().unwrap() = Some(Instant::now());
    calls();

    // Transient twice, then fine: attempts 1, 2, 3 at 0, 100, 300 ms (100 then 200).
    let receipt = bus
        .publish(Job {
            fail_first: 2,
            mode: "transient".into(),
        })
        .await
        .unwrap();
    match receipt.outcome("retry::flaky") {
        Some(Outcome::Retrying {
            attempt: 2, after, ..
        }) => {
            assert_eq!(*after, Duration::from_millis(100));
        }
        other => panic!("expected Retrying, got {other:?}"),
    }
    assert!(matches!(
        receipt.outcome("retry::steady"),
        Some(Outcome::Delivered)
    ));
    assert_eq!(
        calls(),
        [("flaky", 1, 0), ("steady", 1, 0), ("sync_flaky", 1, 0)],
        "publish returned without waiting for the retry"
    );
    settle_for(Duration::from_secs(2)).await;
    assert_eq!(
        calls(),
        [("flaky", 2, 100), ("flaky", 3, 300)],
        "only the failed handler runs again, on the backoff schedule"
    );

    // Always transient: 1 + 4 attempts, the delays capped at 250 ms.
    *START.lock().unwrap() = Some(Instant::now());
    bus.publish(Job {
        fail_first: 99,
        mode: "transient".into(),
    })
    .await
    .unwrap();
    settle_for(Duration::from_secs(5)).await;
    let flaky: Vec<(u32, u128)> = calls()
        .into_iter()
        .filter(|c| c.0 == "flaky")
        .map(|c| (c.1, c.2))
        .collect();
    assert_eq!(flaky, [(1, 0), (2, 100), (3, 300), (4, 550), (5, 800)]);

    // Permanent errors and panics are final.
    for mode in ["permanent", "panic"] {
        let receipt = bus
            .publish(Job {
                fail_first: 0,
                mode: mode.into(),
            })
            .await
            .unwrap();
        let outcome = receipt.outcome("retry::flaky").unwrap();
        assert!(
            matches!(outcome, Outcome::Failed(_) | Outcome::Panicked(_)),
            "{mode}: {outcome:?}"
        );
        settle_for(Duration::from_secs(5)).await;
        assert_eq!(
            calls().iter().filter(|c| c.0 == "flaky").count(),
            1,
            "{mode} is not retried"
        );
    }

    // A synchronous handler is retried too, with a fixed delay.
    *START.lock().unwrap() = Some(Instant::now());
    bus.publish(Job {
        fail_first: 0,
        mode: "sync".into(),
    })
    .await
    .unwrap();
    settle_for(Duration::from_secs(3)).await;
    let sync: Vec<(u32, u128)> = calls()
        .into_iter()
        .filter(|c| c.0 == "sync_flaky")
        .map(|c| (c.1, c.2))
        .collect();
    assert_eq!(sync, [(1, 0), (2, 1000)]);
}

mod defaults {
    use super::*;

    #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[event(name = "timed.job")]
    pub struct Slow;

    pub static ATTEMPTS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

    /// No policy of its own; times out (a transient failure) on its first two attempts.
    #[handler(timeout = "50ms")]
    async fn slow(_: &Slow, ctx: &Context) {
        ATTEMPTS.lock().unwrap().push(ctx.attempt());
        if ctx.attempt() < 3 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_bus_default_policy_applies_and_timeouts_are_transient() {
    let bus = Bus::builder()
        .scope("retry::defaults")
        .retry(RetryPolicy::fixed(5, Duration::from_millis(10)))
        .build()
        .unwrap();
    let receipt = bus.publish(defaults::Slow).await.unwrap();
    assert!(
        matches!(
            receipt.outcome("retry::defaults::slow"),
            Some(Outcome::Retrying { .. })
        ),
        "{:?}",
        receipt.outcome("retry::defaults::slow")
    );
    settle_for(Duration::from_secs(5)).await;
    assert_eq!(*defaults::ATTEMPTS.lock().unwrap(), [1, 2, 3]);

    // Without a default, the same failure is final.
    let bus = Bus::builder().scope("retry::defaults").build().unwrap();
    let receipt = bus.publish(defaults::Slow).await.unwrap();
    assert!(matches!(
        receipt.outcome("retry::defaults::slow"),
        Some(Outcome::Failed(_))
    ));
}

mod shutdown {
    use super::*;

    #[derive(Event, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[event(name = "shutdown.job")]
    pub struct Work;

    pub static ATTEMPTS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

    /// Fails once, then succeeds on its retry a second later.
    #[handler(retry(max = 1, backoff = "fixed", base = "1s", jitter = false))]
    fn once_flaky(_: &Work, ctx: &Context) -> Result<(), HandlerError> {
        ATTEMPTS.lock().unwrap().push(ctx.attempt());
        if ctx.attempt() == 1 {
            return Err(HandlerError::transient("not yet"));
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_pending_retries_within_its_deadline_and_abandons_the_rest() {
    let bus = Bus::builder().scope("retry::shutdown").build().unwrap();
    bus.publish(shutdown::Work).await.unwrap();
    // The retry is due in 1 s; a 5 s deadline waits for it.
    let report = bus.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(*shutdown::ATTEMPTS.lock().unwrap(), [1, 2]);

    shutdown::ATTEMPTS.lock().unwrap().clear();
    let bus = Bus::builder().scope("retry::shutdown").build().unwrap();
    bus.publish(shutdown::Work).await.unwrap();
    // A 100 ms deadline does not: the retry is abandoned, reported, and never runs.
    let report = bus.shutdown(Duration::from_millis(100)).await;
    assert_eq!(report.abandoned_retries, 1, "{report:?}");
    assert!(!report.is_complete());
    settle_for(Duration::from_secs(5)).await;
    assert_eq!(*shutdown::ATTEMPTS.lock().unwrap(), [1]);
}

#[tokio::test(start_paused = true)]
async fn a_subscription_retries_with_its_own_policy_or_the_bus_default() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    for with_own_policy in [true, false] {
        let mut builder = Bus::builder().no_handlers();
        if !with_own_policy {
            builder = builder.retry(RetryPolicy::fixed(2, Duration::from_millis(50)));
        }
        let bus = builder.build().unwrap();
        let attempts = Arc::new(AtomicU32::new(0));
        let seen = Arc::clone(&attempts);
        let mut options = events::SubscribeOptions::new().name("flaky-subscription");
        if with_own_policy {
            options = options.retry(RetryPolicy::fixed(2, Duration::from_millis(50)));
        }
        let _sub = bus.subscribe_with(options, move |_: &shutdown::Work, ctx: &Context| {
            seen.store(ctx.attempt(), Ordering::SeqCst);
            if ctx.attempt() < 3 {
                return Err(HandlerError::transient("flaky"));
            }
            Ok(())
        });
        let receipt = bus.publish(shutdown::Work).await.unwrap();
        assert!(matches!(
            receipt.outcome("flaky-subscription"),
            Some(Outcome::Retrying { attempt: 2, .. })
        ));
        settle_for(Duration::from_secs(1)).await;
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            3,
            "own policy: {with_own_policy}"
        );
    }
}

mod lossy {
    use super::*;

    /// Its `Serialize` leaves out a field its `Deserialize` requires, so its JSON form does
    /// not come back as the type: a retry cannot rebuild it.
    #[derive(Event, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[event(name = "lossy.job")]
    pub struct Lossy {
        pub order: u64,
        #[serde(skip_serializing)]
        pub token: String,
    }

    pub static ATTEMPTS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

    #[handler(retry(max = 3, backoff = "fixed", base = "100ms", jitter = false))]
    fn fails_once(ev: &Lossy, ctx: &Context) -> Result<(), HandlerError> {
        assert_eq!(ev.token, "secret");
        ATTEMPTS.lock().unwrap().push(ctx.attempt());
        Err(HandlerError::transient("gateway busy"))
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_cannot_rebuild_its_event_is_dead_lettered_not_lost() {
    let bus = Bus::builder().scope("retry::lossy").build().unwrap();
    let receipt = bus
        .publish(lossy::Lossy {
            order: 7,
            token: "secret".into(),
        })
        .await
        .unwrap();
    assert!(matches!(
        receipt.outcomes().next().map(|o| o.outcome),
        Some(Outcome::Retrying { attempt: 2, .. })
    ));
    settle_for(Duration::from_secs(1)).await;
    assert_eq!(*lossy::ATTEMPTS.lock().unwrap(), [1], "no second call");
    let letters = bus.dead_letters().list(&events::DeadLetterFilter::all());
    assert_eq!(letters.len(), 1, "the failure is kept");
    let letter = &letters[0];
    assert!(letter.handler.ends_with("fails_once"), "{}", letter.handler);
    assert_eq!(letter.attempts, 1);
    assert_eq!(letter.payload["order"], 7);
    assert!(
        letter
            .error
            .starts_with("gateway busy; not retried: the event's JSON form does not deserialize"),
        "{}",
        letter.error
    );
    assert!(
        letter.error.contains("missing field `token`"),
        "{}",
        letter.error
    );
    let report = bus.shutdown(Duration::from_secs(1)).await;
    assert!(report.is_complete(), "no retry left pending: {report:?}");
}

mod outage {
    use super::*;

    #[derive(Event, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[event(name = "outage.job")]
    pub struct Charge(pub u64);

    /// Every call fails, as during an outage of what it calls.
    #[handler(retry(max = 1, backoff = "fixed", base = "10s", jitter = false))]
    fn charge(_: &Charge) -> Result<(), HandlerError> {
        Err(HandlerError::transient("payment gateway down"))
    }
}

#[tokio::test(start_paused = true)]
async fn retries_waiting_at_once_are_bounded_and_the_overflow_is_dead_lettered() {
    let bus = Bus::builder()
        .scope("retry::outage")
        .max_pending_retries(2)
        .build()
        .unwrap();
    let mut outcomes = Vec::new();
    for n in 1..=5 {
        let receipt = bus.publish(outage::Charge(n)).await.unwrap();
        outcomes.push(receipt.outcomes().next().unwrap().outcome.to_string());
    }
    assert!(
        outcomes[..2]
            .iter()
            .all(|o| o.ends_with("attempt 2 in 10s")),
        "{outcomes:?}"
    );
    for o in &outcomes[2..] {
        assert!(
            o.contains("payment gateway down; not retried: 2 retries are already waiting"),
            "{o}"
        );
    }
    let all = events::DeadLetterFilter::all();
    assert_eq!(
        bus.dead_letters().list(&all).len(),
        3,
        "the overflow is kept, not lost"
    );

    // The two retries run (and fail for good); their places are free again.
    settle_for(Duration::from_secs(11)).await;
    assert_eq!(bus.dead_letters().list(&all).len(), 5);
    let receipt = bus.publish(outage::Charge(6)).await.unwrap();
    assert!(matches!(
        receipt.outcomes().next().map(|o| o.outcome),
        Some(Outcome::Retrying { attempt: 2, .. })
    ));
}

mod precedence {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    pub static ATTEMPTS: AtomicU32 = AtomicU32::new(0);

    /// Its own policy: three retries.
    #[handler(retry(max = 3, backoff = "fixed", base = "10ms", jitter = false))]
    fn own_policy(_: &shutdown::Work, ctx: &Context) -> Result<(), HandlerError> {
        ATTEMPTS.fetch_max(ctx.attempt(), Ordering::SeqCst);
        Err(HandlerError::transient("still down"))
    }
}

/// Issue 17: `BusBuilder::retry(RetryPolicy::none())` is the default for handlers without a
/// policy, so a handler's own `retry(..)` wins over it; `BusBuilder::no_retries()` turns
/// every retry off, handlers' and subscriptions' own included.
#[tokio::test(start_paused = true)]
async fn no_retries_turns_every_retry_off_and_a_default_of_none_does_not() {
    use std::sync::atomic::Ordering;
    for no_retries in [false, true] {
        precedence::ATTEMPTS.store(0, Ordering::SeqCst);
        let mut builder = Bus::builder()
            .scope("retry::precedence")
            .retry(RetryPolicy::none());
        if no_retries {
            builder = builder.no_retries();
        }
        let bus = builder.build().unwrap();
        let options = events::SubscribeOptions::new()
            .name("own-policy-subscription")
            .retry(RetryPolicy::fixed(3, Duration::from_millis(10)));
        let _sub = bus.subscribe_with(options, |_: &shutdown::Work, _: &Context| {
            Err::<(), _>(HandlerError::transient("still down"))
        });
        let receipt = bus.publish(shutdown::Work).await.unwrap();
        for handler in ["retry::precedence::own_policy", "own-policy-subscription"] {
            let outcome = receipt.outcome(handler).unwrap();
            if no_retries {
                assert!(
                    matches!(outcome, Outcome::Failed(_)),
                    "{handler}: {outcome:?}"
                );
            } else {
                assert!(
                    matches!(outcome, Outcome::Retrying { .. }),
                    "{handler}: {outcome:?}"
                );
            }
        }
        settle_for(Duration::from_secs(1)).await;
        let attempts = precedence::ATTEMPTS.load(Ordering::SeqCst);
        assert_eq!(
            attempts,
            if no_retries { 1 } else { 4 },
            "no_retries: {no_retries}"
        );
        assert_eq!(
            bus.dead_letters()
                .list(&events::DeadLetterFilter::all())
                .len(),
            2
        );
    }
}

/// Issue 17: the receipt's vocabulary: a pending retry is not a failure for good, and the
/// receipt says which is which.
#[tokio::test(start_paused = true)]
async fn a_receipt_tells_a_pending_retry_from_a_failure_for_good() {
    let bus = Bus::builder().no_handlers().build().unwrap();
    let _retrying = bus.subscribe_with(
        events::SubscribeOptions::new()
            .name("retrying")
            .retry(RetryPolicy::fixed(1, Duration::from_millis(10))),
        |_: &shutdown::Work, ctx: &Context| {
            if ctx.attempt() == 1 {
                return Err(HandlerError::transient("busy"));
            }
            Ok(())
        },
    );
    let receipt = bus.publish(shutdown::Work).await.unwrap();
    assert!(!receipt.is_settled() && !receipt.is_ok());
    assert_eq!(receipt.retrying().count(), 1);
    assert_eq!(
        receipt.failed().count(),
        0,
        "a pending retry is not a failure for good"
    );

    let _refusing = bus.subscribe_with(
        events::SubscribeOptions::new().name("refusing"),
        |_: &shutdown::Work, _: &Context| Err::<(), _>(HandlerError::permanent("no")),
    );
    let receipt = bus.publish(shutdown::Work).await.unwrap();
    let failed: Vec<&str> = receipt.failed().map(|o| o.handler).collect();
    assert_eq!(failed, ["refusing"]);
    assert_eq!(receipt.retrying().count(), 1);
    assert_eq!(receipt.failures().count(), 2);
}
