//! [`Loopback`]: an in-memory broker with a broker's semantics, for tests without one.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{
    BoxFuture, Consumer, ConsumerSpec, Delivery, Outgoing, SendError, Sent, Settle, Transport,
    TransportError,
};
use serde_json::{Map, Value};

/// An in-memory [`Transport`] that behaves like a durable broker: one log that every send
/// appends to (an event id sent again is stored once), one durable consumer per handler
/// that starts at the beginning of the log and survives its process's consumers being
/// stopped and started again, competing members within a consumer, redelivery after a nak
/// (after its delay) and of a message whose delivery was dropped unsettled, `max_deliver`,
/// and terminated messages kept as dead letters.
///
/// Clones share one broker: build two buses with clones of one `Loopback` to test two
/// processes. Messages travel as structured-mode CloudEvents JSON, so the receiving bus reads
/// them through its ingest path exactly as it reads a broker's.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use events::transport::Loopback;
/// let broker = Loopback::new();
/// let bus = events::Bus::builder().no_handlers().transport(broker.clone()).build()?;
/// let _consumers = bus.consume().await?;
/// assert!(broker.messages().is_empty());
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Loopback {
    shared: Arc<Shared>,
}

/// Settings of a [`Loopback`].
#[derive(Debug, Clone)]
pub struct LoopbackOptions {
    local: HashSet<String>,
    max_messages: usize,
}

impl Default for LoopbackOptions {
    fn default() -> Self {
        LoopbackOptions {
            local: HashSet::new(),
            max_messages: 100_000,
        }
    }
}

impl LoopbackOptions {
    /// The defaults: nothing local, at most 100,000 messages.
    pub fn new() -> LoopbackOptions {
        LoopbackOptions::default()
    }

    /// Events named `name` stay in the process ([`Transport::is_local`]).
    #[must_use]
    pub fn local(mut self, name: impl Into<String>) -> LoopbackOptions {
        self.local.insert(name.into());
        self
    }

    /// At most `messages` in the log; a send past it is refused
    /// ([`SendError::NotSent`]), so a test's memory stays bounded.
    #[must_use]
    pub fn max_messages(mut self, messages: usize) -> LoopbackOptions {
        self.max_messages = messages;
        self
    }
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Woken on every send, nak and dropped delivery.
    notify: Notify,
    options: LoopbackOptions,
}

#[derive(Default)]
struct State {
    /// Whether the broker is unreachable ([`Loopback::set_offline`]).
    offline: bool,
    log: Vec<Message>,
    ids: HashMap<String, u64>,
    groups: HashMap<&'static str, Group>,
    dead: Vec<LoopbackDeadLetter>,
}

struct Message {
    name: String,
    attributes: Option<Map<String, Value>>,
    body: Arc<[u8]>,
}

struct Group {
    spec: ConsumerSpec,
    /// The next log index not yet looked at.
    next: usize,
    /// Messages to deliver again: (when, log index, deliveries so far).
    again: VecDeque<(Instant, usize, u32)>,
}

/// A message a consumer terminated ([`Settle::Terminate`]), kept by a [`Loopback`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoopbackDeadLetter {
    /// The handler it was delivered to.
    pub handler: String,
    /// Why it was terminated.
    pub reason: String,
    /// The message's body.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Loopback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Loopback")
            .field("messages", &state.log.len())
            .field("consumers", &state.groups.len())
            .field("dead_letters", &state.dead.len())
            .finish()
    }
}

impl Loopback {
    /// A broker with the default [`LoopbackOptions`].
    pub fn new() -> Loopback {
        Loopback::default()
    }

