//! [`EventId`]: UUIDv7 ids made without a system call or a lock, and the clock behind them.

use std::cell::Cell;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;

/// An event's unique id: a UUIDv7, so ids sort by creation time.
///
/// Ids are generated without a system call or a lock: a per-thread generator follows
/// RFC 9562's "monotonic random" method (48-bit Unix milliseconds, a 12-bit counter within
/// the same millisecond, 62 random bits). Ids made by one thread strictly increase; ids made
/// by different threads are unique and ordered by millisecond.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct EventId(pub(crate) Uuid);

impl EventId {
    /// A new, time-ordered id for now.
    pub fn new() -> EventId {
        EventId::now().0
    }

    /// A new id together with the wall-clock time it encodes (one clock read for both).
    pub(crate) fn now() -> (EventId, u64) {
        GENERATOR.with(|g| {
            let nanos = g.wall_nanos();
            (EventId(g.next(nanos / 1_000_000)), nanos)
        })
    }

    /// The id as a [`Uuid`].
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for EventId {
    fn default() -> Self {
        EventId::new()
    }
}

impl From<Uuid> for EventId {
    fn from(u: Uuid) -> Self {
        EventId(u)
    }
}

impl From<EventId> for Uuid {
    fn from(id: EventId) -> Self {
        id.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.0)
    }
}

impl FromStr for EventId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(EventId)
    }
}

thread_local! {
    static GENERATOR: Generator = Generator::seeded();
}

/// The processor's time-stamp counter, calibrated once per process (`quanta`).
fn tsc() -> &'static quanta::Clock {
    static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// Calibrates the clock ahead of the first event (it takes a few milliseconds).
pub(crate) fn warm_up_clock() {
    let _ = tsc();
}

/// How long a thread's wall-clock anchor is trusted before it is read again.
const ANCHOR_NANOS: u64 = 50_000_000;

/// Per thread: the wall clock and the event-id generator.
///
/// Wall time is read from the system (`clock_gettime`, about 30 ns on a VM) once per
/// 50 ms and carried forward with the time-stamp counter (about 12 ns) in between, so it
/// follows NTP adjustments within 50 ms at a third of the cost.
///
/// Ids follow RFC 9562 §6.2 method 1: a counter in `rand_a`, re-based on each new
/// millisecond; when it overflows within one millisecond the timestamp is advanced, which
/// keeps ids monotonic.
struct Generator {
    last_ms: Cell<u64>,
    counter: Cell<u16>,
    rng: Cell<u64>,
    /// Counter value and wall time (ns since the Unix epoch) at the last anchor.
    anchor_raw: Cell<u64>,
    anchor_wall: Cell<u64>,
}

impl Generator {
    fn seeded() -> Generator {
        // `RandomState` is seeded from the OS once per thread; no extra dependency.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x9e37_79b9_7f4a_7c15);
        Generator {
            last_ms: Cell::new(0),
            counter: Cell::new(0),
            rng: Cell::new(h.finish()),
            anchor_raw: Cell::new(0),
            anchor_wall: Cell::new(0),
        }
    }

    /// Nanoseconds since the Unix epoch.
    #[inline]
    fn wall_nanos(&self) -> u64 {
        let clock = tsc();
        let raw = clock.raw();
        let since = clock.delta_as_nanos(self.anchor_raw.get(), raw);
        if self.anchor_wall.get() == 0 || since >= ANCHOR_NANOS || raw < self.anchor_raw.get() {
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            self.anchor_raw.set(raw);
            self.anchor_wall.set(wall);
            return wall;
        }
        self.anchor_wall.get() + since
    }

    fn random(&self) -> u64 {
        // wyrand: fast, passes BigCrush; uniqueness, not secrecy, is what ids need.
        let s = self.rng.get().wrapping_add(0xa076_1d64_78bd_642f);
        self.rng.set(s);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    fn next(&self, now_ms: u64) -> Uuid {
        let mut ms = self.last_ms.get();
        let counter = if now_ms > ms {
            ms = now_ms;
            // Start low in the 12-bit space so a burst has room before it spills over.
            (self.random() & 0x1ff) as u16
        } else {
            let c = self.counter.get() + 1;
            if c > 0xfff {
                ms += 1;
                0
            } else {
                c
            }
        };
        self.last_ms.set(ms);
        self.counter.set(counter);
        let rand_b = self.random() & 0x3fff_ffff_ffff_ffff;
        let hi = (ms << 16) | 0x7000 | u64::from(counter);
        let lo = 0x8000_0000_0000_0000 | rand_b;
        Uuid::from_u64_pair(hi, lo)
    }
}

/// A UUID in its hyphenated text form, as it serializes.
impl schemars::JsonSchema for EventId {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EventId".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "format": "uuid" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_v7_unique_and_increasing_within_a_thread() {
        let ids: Vec<EventId> = (0..100_000).map(|_| EventId::new()).collect();
        for w in ids.windows(2) {
            assert!(w[0] < w[1], "{} !< {}", w[0], w[1]);
        }
        let first = ids[0].as_uuid();
        assert_eq!(first.get_version_num(), 7);
        assert_eq!(first.get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn id_timestamp_is_wall_clock_milliseconds() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let (id, time) = EventId::now();
        let (secs, nanos) = id.as_uuid().get_timestamp().unwrap().to_unix();
        let id_ms = secs * 1000 + u64::from(nanos) / 1_000_000;
        let t_ms = time / 1_000_000;
        assert!(
            id_ms >= before && id_ms <= t_ms + 1,
            "{before} <= {id_ms} <= {t_ms}"
        );
    }

    #[test]
    fn the_anchored_clock_tracks_the_system_clock_across_re_anchoring() {
        let system = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        };
        let mut last = 0;
        for round in 0..4 {
            let before = system();
            let (_, ours) = EventId::now();
            let after = system();
            // Within 1 ms of the system clock read around it (TSC drift over 50 ms is µs).
            assert!(
                ours + 1_000_000 >= before && ours <= after + 1_000_000,
                "round {round}"
            );
            assert!(ours >= last, "time went backwards");
            last = ours;
            if round % 2 == 1 {
                // Past the anchor window: the next read re-anchors.
                std::thread::sleep(std::time::Duration::from_millis(60));
            }
        }
    }

    #[test]
    fn counter_overflow_advances_the_timestamp_and_stays_monotonic() {
        let g = Generator::seeded();
        let ids: Vec<Uuid> = (0..10_000).map(|_| g.next(1_000)).collect();
        for w in ids.windows(2) {
            assert!(w[0] < w[1]);
        }
        assert!(ids.last().unwrap().get_timestamp().is_some());
        // A clock that goes backwards does not make ids go backwards.
        let after = g.next(5);
        assert!(after > *ids.last().unwrap());
    }

    #[test]
    fn ids_from_many_threads_are_unique() {
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..50_000).map(|_| EventId::new()).collect::<Vec<_>>()))
            .collect();
        let mut all: Vec<EventId> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn id_round_trips_through_text() {
        let id = EventId::new();
        assert_eq!(id.to_string().parse::<EventId>().unwrap(), id);
    }
}
