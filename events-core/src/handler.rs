//! Handlers: their errors ([`HandlerError`]), what they may take ([`State`], `&Context`) and
//! return, and their entry in the registry ([`HandlerInfo`]).

use std::any::{Any, TypeId};
use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;

pub use crate::error::{HandlerError, HandlerTimedOut};

use crate::context::Context;
use crate::event::{EventInfo, Payload};

/// What a handler returns: `()` or `Result<(), E>` where `E: Into<HandlerError>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a valid handler return type",
    label = "handlers return `()` or `Result<(), E>`",
    note = "return `()` or `Result<(), E>` where `E` converts into `events::HandlerError`: any `std::error::Error + Send + Sync`, `anyhow::Error`, `String` or `&str`"
)]
pub trait IntoHandlerResult {
    /// Converts the handler's return value.
    fn into_handler_result(self) -> Result<(), HandlerError>;
}

impl IntoHandlerResult for () {
    #[inline]
    fn into_handler_result(self) -> Result<(), HandlerError> {
        Ok(())
    }
}

impl<E: Into<HandlerError>> IntoHandlerResult for Result<(), E> {
    #[inline]
    fn into_handler_result(self) -> Result<(), HandlerError> {
        self.map_err(Into::into)
    }
}

/// What a query's responder returns: the answer `T`, or `Result<T, E>` where
/// `E: Into<HandlerError>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not answer this query: its response type is `{T}`",
    label = "expected `{T}` or `Result<{T}, E>`",
    note = "a query's responder returns the type named in `#[event(response = ..)]`, or a `Result` of it"
)]
pub trait IntoResponse<T> {
    /// The answer, or why there is none.
    fn into_response(self) -> Result<T, HandlerError>;
}

impl<T> IntoResponse<T> for T {
    #[inline]
    fn into_response(self) -> Result<T, HandlerError> {
        Ok(self)
    }
}

impl<T, E: Into<HandlerError>> IntoResponse<T> for Result<T, E> {
    #[inline]
    fn into_response(self) -> Result<T, HandlerError> {
        self.map_err(Into::into)
    }
}

/// Shared state given to the bus with [`BusBuilder::state`](crate::BusBuilder::state) and taken
/// by a handler as a parameter: `db: State<Db>`.
///
/// A handler that asks for a `State<T>` the builder was not given makes
/// [`BusBuilder::build`](crate::BusBuilder::build) fail, so it never fails at run time.
/// Taking it costs one reference-count increment. It dereferences to `T`; its own field is
/// private so that `state.0` reaches *your* type's first field.
pub struct State<T: ?Sized>(Arc<T>);

impl<T: ?Sized> State<T> {
    /// The shared value itself.
    pub fn arc(this: &State<T>) -> &Arc<T> {
        &this.0
    }
}

impl<T> State<T> {
    /// A `State` holding `value`, to call a handler directly (in a unit test, say): the bus
    /// makes its own from [`BusBuilder::state`](crate::BusBuilder::state).
    ///
    /// ```
    /// # use events::State;
    /// # struct Ledger { total: std::sync::Mutex<u64> }
    /// let ledger = State::new(Ledger { total: std::sync::Mutex::new(0) });
    /// let same = ledger.clone(); // clones share the value
    /// *same.total.lock().unwrap() += 5;
    /// assert_eq!(*ledger.total.lock().unwrap(), 5);
    /// ```
    pub fn new(value: T) -> State<T> {
        State(Arc::new(value))
    }
}

/// Shares a value already behind an `Arc` (to keep a handle on it in a test).
impl<T: ?Sized> From<Arc<T>> for State<T> {
    fn from(value: Arc<T>) -> State<T> {
        State(value)
    }
}

impl<T: ?Sized> Deref for State<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: ?Sized> Clone for State<T> {
    fn clone(&self) -> Self {
        State(Arc::clone(&self.0))
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for State<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("State").field(&&*self.0).finish()
    }
}

/// The state a handler parameter needs from the builder.
#[derive(Clone, Copy, Debug)]
pub struct StateKey {
    pub(crate) type_id: TypeId,
    pub(crate) type_name: &'static str,
    pub(crate) written: Option<&'static str>,
}

