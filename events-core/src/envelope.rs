//! What travels with every event: its id, time, source, correlation and causation
//! ([`Meta`]). Ids are [`crate::ids`], what a publisher adds is [`crate::options`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use crate::event::EventInfo;

pub(crate) use crate::ids::EventId;
pub(crate) use crate::ids::warm_up_clock;
pub(crate) use crate::options::{MetaValue, Metadata, PublishOptions};
pub(crate) use crate::options::{NoOptions, Options};

/// An event's metadata: the envelope around the payload.
///
/// Every published event gets one. A root event is its own correlation: its correlation id is
/// its id and it has no causation id. An event published from inside a handler through its
/// [`Context`](crate::Context) is a child: same correlation id, causation id = the parent's id.
///
/// It is 56 bytes for a root event published without options: what only children and events
/// with options need lives in a box that other events do not allocate.
#[derive(Clone)]
pub struct Meta {
    pub(crate) id: EventId,
    /// Nanoseconds since the Unix epoch.
    pub(crate) time: u64,
    pub(crate) info: &'static EventInfo,
    /// The bus's source.
    pub(crate) source: &'static str,
    pub(crate) extra: Option<Box<Extra>>,
}

/// What a child event inherits from its parent: small and `Copy`, so it can sit in a
/// task-local for the duration of a dispatch without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lineage {
    pub(crate) id: EventId,
    pub(crate) correlation_id: EventId,
    pub(crate) depth: u32,
}

/// Nanoseconds since the Unix epoch; 0 before it.
fn nanos_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Lineage {
    /// A placeholder, never read as a real parent.
    pub(crate) const NONE: Lineage = Lineage {
        id: EventId(Uuid::nil()),
        correlation_id: EventId(Uuid::nil()),
        depth: 0,
    };
}

/// Which handlers a replay delivers to: those that allow replay, and of those only the
/// chosen ones if any were chosen (its methods are the runtime's, in `bus::durable`).
#[derive(Debug)]
pub(crate) struct Selection {
    pub(crate) only: Option<std::collections::HashSet<String>>,
}

/// The parts of [`Meta`] that a root event published without options does not have.
#[derive(Clone, Debug)]
pub(crate) struct Extra {
    pub(crate) correlation_id: EventId,
    pub(crate) causation_id: Option<EventId>,
    pub(crate) depth: u32,
    pub(crate) source: Option<Arc<str>>,
    pub(crate) target: Option<Arc<str>>,
    pub(crate) metadata: Metadata,
    pub(crate) priority: Option<i32>,
    /// Nanoseconds since the Unix epoch.
    pub(crate) expires_at: Option<u64>,
    /// Its position in the bus's store; 0 when not stored.
    pub(crate) sequence: u64,
    /// Set while the event is replayed: which handlers get it.
    pub(crate) replay: Option<Arc<Selection>>,
    /// When its publish resolves, if it asked ([`PublishOptions::ack`]).
    pub(crate) ack: Option<crate::outbox::Ack>,
}

static NO_METADATA: Metadata = Metadata::new();

