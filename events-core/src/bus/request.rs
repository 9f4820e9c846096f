//! Request/response: [`Bus::request`] asks a [`Query`] and waits for its one responder.

use std::any::TypeId;
use std::future::{Future, IntoFuture};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::time::{Duration, Instant};

use tracing::Instrument;

use super::call::{call_limited, outcome};
use super::dispatch::{Outcomes, handler_span, publish_span, spans_on};
use super::failure::settle;
use super::run::run;
use super::{Bus, PublishError, Slot, Target};
use crate::envelope::{Options, PublishOptions};
use crate::event::Query;
use crate::handler::{Call, HandlerError, Invocation};
use crate::receipt::Outcome;

/// Why [`Bus::request`] got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The query could not be published (disabled or shut-down bus, depth limit, expired);
    /// no handler ran.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// No handler on this bus answers the query (it is declared outside the bus's
    /// [`scope`](crate::BusBuilder::scope), and its responder too).
    #[error(
        "no handler on this bus answers query `{query}`: add a `#[handler]` that returns its \
         response type, or widen the bus's `scope`"
    )]
    NoResponder {
        /// The query's name.
        query: &'static str,
    },
    /// The responder did not answer in time; the request's timeout or the bus's
    /// [`request_timeout`](crate::BusBuilder::request_timeout).
    #[error("query `{query}` got no answer within {after:?}")]
    TimedOut {
        /// The query's name.
        query: &'static str,
        /// How long the request waited.
        after: Duration,
    },
    /// The responder returned an error.
    #[error("the responder `{handler}` of query `{query}` failed: {error}")]
    Failed {
        /// The query's name.
        query: &'static str,
        /// The responder's name.
        handler: String,
        /// What it returned.
        error: HandlerError,
    },
    /// The responder panicked.
    #[error("the responder `{handler}` of query `{query}` panicked: {message}")]
    Panicked {
        /// The query's name.
        query: &'static str,
        /// The responder's name.
        handler: String,
        /// The panic's message.
        message: String,
    },
}

/// A request being made: set a timeout or publish options, then `.await` it for the answer.
///
/// Made by [`Bus::request`]; does nothing until awaited.
#[must_use = "a request does nothing until it is awaited"]
#[derive(Debug)]
pub struct Request<'a, Q> {
    bus: &'a Bus,
    query: Q,
    options: Option<PublishOptions>,
    timeout: Duration,
}

impl<Q: Query> Request<'_, Q> {
    /// How long to wait for the answer, instead of the bus's
    /// [`request_timeout`](crate::BusBuilder::request_timeout). A synchronous responder
    /// cannot be interrupted: the timeout bounds an `async fn` responder.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Publishes the query with these options (correlation id, source, metadata, ...).
    pub fn with(mut self, options: PublishOptions) -> Self {
        self.options = Some(options);
        self
    }
}

impl<'a, Q: Query> IntoFuture for Request<'a, Q> {
    type Output = Result<Q::Response, RequestError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.bus.ask(self.query, self.options, self.timeout))
    }
}