impl StateKey {
    pub(crate) fn of<T: 'static>() -> StateKey {
        StateKey {
            type_id: TypeId::of::<T>(),
            type_name: std::any::type_name::<T>(),
            written: None,
        }
    }
    /// The Rust name of the state's type (`std::any::type_name`).
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }
    /// The state's type as the handler's code writes it (`Mutex<u64>`), for messages; its
    /// [`type_name`](Self::type_name) when not known.
    pub fn written(&self) -> &'static str {
        self.written.unwrap_or(self.type_name)
    }
}

pub(crate) type AnyState = Arc<dyn Any + Send + Sync>;
pub(crate) type AnyEventRef<'a> = &'a (dyn Any + Send + Sync);

/// Everything one handler call can draw its parameters from. Not public API.
#[doc(hidden)]
#[derive(Clone, Copy)]
pub struct Invocation<'a> {
    pub(crate) event: AnyEventRef<'a>,
    /// The same event, as `&AnyEvent`, for wildcard handlers and filters.
    pub(crate) payload: &'a dyn Payload,
    pub(crate) ctx: &'a Context,
    /// Indexed by parameter position; `None` for parameters that are not `State<T>`.
    pub(crate) states: &'a [Option<AnyState>],
}

impl fmt::Debug for Invocation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invocation")
            .field("meta", self.ctx.meta())
            .finish_non_exhaustive()
    }
}

/// The error of an event given to a handler of another type; never expected.
#[cold]
#[inline(never)]
fn misrouted(expected: &'static str) -> HandlerError {
    HandlerError::permanent(format!(
        "event routed to a handler of another type (expected `{expected}`): a bug in `events`"
    ))
}

impl<'a> Invocation<'a> {
    /// The event, as the type the handler declared.
    #[inline(always)]
    pub fn event<E: 'static>(&self) -> Result<&'a E, HandlerError> {
        match self.event.downcast_ref::<E>() {
            Some(event) => Ok(event),
            None => Err(misrouted(std::any::type_name::<E>())),
        }
    }
}

/// The type of a handler's first parameter: an [`Event`](crate::Event) type (the handler
/// gets that type) or [`AnyEvent`](crate::AnyEvent) (a wildcard handler: every event, or
/// those its `pattern` matches). Not public API.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event",
    label = "not an event",
    note = "add `#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]` to the type, or take `&events::AnyEvent` to receive every event"
)]
pub trait HandlerEvent {
    /// The event type, or `None` for `AnyEvent`.
    const EVENT: Option<fn() -> &'static EventInfo>;
    /// The handler's first argument, out of one call.
    fn extract<'a>(inv: &Invocation<'a>) -> Result<&'a Self, HandlerError>;
    /// The handler's first argument, for a filter.
    fn from_payload(payload: &dyn Payload) -> Option<&Self>;
}

impl<E: crate::Event> HandlerEvent for E {
    const EVENT: Option<fn() -> &'static EventInfo> = Some(E::info);
    #[inline]
    fn extract<'a>(inv: &Invocation<'a>) -> Result<&'a Self, HandlerError> {
        inv.event::<E>()
    }
    #[inline]
    fn from_payload(payload: &dyn Payload) -> Option<&Self> {
        payload.as_any().downcast_ref::<E>()
    }
}

impl HandlerEvent for dyn Payload {
    const EVENT: Option<fn() -> &'static EventInfo> = None;
    #[inline]
    fn extract<'a>(inv: &Invocation<'a>) -> Result<&'a Self, HandlerError> {
        Ok(inv.payload)
    }
    #[inline]
    fn from_payload(payload: &dyn Payload) -> Option<&Self> {
        Some(payload)
    }
}

/// A handler parameter after the event: `&Context` or `State<T>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler parameter",
    label = "not something the bus can pass to a handler",
    note = "after the event (`&E`), a handler takes only `&events::Context` and `events::State<T>` parameters"
)]
pub trait FromInvocation<'a>: Sized {
    /// The state this parameter needs from the builder; checked at `build()`.
    fn requirement() -> Option<StateKey> {
        None
    }
    /// Takes the parameter at position `index` out of one call.
    fn from_invocation(inv: &Invocation<'a>, index: usize) -> Result<Self, HandlerError>;
}

