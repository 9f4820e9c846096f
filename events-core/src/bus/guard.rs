//! The gate of every entry point that takes outside input: who the caller is
//! ([`Principal`]), whether a rule lets it publish the event ([`AccessRules`]), and whether a
//! rate limit lets it now ([`RateLimits`], GCRA from `governor`). Checked before the payload
//! is read; a refusal is an [`IngestError`] the observers hear of.

use std::time::Duration;

use governor::clock::Clock;
use governor::{Quota, RateLimiter};

use super::Bus;
use crate::error::IngestError;
use crate::event::EventInfo;
use crate::security::{AccessRules, Limit, Principal, RateLimit, RateLimits};

/// Time as tokio's clock tells it: the real monotonic clock, or the paused clock of a test
/// (`tokio::time::pause`), so that limits are testable without waiting.
#[derive(Clone, Debug)]
pub(crate) struct TokioClock {
    base: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose zero is now.
    pub(crate) fn new() -> TokioClock {
        TokioClock {
            base: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        tokio::time::Instant::now().saturating_duration_since(self.base)
    }
}

type Keyed<K> = RateLimiter<
    K,
    governor::state::keyed::DefaultKeyedStateStore<K>,
    TokioClock,
    governor::middleware::NoOpMiddleware<Duration>,
>;

/// Past this many keys, a limiter forgets those whose budget is whole again.
const RETAIN_ABOVE: usize = 10_000;

pub(crate) struct Guard {
    rules: Option<AccessRules>,
    per_principal: Option<Keyed<Principal>>,
    per_event: Vec<(String, Keyed<&'static str>)>,
    clock: TokioClock,
}

fn keyed<K: std::hash::Hash + Eq + Clone>(limit: RateLimit, clock: &TokioClock) -> Keyed<K> {
    let quota = Quota::with_period(limit.every)
        .unwrap_or_else(|| Quota::per_second(std::num::NonZeroU32::MAX))
        .allow_burst(limit.burst);
    RateLimiter::dashmap_with_clock(quota, clock.clone())
}

impl Guard {
    /// The gate, or `None` when there is nothing to check.
    pub(crate) fn new(rules: Option<AccessRules>, limits: Option<RateLimits>) -> Option<Guard> {
        if rules.is_none() && limits.is_none() {
            return None;
        }
        let clock = TokioClock::new();
        let limits = limits.unwrap_or_default();
        Some(Guard {
            rules,
            per_principal: limits.per_principal.map(|l| keyed(l, &clock)),
            per_event: limits
                .per_event
                .into_iter()
                .map(|(pattern, l)| (pattern, keyed(l, &clock)))
                .collect(),
            clock,
        })
    }

    /// Whether the rules let `principal` publish `name` (as the caller sent it).
    pub(super) fn admit(&self, principal: &Principal, name: &str) -> Result<(), IngestError> {
        match &self.rules {
            Some(rules) if !rules.permits(principal, name) => Err(IngestError::Forbidden {
                principal: principal.clone(),
                name: crate::ingest::clip(name),
            }),
            _ => Ok(()),
        }
    }

    /// Whether the limits let `principal` publish one `info` now; takes one from each
    /// budget when they do.
    pub(super) fn meter(
        &self,
        principal: &Principal,
        info: &'static EventInfo,
    ) -> Result<(), IngestError> {
        let refuse = |limit, wait: Duration| IngestError::RateLimited {
            principal: principal.clone(),
            name: info.name,
            limit,
            retry_after: wait,
        };
        if let Some(limiter) = &self.per_principal {
            if limiter.len() > RETAIN_ABOVE {
                limiter.retain_recent();
            }
            if let Err(not_until) = limiter.check_key(principal) {
                return Err(refuse(
                    Limit::Principal,
                    not_until.wait_time_from(self.clock.now()),
                ));
            }
        }
        if let Some((_, limiter)) = self
            .per_event
            .iter()
            .find(|(pattern, _)| crate::pattern::matches(pattern, info.name))
        {
            if let Err(not_until) = limiter.check_key(&info.name) {
                return Err(refuse(
                    Limit::Event,
                    not_until.wait_time_from(self.clock.now()),
                ));
            }
        }
        Ok(())
    }
}

/// The entry points that take outside input, for one authenticated caller:
/// [`Bus::ingress`].
#[derive(Clone, Copy)]
pub struct Ingress<'a> {
    pub(crate) bus: &'a Bus,
    pub(crate) principal: &'a Principal,
}

impl std::fmt::Debug for Ingress<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingress")
            .field("principal", self.principal)
            .finish_non_exhaustive()
    }
}

