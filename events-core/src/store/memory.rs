//! [`MemoryStore`]: recent history in memory, bounded by a byte budget.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use super::{
    Backlog, EventStore, Inbox, InboxKey, Order, Outbox, Row, Snapshot, StoreError, StoreFuture,
    StoreQuery, StoredDeadLetter, StoredEvent, StreamAppend, Streams,
};
use crate::envelope::EventId;

/// An [`EventStore`] in memory: the most recent events up to a byte budget (default
/// 10 MB), oldest evicted first. Dead letters count against the same budget: they may take
/// up to half of it, beyond which the oldest letters go first. Not durable: for tests, and
/// for replaying recent events.
///
/// ```
/// let store = events::store::MemoryStore::with_budget(1 << 20); // 1 MiB of history
/// # let _ = store;
/// ```
pub struct MemoryStore {
    budget: usize,
    state: Mutex<State>,
    keys: super::MemoryKeys,
}

#[derive(Default)]
struct State {
    events: VecDeque<StoredEvent>,
    bytes: usize,
    next: u64,
    ids: HashMap<EventId, u64>,
    evicted: u64,
    /// Per durable handler, the kept events' sequences it has a record for; records of
    /// evicted events go with them, so these stay within the budget's events too.
    deliveries: HashMap<String, BTreeSet<u64>>,
    checkpoints: HashMap<(String, String), u64>,
    dead_letters: BTreeMap<u64, StoredDeadLetter>,
    letter_bytes: usize,
    last_dead_letter: u64,
    evicted_letters: u64,
    /// The outbox's entries, with their events (history may evict an event; the outbox
    /// keeps it until it is forwarded), and what they take.
    outbox: BTreeMap<u64, StoredEvent>,
    outbox_bytes: usize,
    inbox: std::collections::HashSet<InboxKey>,
    /// Each stream's events (kept whole: history may evict them, an aggregate needs its
    /// stream), what they take, and each stream's snapshot.
    streams: HashMap<String, Vec<StoredEvent>>,
    stream_bytes: usize,
    snapshots: HashMap<String, Snapshot>,
}

/// Roughly how many bytes a dead letter takes in memory.
fn letter_size(letter: &StoredDeadLetter) -> usize {
    std::mem::size_of::<StoredDeadLetter>() + letter.event.size()
        - std::mem::size_of::<StoredEvent>()
        + letter.handler.len()
        + letter.error.len()
}

impl State {
    /// The kept events named `event` above `handler`'s checkpoint that it has no delivery
    /// record for, oldest first.
    fn undelivered<'a>(
        &'a self,
        handler: &'a str,
        event: &'a str,
    ) -> impl Iterator<Item = &'a StoredEvent> + 'a {
        let checkpoint = self
            .checkpoints
            .get(&(handler.to_owned(), event.to_owned()))
            .copied()
            .unwrap_or(0);
        let done = self.deliveries.get(handler);
        self.events.iter().filter(move |e| {
            e.sequence > checkpoint
                && e.name == event
                && !done.is_some_and(|d| d.contains(&e.sequence))
        })
    }
}

impl State {
    /// Drops the oldest dead letters while they take more than half the budget, then the
    /// oldest events (all but the newest) and letters while both take more than all of it.
    fn evict(&mut self, budget: usize) {
        while self.letter_bytes > budget / 2 && self.pop_letter() {}
        while self.bytes + self.letter_bytes > budget {
            if self.events.len() > 1 {
                let Some(old) = self.events.pop_front() else {
                    break;
                };
                self.bytes -= old.size();
                self.ids.remove(&old.id);
                self.evicted += 1;
            } else if !self.pop_letter() {
                break;
            }
        }
    }

    fn pop_letter(&mut self) -> bool {
        match self.dead_letters.pop_first() {
            Some((_, letter)) => {
                self.letter_bytes -= letter_size(&letter);
                self.evicted_letters += 1;
                true
            }
            None => false,
        }
    }
}

impl MemoryStore {
    /// The default budget.
    pub const DEFAULT_BUDGET: usize = 10 * 1024 * 1024;

    /// A store with the default budget (10 MB).
    pub fn new() -> MemoryStore {
        MemoryStore::with_budget(MemoryStore::DEFAULT_BUDGET)
    }

    /// A store that keeps at most about `bytes` of events (payload, names and metadata,
    /// plus a fixed cost per event); at least the newest event is always kept.
    pub fn with_budget(bytes: usize) -> MemoryStore {
        MemoryStore {
            budget: bytes,
            state: Mutex::new(State {
                next: 1,
                ..State::default()
            }),
            keys: super::MemoryKeys::new(),
        }
    }