/// The handler an [`InboxKey`](crate::outbox::InboxKey) parameter belongs to: a state the
/// bus gives each handler that takes one. Not public API.
#[doc(hidden)]
#[derive(Debug)]
pub(crate) struct InboxOf(pub(crate) &'static str);

/// An `#[handler(inbox)]` handler's key of this delivery, to record in its transaction.
impl<'a> FromInvocation<'a> for crate::outbox::InboxKey {
    fn requirement() -> Option<StateKey> {
        Some(StateKey::of::<InboxOf>())
    }
    fn from_invocation(inv: &Invocation<'a>, index: usize) -> Result<Self, HandlerError> {
        let handler = inv
            .states
            .get(index)
            .and_then(|s| s.as_ref())
            .and_then(|s| s.downcast_ref::<InboxOf>())
            .map(|h| h.0)
            .ok_or_else(|| HandlerError::permanent("no inbox for this handler"))?;
        let meta = inv.ctx.meta();
        Ok(crate::outbox::InboxKey::new(
            handler,
            meta.source(),
            crate::wire::cloudevents_id(meta),
        ))
    }
}

impl<'a> FromInvocation<'a> for &'a Context {
    #[inline]
    fn from_invocation(inv: &Invocation<'a>, _index: usize) -> Result<Self, HandlerError> {
        Ok(inv.ctx)
    }
}

impl<'a, T: Send + Sync + 'static> FromInvocation<'a> for State<T> {
    fn requirement() -> Option<StateKey> {
        Some(StateKey::of::<T>())
    }
    #[inline]
    fn from_invocation(inv: &Invocation<'a>, index: usize) -> Result<Self, HandlerError> {
        inv.states
            .get(index)
            .and_then(|s| s.clone())
            .and_then(|s| s.downcast::<T>().ok())
            .map(State)
            .ok_or_else(|| {
                HandlerError::permanent(format!(
                    "no `State<{}>` for this handler: a bug in `events`, `build()` checks it",
                    std::any::type_name::<T>()
                ))
            })
    }
}

/// What a handler call returns.
pub(crate) type HandlerResult = Result<(), HandlerError>;
/// The boxed future of an async handler.
#[doc(hidden)]
pub type BoxFuture<'a> = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'a>>;

/// How the bus calls a link-time handler. Not public API.
#[doc(hidden)]
#[derive(Clone, Copy)]
pub enum Call {
    /// A plain `fn`.
    Sync(fn(&Invocation<'_>) -> Result<(), HandlerError>),
    /// An `async fn`.
    Async(for<'a> fn(&'a Invocation<'a>) -> BoxFuture<'a>),
    /// A plain `fn` answering a query: writes the answer into the `Option<Q::Response>`.
    Respond(fn(&Invocation<'_>, &mut (dyn Any + Send)) -> Result<(), HandlerError>),
    /// An `async fn` answering a query.
    RespondAsync(for<'a> fn(&'a Invocation<'a>, &'a mut (dyn Any + Send)) -> BoxFuture<'a>),
}

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Call::Sync(_) => "Call::Sync",
            Call::Async(_) => "Call::Async",
            Call::Respond(_) => "Call::Respond",
            Call::RespondAsync(_) => "Call::RespondAsync",
        })
    }
}

/// A `#[handler]` function's entry in the registry.
pub struct HandlerInfo {
    pub(crate) name: &'static str,
    /// `None` for a wildcard (`&AnyEvent`) handler.
    pub(crate) event: Option<fn() -> &'static EventInfo>,
    /// `#[handler(pattern = "..")]`, for wildcard handlers.
    pub(crate) pattern: Option<&'static str>,
    pub(crate) priority: i32,
    pub(crate) call: Call,
    pub(crate) filter: Option<fn() -> crate::Filter>,
    pub(crate) params: &'static [fn() -> Option<StateKey>],
    pub(crate) is_async: bool,
    pub(crate) module: &'static str,
    /// The function's path: `module::ident`.
    pub(crate) function: &'static str,
    pub(crate) concurrency: Option<u32>,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) retry: Option<crate::RetryPolicy>,
    pub(crate) durable: bool,
    pub(crate) inbox: bool,
    pub(crate) replay: bool,
    pub(crate) file: &'static str,
    pub(crate) line: u32,
}