impl Bus {
    /// Asks a query and waits for its answer.
    ///
    /// The query's responder (the one `#[handler]` returning its response type) runs first;
    /// then its other handlers (listeners, wildcard handlers) run as for
    /// [`publish`](Self::publish), and the answer is returned. The query gets an envelope
    /// like any event: inside a handler it is a child of the event being handled.
    ///
    /// ```standalone_crate
    /// # use events::{Bus, Event, handler};
    /// # use std::time::Duration;
    /// #[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    /// #[event(kind = "query", response = u64)]
    /// struct CountOrders;
    ///
    /// #[handler]
    /// async fn count(_: &CountOrders) -> Result<u64, std::io::Error> {
    ///     Ok(42)
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = Bus::builder().build()?;
    /// let n = bus.request(CountOrders).timeout(Duration::from_secs(1)).await?;
    /// assert_eq!(n, 42);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`RequestError`]: the query could not be published, nobody on this bus answers it,
    /// the answer did not come within the timeout, or the responder failed or panicked.
    pub fn request<Q: Query>(&self, query: Q) -> Request<'_, Q> {
        Request {
            bus: self,
            query,
            options: None,
            timeout: self.inner.request_timeout,
        }
    }

    async fn ask<Q: Query>(
        &self,
        query: Q,
        options: impl Options,
        timeout: Duration,
    ) -> Result<Q::Response, RequestError> {
        let ctx = self.context::<Q>(None, options)?;
        let Some(responder) = self.inner.responders.get(&TypeId::of::<Q>()) else {
            return Err(RequestError::NoResponder { query: Q::NAME });
        };
        if !self.inner.observers.is_empty() {
            self.inner.observers.published(&ctx.meta);
        }
        let spans = spans_on();
        let publish = if spans {
            publish_span(&ctx.meta)
        } else {
            tracing::Span::none()
        };
        let lineage = ctx.meta.lineage();
        let inv = Invocation {
            event: &query,
            payload: &query,
            ctx: &ctx,
            states: &responder.states,
        };
        let mut answer: Option<Q::Response> = None;
        let started = Instant::now();
        let call = answer_into(responder, &inv, &mut answer);
        let call = crate::context::scoped(lineage, call);
        let handler = if spans {
            handler_span(responder, &ctx.meta, 1)
        } else {
            tracing::Span::none()
        };
        let result = tokio::time::timeout(timeout, call.instrument(handler))
            .instrument(publish.clone())
            .await;
        let timed_out = result.is_err();
        let outcome = result.unwrap_or_else(|_| {
            Outcome::Failed(HandlerError::transient(crate::HandlerTimedOut {
                after: timeout,
            }))
        });
        // Logged and told to the observers as any handler's outcome; a failure comes back
        // out of the record.
        let mut outcomes = Outcomes::default();
        let observed = !self.inner.observers.is_empty();
        settle(
            0,
            responder,
            None,
            &ctx,
            &mut outcomes,
            outcome,
            observed.then_some(started),
        );
        let handler = || responder.name().to_owned();
        let reply = match (outcomes.exceptions.pop(), answer) {
            (None, Some(answer)) => Ok(answer),
            (_, _) if timed_out => Err(RequestError::TimedOut {
                query: Q::NAME,
                after: timeout,
            }),
            (Some((_, Outcome::Panicked(message))), _) => Err(RequestError::Panicked {
                query: Q::NAME,
                handler: handler(),
                message,
            }),
            (Some((_, Outcome::Failed(error))), _) => Err(RequestError::Failed {
                query: Q::NAME,
                handler: handler(),
                error,
            }),
            (_, _) => Err(RequestError::Failed {
                query: Q::NAME,
                handler: handler(),
                error: HandlerError::permanent("the responder returned no answer"),
            }),
        };

        // Then the listeners, as `publish` runs them.
        let route = self.route(TypeId::of::<Q>(), Q::info());
        let slots = self.slots_of(&route, TypeId::of::<Q>());
        if !slots.is_empty() {
            let mut outcomes = Outcomes::default();
            run(slots, &query, &ctx, &mut outcomes)
                .instrument(publish)
                .await;
        }
        reply
    }
}

/// Calls the responder `slot`, which writes its answer into `answer`.
async fn answer_into<R: Send + 'static>(
    slot: &Slot,
    inv: &Invocation<'_>,
    answer: &mut Option<R>,
) -> Outcome {
    match &slot.target {
        Target::Handler(Call::Respond(f)) => {
            outcome(catch_unwind(AssertUnwindSafe(|| f(inv, answer))))
        }
        Target::Handler(Call::RespondAsync(f)) => call_limited(slot, || f(inv, answer)).await,
        _ => Outcome::Failed(HandlerError::permanent(
            "a handler that does not answer was taken for a responder: a bug in `events`",
        )),
    }
}