    /// How many bytes the kept events take, by the store's estimate.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// How many events are kept.
    pub fn len(&self) -> usize {
        self.lock().events.len()
    }

    /// Whether no event is kept.
    pub fn is_empty(&self) -> bool {
        self.lock().events.is_empty()
    }

    /// How many delivery records of durable handlers are kept: at most one per kept event
    /// and durable handler (records of evicted events are dropped with them).
    pub fn delivery_records(&self) -> usize {
        self.lock().deliveries.values().map(BTreeSet::len).sum()
    }

    /// How many events were evicted to stay within the budget.
    pub fn evicted(&self) -> u64 {
        self.lock().evicted
    }

    /// How many dead letters are kept.
    pub fn dead_letter_count(&self) -> usize {
        self.lock().dead_letters.len()
    }

    /// How many bytes the kept dead letters take, by the store's estimate (at most half the
    /// budget).
    pub fn dead_letter_bytes(&self) -> usize {
        self.lock().letter_bytes
    }

    /// How many dead letters were evicted to stay within the budget.
    pub fn evicted_dead_letters(&self) -> u64 {
        self.lock().evicted_letters
    }

    /// Records `key` in the inbox; `false` when it was recorded already. A memory store
    /// has no transaction to share with the application's writes: for tests of
    /// `#[handler(inbox)]` handlers.
    pub fn record_inbox(&self, key: &InboxKey) -> bool {
        self.lock().inbox.insert(key.clone())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryStore")
            .field("budget", &self.budget)
            .field("bytes", &state.bytes)
            .field("events", &state.events.len())
            .finish_non_exhaustive()
    }
}

impl State {
    /// Appends `event`; its sequence.
    fn append(&mut self, mut event: StoredEvent, budget: usize) -> Result<u64, StoreError> {
        if let Some(&sequence) = self.ids.get(&event.id) {
            return Err(StoreError::Duplicate {
                id: event.id,
                sequence,
            });
        }
        let sequence = self.next;
        self.next += 1;
        event.sequence = sequence;
        self.bytes += event.size();
        self.ids.insert(event.id, sequence);
        self.events.push_back(event);
        self.evict(budget);
        let oldest = self.events.front().map_or(sequence, |e| e.sequence);
        for done in self.deliveries.values_mut() {
            if done.first().is_some_and(|&s| s < oldest) {
                *done = done.split_off(&oldest);
            }
        }
        Ok(sequence)
    }
}