static ANONYMOUS: std::sync::LazyLock<Principal> = std::sync::LazyLock::new(Principal::anonymous);

/// The caller of the entry points that take no principal.
pub(crate) fn anonymous() -> &'static Principal {
    &ANONYMOUS
}

impl Bus {
    /// The entry points that take outside input (JSON, CloudEvents), for the caller
    /// `principal`: what authenticated it (an HTTP layer, a verified signature) says who it
    /// is. With [access rules](crate::BusBuilder::access), it may publish only what they
    /// allow; with [rate limits](crate::BusBuilder::rate_limits), only as often as they
    /// allow; both are checked before the payload is read, and a refusal
    /// ([`IngestError::Forbidden`], [`IngestError::RateLimited`]) dispatches and stores
    /// nothing. Its events carry the principal ([`Meta::principal`](crate::Meta::principal)).
    ///
    /// [`Bus::publish_json`] and the other entry points without a principal act as
    /// [`Principal::anonymous`].
    ///
    /// ```standalone_crate
    /// # use events::{Bus, Event, IngestError, PublishOptions};
    /// # use events::security::{AccessRules, Principal};
    /// #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    /// #[event(name = "payment.captured")]
    /// struct PaymentCaptured { cents: u64 }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = Bus::builder().access(AccessRules::new().allow("billing", "payment.>")).build()?;
    /// let billing = Principal::new("billing")?;
    /// let body = br#"{ "cents": 500 }"#;
    /// bus.ingress(&billing).publish_json("payment.captured", 1, body, PublishOptions::new()).await?;
    ///
    /// let err = bus.publish_json("payment.captured", 1, body, PublishOptions::new()).await.unwrap_err();
    /// assert!(matches!(err, IngestError::Forbidden { .. }));
    /// # Ok(()) }
    /// ```
    pub fn ingress<'a>(&'a self, principal: &'a Principal) -> Ingress<'a> {
        Ingress {
            bus: self,
            principal,
        }
    }

    /// The access check for `name` as sent; the observers hear of a refusal.
    #[inline]
    pub(crate) fn admit(&self, principal: &Principal, name: &str) -> Result<(), IngestError> {
        match &self.inner.guard {
            Some(guard) => guard
                .admit(principal, name)
                .map_err(|e| self.invalid(None, e)),
            None => Ok(()),
        }
    }

    /// The rate check for `info`; the observers hear of a refusal.
    #[inline]
    pub(crate) fn meter(
        &self,
        principal: &Principal,
        info: &'static EventInfo,
    ) -> Result<(), IngestError> {
        match &self.inner.guard {
            Some(guard) => guard
                .meter(principal, info)
                .map_err(|e| self.invalid(Some(info.name), e)),
            None => Ok(()),
        }
    }
}

/// The metadata entry that records `principal` in its events (none for the anonymous one).
#[inline]
pub(crate) fn record(principal: &Principal, options: &mut crate::envelope::PublishOptions) {
    if !std::ptr::eq(principal, anonymous()) && !principal.is_anonymous() {
        options.metadata.insert(
            crate::security::PRINCIPAL_KEY.to_owned(),
            crate::MetaValue::Text(principal.name().to_owned()),
        );
    }
}