impl HandlerInfo {
    /// The handler's name: `#[handler(name = "..")]`, or the function's path
    /// (`my_crate::billing::charge`).
    pub fn name(&self) -> &'static str {
        self.name
    }
    /// The event type it handles; `None` for a wildcard (`&AnyEvent`) handler.
    pub fn event(&self) -> Option<&'static EventInfo> {
        self.event.map(|e| e())
    }
    /// The name pattern of a wildcard handler (`#[handler(pattern = "order.*")]`); `None`
    /// for typed handlers and for wildcard handlers that receive every event.
    pub fn pattern(&self) -> Option<&'static str> {
        self.pattern
    }
    /// The name of the event it handles, or its pattern (`>` for every event).
    pub fn event_name(&self) -> &'static str {
        match self.event() {
            Some(e) => e.name,
            None => self.pattern.unwrap_or(">"),
        }
    }
    /// Its priority: higher runs first.
    pub fn priority(&self) -> i32 {
        self.priority
    }
    /// Whether it is an `async fn`.
    pub fn is_async(&self) -> bool {
        self.is_async
    }
    /// Whether it answers a query (returns the query's response type).
    pub fn is_responder(&self) -> bool {
        matches!(self.call, Call::Respond(_) | Call::RespondAsync(_))
    }
    /// Whether it has a `filter`.
    pub fn has_filter(&self) -> bool {
        self.filter.is_some()
    }
    /// How many calls may run at once (`#[handler(concurrency = N)]`), if limited.
    pub fn concurrency(&self) -> Option<u32> {
        self.concurrency
    }
    /// How long one call may take (`#[handler(timeout = "2s")]`), if bounded.
    pub fn timeout(&self) -> Option<std::time::Duration> {
        self.timeout_ms.map(std::time::Duration::from_millis)
    }
    /// Its own retry policy (`#[handler(retry(..))]`), if it has one.
    pub fn retry(&self) -> Option<crate::RetryPolicy> {
        self.retry
    }
    /// Whether it is `#[handler(durable)]`: with an event store, its deliveries are recorded,
    /// [`Bus::recover`](crate::Bus::recover) completes the ones a crash interrupted, and a
    /// new durable handler catches up from the beginning of the history.
    pub fn is_durable(&self) -> bool {
        self.durable
    }
    /// Whether it is `#[handler(inbox)]`: a delivery whose [`InboxKey`](crate::outbox::InboxKey)
    /// the store's inbox has recorded is not handed to it again.
    pub fn is_inbox(&self) -> bool {
        self.inbox
    }
    /// Whether [`Bus::replay`](crate::Bus::replay) may deliver to it: `false` for
    /// `#[handler(replay = false)]` (handlers with side effects, such as sending mail).
    pub fn replays(&self) -> bool {
        self.replay
    }
    /// The module it is defined in, e.g. `my_crate::billing`.
    pub fn module(&self) -> &'static str {
        self.module
    }
    /// The function's path, e.g. `my_crate::billing::charge` (the default name).
    pub fn function(&self) -> &'static str {
        self.function
    }
    /// Where it is defined: `(file, line)`.
    pub fn location(&self) -> (&'static str, u32) {
        (self.file, self.line)
    }
    /// The `State<T>` types it takes.
    pub fn states(&self) -> impl Iterator<Item = StateKey> + '_ {
        self.params.iter().filter_map(|p| p())
    }
}

impl fmt::Debug for HandlerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerInfo")
            .field("name", &self.name)
            .field("event", &self.event_name())
            .field("version", &self.event().map(EventInfo::version))
            .field("priority", &self.priority)
            .field("is_async", &self.is_async)
            .field("location", &format_args!("{}:{}", self.file, self.line))
            .finish_non_exhaustive()
    }
}
