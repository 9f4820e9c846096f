//! The testing kit on a small sign-up flow: `cargo test -p events-examples --example testing`
//! runs the tests below; `cargo run --example testing` runs the flow once.
//!
//! `UserSignedUp` -> `send_welcome` (a flaky mailer, retried) -> `WelcomeSent` (emitted) ->
//! `count_welcome` (state).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use events::{Bus, Context, Event, HandlerError, State, handler};

/// Someone signed up.
#[derive(Debug, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "user.signed_up")]
struct UserSignedUp {
    user_id: u64,
    email: String,
}

/// The welcome mail went out.
#[derive(Debug, Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "user.welcome_sent")]
struct WelcomeSent {
    user_id: u64,
}

/// A mail server that times out `failures` times before it takes a mail.
#[derive(Default)]
struct Mailer {
    failures: AtomicU32,
    sent: Mutex<Vec<String>>,
}

/// How many welcomes went out.
#[derive(Default)]
struct Stats {
    welcomed: AtomicU32,
}

#[handler(name = "mail.welcome", retry(max = 3, base = "2s", jitter = false))]
async fn send_welcome(
    ev: &UserSignedUp,
    ctx: &Context,
    mailer: State<Mailer>,
) -> Result<(), HandlerError> {
    if mailer
        .failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return Err(HandlerError::transient("mail server timed out"));
    }
    mailer.sent.lock().unwrap().push(ev.email.clone());
    ctx.emit(WelcomeSent {
        user_id: ev.user_id,
    })
    .await?;
    Ok(())
}

#[handler(name = "stats.welcomed")]
fn count_welcome(_: &WelcomeSent, stats: State<Stats>) {
    stats.welcomed.fetch_add(1, Ordering::SeqCst);
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bus = Bus::builder()
        .state(Mailer::default())
        .state(Stats::default())
        .build()?;
    let receipt = bus
        .publish(UserSignedUp {
            user_id: 1,
            email: "ada@example.com".into(),
        })
        .await?;
    println!("{receipt}");
    bus.shutdown(std::time::Duration::from_secs(5)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use events::testing::TestBus;

    use super::*;

    fn signup(user_id: u64) -> UserSignedUp {
        UserSignedUp {
            user_id,
            email: format!("user{user_id}@example.com"),
        }
    }

    /// The whole flow, on a bus of just these two handlers; the mailer fails twice, and the
    /// paused clock lets the retries' 2 s and 4 s pass at once.
    #[tokio::test(start_paused = true)]
    async fn a_signup_is_welcomed_once_despite_a_flaky_mailer() {
        let mailer = Arc::new(Mailer::default());
        mailer.failures.store(2, Ordering::SeqCst);
        let stats = Arc::new(Stats::default());
        let t = TestBus::new(
            Bus::builder()
                .handler("mail.welcome")
                .handler("stats.welcomed")
                .shared_state(mailer.clone())
                .shared_state(stats.clone()),
        )
        .unwrap();

        let receipt = t.publish(signup(7)).await.unwrap();
        assert_eq!(receipt.retrying().count(), 1, "{receipt}");
        t.settle().await;

        let sent = t.expect_one::<WelcomeSent>(|e| e.user_id == 7);
        let signed_up = t.expect_one::<UserSignedUp>(|e| e.user_id == 7);
        assert_eq!(sent.meta.causation_id(), Some(signed_up.meta.id()));
        assert_eq!(*mailer.sent.lock().unwrap(), ["user7@example.com"]);
        assert_eq!(stats.welcomed.load(Ordering::SeqCst), 1);
        assert!(t.dead_letters().is_empty());
    }

    /// With retries off, the same outage is a dead letter at once, and no welcome is sent.
    #[tokio::test]
    async fn without_retries_an_outage_is_dead_lettered() {
        let mailer = Mailer::default();
        mailer.failures.store(1, Ordering::SeqCst);
        let t = TestBus::new(
            Bus::builder()
                .handler("mail.welcome")
                .state(mailer)
                .no_retries(),
        )
        .unwrap()
        .settle_timeout(Duration::from_secs(1));
        t.publish(signup(8)).await.unwrap();
        t.settle().await;
        t.expect_none::<WelcomeSent>();
        let letters = t.dead_letters();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].error, "mail server timed out");
    }

    /// The handler alone: no bus of handlers, state made by hand, a test context.
    #[tokio::test]
    async fn the_handler_alone() {
        let t = TestBus::new(Bus::builder().no_handlers()).unwrap();
        let mailer = Arc::new(Mailer::default());
        let ctx = Context::for_test::<UserSignedUp>(&t);
        send_welcome(&signup(9), &ctx, State::from(mailer.clone()))
            .await
            .unwrap();
        assert_eq!(*mailer.sent.lock().unwrap(), ["user9@example.com"]);
        t.settle().await;
        t.expect_one::<WelcomeSent>(|e| e.user_id == 9);

        count_welcome(&WelcomeSent { user_id: 9 }, State::new(Stats::default()));
    }
}