impl Meta {
    /// The event's id.
    #[inline]
    pub fn id(&self) -> EventId {
        self.id
    }
    /// The event's name.
    #[inline]
    pub fn name(&self) -> &'static str {
        self.info.name
    }
    /// The payload's version.
    pub fn version(&self) -> u32 {
        self.info.version
    }
    /// The event type's catalog entry.
    pub fn info(&self) -> &'static EventInfo {
        self.info
    }
    /// When the event was published.
    pub fn time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.time)
    }
    /// Who published it: the bus's source (see [`BusBuilder::source`](crate::BusBuilder::source))
    /// unless the publisher set another.
    pub fn source(&self) -> &str {
        self.extra
            .as_ref()
            .and_then(|e| e.source.as_deref())
            .unwrap_or(self.source)
    }
    /// Whom the event is meant for (a service or component name), if the publisher said:
    /// see [`PublishOptions::target`].
    pub fn target(&self) -> Option<&str> {
        self.extra.as_ref().and_then(|e| e.target.as_deref())
    }
    /// The id shared by every event of one flow; a root event's own id.
    #[inline]
    pub fn correlation_id(&self) -> EventId {
        self.extra.as_ref().map_or(self.id, |e| e.correlation_id)
    }
    /// The id of the event whose handler published this one; `None` for a root event.
    #[inline]
    pub fn causation_id(&self) -> Option<EventId> {
        self.extra.as_ref().and_then(|e| e.causation_id)
    }
    /// How many parents the event has: 0 for a root event.
    #[inline]
    pub fn depth(&self) -> u32 {
        self.extra.as_ref().map_or(0, |e| e.depth)
    }
    /// The free-form metadata.
    pub fn metadata(&self) -> &Metadata {
        self.extra.as_ref().map_or(&NO_METADATA, |e| &e.metadata)
    }
    /// The authenticated caller that put the event on the bus from outside
    /// ([`Bus::ingress`](crate::Bus::ingress)): `None` for events published in-process and
    /// for anonymous input. Unlike [`source`](Self::source), which says what the sender
    /// claims, it was checked against the [access rules](crate::security::AccessRules).
    pub fn principal(&self) -> Option<&str> {
        self.metadata()
            .get(crate::security::PRINCIPAL_KEY)
            .and_then(crate::MetaValue::as_str)
    }
    /// Its priority in the background queue: set when published, else the event type's.
    pub fn priority(&self) -> i32 {
        self.extra
            .as_ref()
            .and_then(|e| e.priority)
            .unwrap_or(self.info.priority)
    }
    /// When it expires, if it does.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at_nanos()
            .map(|n| UNIX_EPOCH + Duration::from_nanos(n))
    }
    fn expires_at_nanos(&self) -> Option<u64> {
        self.extra.as_ref().and_then(|e| e.expires_at)
    }
    /// Whether it has expired by now.
    pub(crate) fn is_expired(&self) -> bool {
        self.expires_at_nanos()
            .is_some_and(|at| EventId::now().1 >= at)
    }

    /// The event's position in the bus's [store](crate::store), once stored: events are
    /// appended before their handlers run, so handlers always see it on a bus with a store.
    pub fn sequence(&self) -> Option<u64> {
        self.extra
            .as_ref()
            .and_then(|e| (e.sequence != 0).then_some(e.sequence))
    }

    /// The parts beyond a root event's, made for a root event when it first needs them.
    fn extra_mut(&mut self) -> &mut Extra {
        let id = self.id;
        self.extra
            .get_or_insert_with(|| Extra::new(id, None, PublishOptions::default()))
    }

    /// Records where the store put the event.
    pub(crate) fn set_sequence(&mut self, sequence: u64) {
        self.extra_mut().sequence = sequence;
    }

    /// The replay delivering the event, if it is being replayed.
    pub(crate) fn ack(&self) -> Option<crate::outbox::Ack> {
        self.extra.as_ref().and_then(|e| e.ack)
    }

    pub(crate) fn replay(&self) -> Option<&Arc<Selection>> {
        self.extra.as_ref().and_then(|e| e.replay.as_ref())
    }

    /// Marks the event as replayed to the handlers `selection` chooses (`None`: not replayed).
    pub(crate) fn set_replay(&mut self, selection: Option<Arc<Selection>>) {
        if selection.is_some() || self.extra.is_some() {
            self.extra_mut().replay = selection;
        }
    }

    /// What a child of this event inherits.
    #[inline]
    pub(crate) fn lineage(&self) -> Lineage {
        Lineage {
            id: self.id,
            correlation_id: self.correlation_id(),
            depth: self.depth(),
        }
    }

    /// The envelope of a new event of type `info` on a bus whose source is `source`.
    #[inline(always)]
    pub(crate) fn new<O: Options>(
        info: &'static EventInfo,
        source: &'static str,
        parent: Option<Lineage>,
        options: O,
    ) -> Meta {
        let (mut id, mut time) = EventId::now();
        // Decided at compile time for the entry points without options: no options value
        // exists on that path, so none is moved, checked or dropped.
        let options = if O::NONE {
            None
        } else {
            options.into_options()
        };
        let extra = match options {
            None => parent.map(|parent| Extra::child(id, parent)),
            Some(o) => {
                id = o.id.unwrap_or(id);
                time = o.time.map_or(time, nanos_since_epoch);
                Some(Extra::new(id, parent, o))
            }
        };
        Meta {
            id,
            time,
            info,
            source,
            extra,
        }
    }
}

impl Extra {
    /// What a child event published without options carries beyond a root event.
    #[inline(never)]
    fn child(id: EventId, parent: Lineage) -> Box<Extra> {
        Extra::new(id, Some(parent), PublishOptions::default())
    }

    /// What an event published with options carries beyond a root event.
    #[inline(never)]
    fn new(id: EventId, parent: Option<Lineage>, options: PublishOptions) -> Box<Extra> {
        Box::new(Extra {
            correlation_id: options
                .correlation_id
                .or(parent.map(|p| p.correlation_id))
                .unwrap_or(id),
            causation_id: options.causation_id.or(parent.map(|p| p.id)),
            depth: parent.map_or(0, |p| p.depth + 1),
            source: options.source,
            target: options.target,
            metadata: options.metadata,
            priority: options.priority,
            expires_at: options.expires_at.map(nanos_since_epoch),
            sequence: 0,
            replay: None,
            ack: options.ack,
        })
    }
}

impl fmt::Debug for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Meta")
            .field("id", &self.id)
            .field("name", &self.name())
            .field("version", &self.version())
            .field("time", &self.time())
            .field("source", &self.source())
            .field("target", &self.target())
            .field("correlation_id", &self.correlation_id())
            .field("causation_id", &self.causation_id())
            .field("depth", &self.depth())
            .field("metadata", self.metadata())
            .field("priority", &self.priority())
            .field("expires_at", &self.expires_at())
            .finish()
    }
}