impl EventStore for MemoryStore {
    fn append(&self, event: StoredEvent) -> StoreFuture<'_, u64> {
        let result = self.lock().append(event, self.budget);
        Box::pin(std::future::ready(result))
    }

    fn record_delivery(&self, handler: &str, sequence: u64) {
        let mut state = self.lock();
        if state.events.front().is_none_or(|e| sequence < e.sequence) {
            return; // evicted already: nothing will look for its record
        }
        match state.deliveries.get_mut(handler) {
            Some(done) => {
                done.insert(sequence);
            }
            None => {
                state
                    .deliveries
                    .insert(handler.to_owned(), BTreeSet::from([sequence]));
            }
        }
    }

    fn read(&self, query: &StoreQuery) -> Result<Vec<Row>, StoreError> {
        let state = self.lock();
        let limit = query.parts().limit.unwrap_or(usize::MAX);
        let selected = |e: &&StoredEvent| query.matches(e);
        Ok(match query.parts().order {
            Order::OldestFirst => state
                .events
                .iter()
                .filter(selected)
                .take(limit)
                .map(|e| Ok(e.clone()))
                .collect(),
            Order::NewestFirst => state
                .events
                .iter()
                .rev()
                .filter(selected)
                .take(limit)
                .map(|e| Ok(e.clone()))
                .collect(),
        })
    }

    fn count(&self, query: &StoreQuery) -> Result<usize, StoreError> {
        let state = self.lock();
        let n = state.events.iter().filter(|e| query.matches(e)).count();
        Ok(n.min(query.parts().limit.unwrap_or(usize::MAX)))
    }

    fn undelivered(
        &self,
        handler: &str,
        event: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let state = self.lock();
        Ok(state
            .undelivered(handler, event)
            .filter(|e| e.sequence > after)
            .take(limit)
            .map(|e| Ok(e.clone()))
            .collect())
    }

    fn checkpoint<'a>(&'a self, handler: &'a str, event: &'a str) -> StoreFuture<'a, u64> {
        let mut state = self.lock();
        let first_missing = state.undelivered(handler, event).next().map(|e| e.sequence);
        let key = (handler.to_owned(), event.to_owned());
        let old = state.checkpoints.get(&key).copied().unwrap_or(0);
        let last = state.next - 1;
        let new = first_missing.map_or(last, |s| s - 1).max(old);
        state.checkpoints.insert(key, new);
        if let Some(done) = state.deliveries.get_mut(handler) {
            *done = done.split_off(&(new + 1));
        }
        Box::pin(std::future::ready(Ok(new)))
    }

    fn put_dead_letter(&self, letter: StoredDeadLetter) {
        let mut state = self.lock();
        state.last_dead_letter = state.last_dead_letter.max(letter.id);
        state.letter_bytes += letter_size(&letter);
        if let Some(old) = state.dead_letters.insert(letter.id, letter) {
            state.letter_bytes -= letter_size(&old);
        }
        state.evict(self.budget);
    }

    fn remove_dead_letter(&self, id: u64) {
        let mut state = self.lock();
        if let Some(old) = state.dead_letters.remove(&id) {
            state.letter_bytes -= letter_size(&old);
        }
    }

    fn dead_letters(&self, limit: usize) -> Result<Vec<StoredDeadLetter>, StoreError> {
        let state = self.lock();
        let skip = state.dead_letters.len().saturating_sub(limit);
        Ok(state.dead_letters.values().skip(skip).cloned().collect())
    }

    fn last_dead_letter_id(&self) -> Result<u64, StoreError> {
        Ok(self.lock().last_dead_letter)
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn outbox(&self) -> Option<&dyn Outbox> {
        Some(self)
    }

    fn keys(&self) -> Option<&dyn super::KeyStore> {
        Some(&self.keys)
    }
    fn inbox(&self) -> Option<&dyn Inbox> {
        Some(self)
    }

    fn streams(&self) -> Option<&dyn Streams> {
        Some(self)
    }

    fn purge(&self, purge: super::Purge) -> StoreFuture<'_, u64> {
        let mut state = self.lock();
        let state = &mut *state;
        let newest = state.events.back().map_or(0, |e| e.sequence);
        let mut deleted = 0u64;
        for name in &purge.names {
            let left = purge.limit - deleted;
            if left == 0 {
                break;
            }
            // The newest `keep` of this name stay; of the rest, the oldest `left` go.
            let mut kept = 0u64;
            let mut doomed = Vec::new();
            for e in state.events.iter().rev().filter(|e| &e.name == name) {
                if kept < purge.keep {
                    kept += 1;
                    continue;
                }
                if e.sequence < purge.below
                    && e.time < purge.before
                    && e.sequence != newest
                    && !e.metadata.contains_key(crate::aggregate::STREAM_KEY)
                {
                    doomed.push(e.sequence);
                }
            }
            let newer = doomed
                .len()
                .saturating_sub(usize::try_from(left).unwrap_or(usize::MAX));
            let doomed: std::collections::HashSet<u64> = doomed.drain(newer..).collect();
            let mut bytes = 0;
            let ids = &mut state.ids;
            state.events.retain(|e| {
                let go = doomed.contains(&e.sequence);
                if go {
                    bytes += e.size();
                    ids.remove(&e.id);
                }
                !go
            });
            state.bytes -= bytes;
            for done in state.deliveries.values_mut() {
                done.retain(|s| !doomed.contains(s));
            }
            deleted += doomed.len() as u64;
        }
        Box::pin(std::future::ready(Ok(deleted)))
    }

    fn reset<'a>(&'a self, handler: &'a str, event: &'a str) -> StoreFuture<'a, ()> {
        let mut state = self.lock();
        let state = &mut *state;
        state
            .checkpoints
            .remove(&(handler.to_owned(), event.to_owned()));
        if let Some(done) = state.deliveries.get_mut(handler) {
            let of_event: Vec<u64> = state
                .events
                .iter()
                .filter(|e| e.name == event)
                .map(|e| e.sequence)
                .collect();
            for sequence in of_event {
                done.remove(&sequence);
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn lag(&self, handler: &str, event: &str) -> Result<(u64, Option<u64>), StoreError> {
        let state = self.lock();
        let mut undelivered = state.undelivered(handler, event);
        let oldest = undelivered.next().map(|e| e.time);
        Ok((
            u64::from(oldest.is_some()) + undelivered.count() as u64,
            oldest,
        ))
    }
}

/// Streams in memory: never evicted (an aggregate needs its whole stream), so they take at
/// most the store's budget beside the history: an append past it is refused.
impl Streams for MemoryStore {
    fn append_to_stream(&self, append: StreamAppend) -> StoreFuture<'_, Vec<u64>> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let actual = state
            .streams
            .get(&append.stream)
            .map_or(0, |s| s.len() as u64);
        if actual != append.expected {
            return Box::pin(std::future::ready(Err(StoreError::Conflict {
                stream: append.stream,
                expected: append.expected,
                actual,
            })));
        }
        let size: usize = append.events.iter().map(|(e, _)| e.size()).sum();
        if state.stream_bytes + size > self.budget {
            return Box::pin(std::future::ready(Err(StoreError::Backend(format!(
                "the memory store's streams hold its budget of {} bytes",
                self.budget
            )))));
        }
        if let Some((e, _)) = append
            .events
            .iter()
            .find(|(e, _)| state.ids.contains_key(&e.id))
        {
            let sequence = state.ids[&e.id];
            return Box::pin(std::future::ready(Err(StoreError::Duplicate {
                id: e.id,
                sequence,
            })));
        }
        let mut sequences = Vec::with_capacity(append.events.len());
        let mut kept = Vec::with_capacity(append.events.len());
        for (event, partition) in append.events {
            let mut copy = event.clone();
            let appended = state.append(event, self.budget);
            let Ok(sequence) = appended else {
                return Box::pin(std::future::ready(appended.map(|_| Vec::new())));
            };
            copy.sequence = sequence;
            if partition.is_some() {
                state.outbox_bytes += copy.size();
                state.outbox.insert(sequence, copy.clone());
            }
            sequences.push(sequence);
            kept.push(copy);
        }
        state.stream_bytes += size;
        state.streams.entry(append.stream).or_default().extend(kept);
        Box::pin(std::future::ready(Ok(sequences)))
    }

    fn read_stream(&self, stream: &str, after: u64) -> Result<Vec<Row>, StoreError> {
        let state = self.lock();
        let skip = usize::try_from(after).unwrap_or(usize::MAX);
        Ok(state.streams.get(stream).map_or_else(Vec::new, |s| {
            s.iter().skip(skip).map(|e| Ok(e.clone())).collect()
        }))
    }

    fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        Ok(self
            .lock()
            .streams
            .get(stream)
            .map_or(0, |s| s.len() as u64))
    }

    fn snapshot(&self, stream: &str) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.lock().snapshots.get(stream).cloned())
    }

    fn put_snapshot(&self, snapshot: Snapshot) -> StoreFuture<'_, ()> {
        let mut state = self.lock();
        let newer = state
            .snapshots
            .get(&snapshot.stream)
            .is_none_or(|kept| kept.version <= snapshot.version);
        if newer {
            state.snapshots.insert(snapshot.stream.clone(), snapshot);
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

impl Inbox for MemoryStore {
    fn seen(&self, key: &InboxKey) -> Result<bool, StoreError> {
        Ok(self.lock().inbox.contains(key))
    }
}

/// One process's outbox: partitions, owners and leases have nothing to arbitrate. Its
/// entries take at most the store's budget beside the history (they are never evicted:
/// an append past it is refused).
impl Outbox for MemoryStore {
    fn append<'a>(&'a self, event: StoredEvent, _partition: &'a str) -> StoreFuture<'a, u64> {
        let mut state = self.lock();
        let size = event.size();
        let result = if state.outbox_bytes + size > self.budget {
            Err(StoreError::Backend(format!(
                "the memory store's outbox holds its budget of {} bytes of events not yet \
                 forwarded",
                self.budget
            )))
        } else {
            let mut copy = event.clone();
            state.append(event, self.budget).inspect(|&sequence| {
                copy.sequence = sequence;
                state.outbox_bytes += size;
                state.outbox.insert(sequence, copy);
            })
        };
        Box::pin(std::future::ready(result))
    }

    fn claim<'a>(
        &'a self,
        _owner: &'a str,
        _partition: &'a str,
        after: u64,
        limit: usize,
        _lease: std::time::Duration,
    ) -> StoreFuture<'a, Vec<Row>> {
        let state = self.lock();
        let rows = state
            .outbox
            .range(after.saturating_add(1)..)
            .take(limit)
            .map(|(_, e)| Ok(e.clone()))
            .collect();
        Box::pin(std::future::ready(Ok(rows)))
    }

    fn forwarded(&self, sequences: Vec<u64>) -> StoreFuture<'_, ()> {
        let mut state = self.lock();
        for sequence in sequences {
            if let Some(e) = state.outbox.remove(&sequence) {
                state.outbox_bytes -= e.size();
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn backlog(&self) -> Result<Backlog, StoreError> {
        let state = self.lock();
        Ok(Backlog::new(
            state.outbox.len() as u64,
            state.outbox.values().next().map(|e| e.time),
        ))
    }
}