    /// A broker with `options`.
    pub fn with_options(options: LoopbackOptions) -> Loopback {
        Loopback {
            shared: Arc::new(Shared {
                options,
                ..Shared::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every message sent, in order, as JSON (a body that is not JSON is a string).
    pub fn messages(&self) -> Vec<Value> {
        self.lock()
            .log
            .iter()
            .map(|m| {
                serde_json::from_slice(&m.body)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&m.body).into()))
            })
            .collect()
    }

    /// Makes the broker unreachable (`true`: every send fails with [`SendError::NotSent`],
    /// as a broker that is down) or reachable again, for tests of what a bus does meanwhile
    /// (its outbox keeps publishing, its forwarder backs off).
    pub fn set_offline(&self, offline: bool) {
        self.lock().offline = offline;
    }

    /// How many messages the log holds (an event id sent again is stored once: see
    /// [`Sent::duplicate`]).
    pub fn len(&self) -> usize {
        self.lock().log.len()
    }

    /// Whether nothing was sent.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The messages consumers terminated, oldest first.
    pub fn dead_letters(&self) -> Vec<LoopbackDeadLetter> {
        self.lock().dead.clone()
    }

    /// Puts a message on the log as a foreign publisher would: `body` on the address of
    /// events named `name`, structured mode (`attributes` `None`) or binary mode (the
    /// attributes as text, `body` the data). Nothing checks it here: the consuming bus does.
    ///
    /// # Errors
    /// [`SendError::NotSent`] when the log is full.
    pub fn inject(
        &self,
        name: &str,
        attributes: Option<Map<String, Value>>,
        body: impl Into<Vec<u8>>,
    ) -> Result<u64, SendError> {
        self.append(None, name.to_owned(), attributes, body.into())
            .map(|sent| sent.sequence)
    }

    fn append(
        &self,
        id: Option<String>,
        name: String,
        attributes: Option<Map<String, Value>>,
        body: Vec<u8>,
    ) -> Result<Sent, SendError> {
        let mut state = self.lock();
        if state.offline {
            return Err(SendError::NotSent(
                "the loopback broker is offline (`Loopback::set_offline`)".into(),
            ));
        }
        if let Some(seq) = id.as_ref().and_then(|id| state.ids.get(id)) {
            return Ok(Sent::duplicate(*seq));
        }
        if state.log.len() >= self.shared.options.max_messages {
            return Err(SendError::NotSent(format!(
                "the loopback broker holds its maximum of {} messages",
                self.shared.options.max_messages
            )));
        }
        state.log.push(Message {
            name,
            attributes,
            body: body.into(),
        });
        let seq = state.log.len() as u64;
        if let Some(id) = id {
            state.ids.insert(id, seq);
        }
        drop(state);
        self.shared.notify.notify_waiters();
        Ok(Sent::new(seq))
    }
}

impl Transport for Loopback {
    fn is_local(&self, name: &str) -> bool {
        self.shared.options.local.contains(name)
    }

    fn send<'a>(&'a self, message: Outgoing<'a>) -> BoxFuture<'a, Result<Sent, SendError>> {
        let sent = message
            .structured()
            .map_err(|e| SendError::NotSent(format!("the event cannot be serialized: {e}")))
            .and_then(|body| {
                self.append(Some(message.id()), message.name().to_owned(), None, body)
            });
        Box::pin(std::future::ready(sent))
    }

    fn consumer<'a>(
        &'a self,
        spec: ConsumerSpec,
    ) -> BoxFuture<'a, Result<Box<dyn Consumer>, TransportError>> {
        let handler = spec.handler;
        let mut state = self.lock();
        let group = state.groups.entry(handler).or_insert_with(|| Group {
            spec: spec.clone(),
            next: 0,
            again: VecDeque::new(),
        });
        let refused = (group.spec != spec).then(|| TransportError::Refused {
            what: format!("consumer `{handler}`"),
            reason: format!(
                "it exists with other settings ({:?}) than asked ({spec:?})",
                group.spec
            ),
        });
        drop(state);
        let consumer = LoopbackConsumer {
            broker: self.clone(),
            handler,
        };
        Box::pin(std::future::ready(match refused {
            Some(e) => Err(e),
            None => Ok(Box::new(consumer) as Box<dyn Consumer>),
        }))
    }

    fn address(&self, name: &str) -> String {
        format!("loopback.{name}")
    }
}

