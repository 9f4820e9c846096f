//! [`RetryPolicy`]: how often, and how long apart, a handler that failed transiently is run
//! again.

use std::cell::Cell;
use std::time::Duration;

/// How a handler that failed with a transient error is retried: set per handler with
/// `#[handler(retry(max = 5, backoff = "exponential", base = "100ms", max_delay = "30s",
/// jitter = true))]`, or for every handler without one with
/// [`BusBuilder::retry`](crate::BusBuilder::retry).
///
/// Which policy a handler gets, first match wins:
///
/// 1. [`BusBuilder::no_retries`](crate::BusBuilder::no_retries): none, for every handler
///    and subscription;
/// 2. its own `#[handler(retry(..))]` (or [`SubscribeOptions::retry`](crate::SubscribeOptions::retry));
/// 3. the bus's default, [`BusBuilder::retry`](crate::BusBuilder::retry);
/// 4. none.
///
/// So `BusBuilder::retry(RetryPolicy::none())` turns off the default only; a handler with
/// its own `retry(..)` keeps it.
///
/// A retry runs only the handler that failed, on a task of its own after the delay: the
/// publisher, the other handlers and other events do not wait for it. Permanent errors and
/// panics are not retried; timeouts are (they are transient).
///
/// ```
/// use std::time::Duration;
/// use events::RetryPolicy;
///
/// let policy = RetryPolicy::exponential(5, Duration::from_millis(100))
///     .max_delay(Duration::from_secs(30))
///     .jitter(false);
/// assert_eq!(policy.delay_before(1), Duration::from_millis(100));
/// assert_eq!(policy.delay_before(3), Duration::from_millis(400));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    max_retries: u32,
    backoff: Backoff,
    max_delay: Duration,
    jitter: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backoff {
    Fixed(Duration),
    Exponential(Duration),
}

impl RetryPolicy {
    /// No retries: a failure is final.
    pub const fn none() -> RetryPolicy {
        RetryPolicy::fixed(0, Duration::ZERO)
    }

    /// Up to `max_retries` retries, `delay` apart.
    pub const fn fixed(max_retries: u32, delay: Duration) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            backoff: Backoff::Fixed(delay),
            max_delay: Duration::MAX,
            jitter: false,
        }
    }

    /// Up to `max_retries` retries, the first after `base`, each next one twice as late, at
    /// most 30 seconds apart (see [`max_delay`](Self::max_delay)), with jitter.
    pub const fn exponential(max_retries: u32, base: Duration) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            backoff: Backoff::Exponential(base),
            max_delay: Duration::from_secs(30),
            jitter: true,
        }
    }

    /// The longest delay between two attempts.
    pub const fn max_delay(mut self, max_delay: Duration) -> RetryPolicy {
        self.max_delay = max_delay;
        self
    }

    /// Whether each delay is randomized between half and all of its value, so that many
    /// handlers failing at once do not all retry at the same moment.
    pub const fn jitter(mut self, jitter: bool) -> RetryPolicy {
        self.jitter = jitter;
        self
    }

    /// How many retries at most (attempts = retries + 1).
    pub const fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The delay before retry number `retry` (1 for the first retry), before jitter.
    pub fn delay_before(&self, retry: u32) -> Duration {
        let delay = match self.backoff {
            Backoff::Fixed(d) => d,
            Backoff::Exponential(base) => {
                let factor = 1u32
                    .checked_shl(retry.saturating_sub(1))
                    .unwrap_or(u32::MAX);
                base.saturating_mul(factor)
            }
        };
        delay.min(self.max_delay)
    }

    /// [`delay_before`](Self::delay_before), with jitter when the policy has it.
    pub(crate) fn jittered_delay(&self, retry: u32) -> Duration {
        let delay = self.delay_before(retry);
        if !self.jitter || delay.is_zero() {
            return delay;
        }
        let half = delay / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(random() % nanos.saturating_add(1))
    }
}

impl Default for RetryPolicy {
    /// [`RetryPolicy::none`].
    fn default() -> Self {
        RetryPolicy::none()
    }
}

