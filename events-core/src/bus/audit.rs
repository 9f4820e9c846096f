//! Recording the bus's own actions as [`crate::audit`] events
//! ([`BusBuilder::audit`](crate::BusBuilder::audit)).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::Bus;
use crate::error::IngestError;

/// At most this many refusals a second are recorded (and as many at once).
const REFUSALS_PER_SECOND: u32 = 100;

pub(crate) struct Auditor {
    refusals: governor::RateLimiter<
        governor::state::NotKeyed,
        governor::state::InMemoryState,
        super::guard::TokioClock,
        governor::middleware::NoOpMiddleware<std::time::Duration>,
    >,
    suppressed: AtomicU64,
}

impl Auditor {
    pub(crate) fn new() -> Auditor {
        let quota = governor::Quota::per_second(
            std::num::NonZeroU32::new(REFUSALS_PER_SECOND).unwrap_or(std::num::NonZeroU32::MIN),
        );
        Auditor {
            refusals: governor::RateLimiter::direct_with_clock(
                quota,
                super::guard::TokioClock::new(),
            ),
            suppressed: AtomicU64::new(0),
        }
    }
}

impl Bus {
    /// Whether the bus records its actions.
    pub(crate) fn audits(&self) -> bool {
        self.inner.auditor.is_some()
    }

    /// Publishes an audit record: on the caller's thread, stored before the action returns
    /// (synchronous handlers run; async ones get it through recovery when durable), or,
    /// on a bus with a transport inside a runtime, queued (never waiting on the network). A
    /// record that cannot be published is logged.
    #[cfg(feature = "macros")]
    pub(crate) fn audit<E: crate::Event>(&self, record: E) {
        if !self.audits() {
            return;
        }
        let queued =
            self.inner.transport.is_some() && tokio::runtime::Handle::try_current().is_ok();
        let result = if queued {
            self.try_emit(record).map(|_| ())
        } else {
            self.publish_blocking(record).map(|_| ())
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "an audit record could not be published");
        }
    }

    /// Records a refusal at an entry point (within the rate of [`REFUSALS_PER_SECOND`]).
    pub(crate) fn audit_refusal(&self, event: Option<&'static str>, error: &IngestError) {
        let Some(auditor) = &self.inner.auditor else {
            return;
        };
        if auditor.refusals.check().is_err() {
            auditor.suppressed.fetch_add(1, Relaxed);
            return;
        }
        #[cfg(feature = "macros")]
        {
            let (principal, name, reason) = match error {
                IngestError::Forbidden { principal, name } => {
                    (principal.name().to_owned(), name.clone(), "forbidden")
                }
                IngestError::RateLimited {
                    principal, name, ..
                } => (
                    principal.name().to_owned(),
                    (*name).to_owned(),
                    "rate_limited",
                ),
                _ => return,
            };
            let _ = event;
            self.audit(crate::audit::Refused {
                principal,
                event: name,
                reason: reason.to_owned(),
                message: error.to_string(),
                suppressed: auditor.suppressed.swap(0, Relaxed),
            });
        }
        #[cfg(not(feature = "macros"))]
        let _ = (event, error);
    }
}