struct LoopbackConsumer {
    broker: Loopback,
    handler: &'static str,
}

impl LoopbackConsumer {
    /// The next message due, or when the next one falls due.
    fn take(&self) -> Result<LoopbackDelivery, Option<Instant>> {
        let mut state = self.broker.lock();
        let State { log, groups, .. } = &mut *state;
        let Some(group) = groups.get_mut(self.handler) else {
            return Err(None);
        };
        let now = Instant::now();
        if let Some(i) = group.again.iter().position(|(at, ..)| *at <= now) {
            let Some((_, index, delivered)) = group.again.remove(i) else {
                return Err(None);
            };
            return Ok(self.delivery(&log[index], index, delivered + 1));
        }
        while group.next < log.len() {
            let index = group.next;
            group.next += 1;
            if group.spec.takes(&log[index].name) {
                return Ok(self.delivery(&log[index], index, 1));
            }
        }
        Err(group.again.iter().map(|(at, ..)| *at).min())
    }

    fn delivery(&self, message: &Message, index: usize, attempt: u32) -> LoopbackDelivery {
        LoopbackDelivery {
            broker: self.broker.clone(),
            handler: self.handler,
            address: self.broker.address(&message.name),
            name: message.name.clone(),
            attributes: message.attributes.clone(),
            body: Arc::clone(&message.body),
            index,
            attempt,
            settled: false,
        }
    }
}

impl Consumer for LoopbackConsumer {
    fn next(&mut self) -> BoxFuture<'_, Option<Box<dyn Delivery>>> {
        Box::pin(async move {
            loop {
                let notified = self.broker.shared.notify.notified();
                let mut notified = std::pin::pin!(notified);
                notified.as_mut().enable();
                match self.take() {
                    Ok(delivery) => return Some(Box::new(delivery) as Box<dyn Delivery>),
                    Err(Some(at)) => {
                        let _ = tokio::time::timeout_at(at, notified).await;
                    }
                    Err(None) => notified.await,
                }
            }
        })
    }
}

struct LoopbackDelivery {
    broker: Loopback,
    handler: &'static str,
    address: String,
    name: String,
    attributes: Option<Map<String, Value>>,
    body: Arc<[u8]>,
    index: usize,
    attempt: u32,
    settled: bool,
}

impl LoopbackDelivery {
    /// Delivers it again after `after`, unless it has been delivered `max_deliver` times.
    fn again(&mut self, after: Duration) {
        self.settled = true;
        let mut state = self.broker.lock();
        if let Some(group) = state.groups.get_mut(self.handler) {
            if group.spec.max_deliver.is_none_or(|max| self.attempt < max) {
                group
                    .again
                    .push_back((Instant::now() + after, self.index, self.attempt));
            }
        }
        drop(state);
        self.broker.shared.notify.notify_waiters();
    }
}

impl Delivery for LoopbackDelivery {
    fn address(&self) -> &str {
        &self.address
    }

    fn routed_name(&self) -> Option<&str> {
        Some(&self.name)
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn attributes(&self) -> Result<Option<Map<String, Value>>, String> {
        Ok(self.attributes.clone())
    }

    fn body(&self) -> &[u8] {
        &self.body
    }

    fn settle(mut self: Box<Self>, how: Settle) -> BoxFuture<'static, Result<(), String>> {
        match how {
            Settle::Ack => self.settled = true,
            Settle::Nak { after } => self.again(after),
            Settle::Terminate { handler, reason } => {
                self.settled = true;
                self.broker.lock().dead.push(LoopbackDeadLetter {
                    handler,
                    reason,
                    body: self.body.to_vec(),
                });
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

impl Drop for LoopbackDelivery {
    /// Unsettled (its handler's task was stopped): delivered again at once, as a broker does
    /// after its ack wait.
    fn drop(&mut self) {
        if !self.settled {
            self.again(Duration::ZERO);
        }
    }
}