/// A per-thread xorshift: jitter needs spread, not secrecy.
fn random() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            std::collections::hash_map::RandomState::new()
                .hash_one(std::thread::current().id())
                | 1,
        );
    }
    use std::hash::BuildHasher;
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_doubles_up_to_the_cap() {
        let p = RetryPolicy::exponential(10, Duration::from_millis(100))
            .max_delay(Duration::from_secs(1))
            .jitter(false);
        let ms: Vec<u128> = (1..=6).map(|r| p.delay_before(r).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.delay_before(200), Duration::from_secs(1), "no overflow");
    }

    #[test]
    fn fixed_is_fixed_and_jitter_stays_within_half_to_all() {
        let p = RetryPolicy::fixed(3, Duration::from_millis(50));
        assert_eq!(p.delay_before(1), p.delay_before(3));
        let j = RetryPolicy::exponential(3, Duration::from_millis(100)).jitter(true);
        for _ in 0..1000 {
            let d = j.jittered_delay(2);
            assert!(
                d >= Duration::from_millis(100) && d <= Duration::from_millis(200),
                "{d:?}"
            );
        }
    }
}

/// What becomes of one handler call, decided in one place for the in-process path and every
/// transport ([`fate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fate {
    /// Done: delivered, filtered out, paused or skipped. A transport acknowledges it.
    Done,
    /// Run again after `after` as attempt `attempt`. In process, a task waits and runs it;
    /// a transport asks its broker to redeliver after the delay (a NAK with a delay).
    Retry {
        /// The delay, jittered if the policy says so.
        after: Duration,
        /// The next attempt's number (2 for the first retry).
        attempt: u32,
    },
    /// Failed for good: dead-letter the call with `error`. A transport terminates the
    /// message (it is not redelivered).
    DeadLetter {
        /// The error or panic, as the dead letter shows it.
        error: String,
        /// A permanent error or a panic, rather than retries running out (or none allowed).
        permanent: bool,
    },
}

/// The fate of a call that ended with `outcome` on attempt `attempt` (1 for the first),
/// under the handler's retry policy, if it has one: a transient failure is retried while
/// `attempt <= policy.max_retries()`; a permanent failure, a panic, or a transient one with
/// no retry left is dead-lettered.
///
/// ```
/// # use std::time::Duration;
/// use events::retry::{Fate, fate};
/// use events::{HandlerError, Outcome, RetryPolicy};
///
/// let policy = Some(RetryPolicy::fixed(2, Duration::from_secs(1)).jitter(false));
/// let timeout = || Outcome::Failed(HandlerError::transient("timeout"));
/// assert_eq!(fate(&timeout(), policy, 1), Fate::Retry { after: Duration::from_secs(1), attempt: 2 });
/// assert!(matches!(fate(&timeout(), policy, 3), Fate::DeadLetter { permanent: false, .. }));
/// assert!(matches!(fate(&Outcome::Panicked("boom".into()), policy, 1), Fate::DeadLetter { permanent: true, .. }));
/// assert_eq!(fate(&Outcome::Delivered, policy, 1), Fate::Done);
/// ```
pub fn fate(outcome: &crate::Outcome, policy: Option<RetryPolicy>, attempt: u32) -> Fate {
    use crate::Outcome;
    match outcome {
        Outcome::Failed(e) if e.is_transient() => match policy {
            Some(policy) if attempt <= policy.max_retries() => Fate::Retry {
                after: policy.jittered_delay(attempt),
                attempt: attempt + 1,
            },
            _ => dead_letter(outcome).unwrap_or(Fate::Done),
        },
        _ => dead_letter(outcome).unwrap_or(Fate::Done),
    }
}

/// `Some(DeadLetter)` when `outcome` is a failure that is final as it stands: a failure
/// (transient ones included: no retry is pending for it) or a panic.
pub(crate) fn dead_letter(outcome: &crate::Outcome) -> Option<Fate> {
    use crate::Outcome;
    match outcome {
        Outcome::Failed(e) => Some(Fate::DeadLetter {
            error: e.to_string(),
            permanent: !e.is_transient(),
        }),
        Outcome::Panicked(m) => Some(Fate::DeadLetter {
            error: format!("panicked: {m}"),
            permanent: true,
        }),
        _ => None,
    }
}
