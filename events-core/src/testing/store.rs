//! The store conformance suite: what every [`EventStore`] must do, run against any
//! implementation with one macro, [`store_conformance!`](crate::store_conformance).
//!
//! ```no_run,standalone_crate
//! // In a store crate's `tests/conformance.rs`: one `#[test]` per case, each on a fresh store.
//! events::store_conformance!(events::store::MemoryStore::new());
//! # fn main() {}
//! ```
//!
//! Each case is a public function taking a fresh, empty store, so a failing case can be run
//! and read alone. They need no tokio runtime of the caller's: the macro runs each on a
//! current-thread runtime of its own.

// A test suite: a failing case is a panic, by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::future::Future;

use crate::envelope::{EventId, MetaValue};
use crate::event::EventKind;
use crate::store::{EventStore, Purge, StoreError, StoreQuery, StoredDeadLetter, StoredEvent};

/// Every case's name, in the order the macro declares them.
pub const CASES: &[&str] = &[
    "appends_are_numbered_in_order_and_read_back_whole",
    "a_duplicate_id_is_refused_with_the_stored_sequence",
    "every_query_field_narrows",
    "order_limit_and_count",
    "delivery_records_hide_delivered_events_per_handler",
    "checkpoints_move_up_to_the_first_unfinished_event",
    "dead_letters_are_kept_listed_and_removed",
    "the_outbox_keeps_entries_until_they_are_forwarded",
    "lag_and_reset_follow_delivery_records",
    "streams_append_at_the_expected_version_only",
    "streams_read_in_order_and_snapshots_round_trip",
    "keys_are_made_once_and_forgotten",
    "purge_keeps_what_the_rule_keeps",
];

/// Runs one case on a current-thread runtime: the macro's test body.
///
/// # Panics
/// When the case fails (an assertion), or no runtime can be made.
pub fn run<S, F, Fut>(store: S, case: F)
where
    F: FnOnce(S) -> Fut,
    Fut: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| panic!("store conformance: no tokio runtime: {e}"));
    runtime.block_on(case(store));
}

/// A stored event with every field set, distinct per `n`.
fn event(n: u64, name: &str) -> StoredEvent {
    let mut e = StoredEvent::new(EventId::new(), name);
    e.version = 2;
    e.kind = if n % 2 == 0 {
        EventKind::Notification
    } else {
        EventKind::Command
    }
    .as_str()
    .to_owned();
    e.time = 1_700_000_000_000_000_000 + n * 1_000_000_000;
    e.source = format!("source-{}", n % 3);
    e.target = (n % 2 == 1).then(|| "billing".to_owned());
    e.depth = (n % 4) as u32;
    e.priority = n as i32 - 3;
    e.metadata
        .insert("text".into(), MetaValue::Text(format!("é{n}\"'")));
    e.metadata
        .insert("number".into(), MetaValue::Integer(-(n as i32)));
    e.metadata
        .insert("flag".into(), MetaValue::Boolean(n % 2 == 0));
    e.payload = format!(r#"{{"n":{n},"note":"line\nbreak ✓"}}"#);
    e
}

async fn append_all(store: &impl EventStore, events: &[StoredEvent]) -> Vec<u64> {
    let mut out = Vec::new();
    for e in events {
        out.push(store.append(e.clone()).await.expect("append"));
    }
    out
}

/// Appends one event per name (the `n`th made by `event(n, name)`), flushed.
async fn stored(store: &impl EventStore, names: &[&str]) -> Vec<StoredEvent> {
    let events: Vec<StoredEvent> = names
        .iter()
        .enumerate()
        .map(|(n, name)| event(n as u64, name))
        .collect();
    append_all(store, &events).await;
    store.flush().await.expect("flush");
    events
}

fn sequences(store: &impl EventStore, query: StoreQuery) -> Vec<u64> {
    store
        .query(&query)
        .expect("query")
        .iter()
        .map(|e| e.sequence)
        .collect()
}

/// Sequences increase from 1 in append order, and every field reads back as written.
pub async fn appends_are_numbered_in_order_and_read_back_whole(store: impl EventStore) {
    let events: Vec<StoredEvent> = (0..5).map(|n| event(n, "order.placed")).collect();
    let seqs = append_all(&store, &events).await;
    assert!(seqs[0] >= 1, "sequences start at 1: {seqs:?}");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "increasing: {seqs:?}");
    store.flush().await.expect("flush");
    let read = store.query(&StoreQuery::all()).expect("query");
    assert_eq!(read.len(), 5);
    for (want, got) in events.iter().zip(&read) {
        let mut want = want.clone();
        want.sequence = got.sequence;
        assert!(want == *got, "read back differs: {want:?} vs {got:?}");
        assert_eq!(want.metadata, got.metadata);
        assert_eq!(want.payload, got.payload);
    }
    // The causation and correlation ids of a child.
    let mut child = event(9, "order.charged");
    child.correlation_id = read[0].id;
    child.causation_id = Some(read[0].id);
    let seq = store.append(child.clone()).await.expect("append child");
    assert!(seq > seqs[4]);
    let got = store.query(&StoreQuery::all().id(child.id)).expect("query");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].causation_id, Some(read[0].id));
    assert_eq!(got[0].correlation_id, read[0].id);
}

/// A second append of an id is `Duplicate` with the first one's sequence, and stores nothing.
pub async fn a_duplicate_id_is_refused_with_the_stored_sequence(store: impl EventStore) {
    let first = event(1, "order.placed");
    append_all(&store, &[event(0, "order.placed"), first.clone()]).await;
    let mut again = event(2, "order.other");
    again.id = first.id;
    match store.append(again).await {
        Err(StoreError::Duplicate { id, sequence }) => {
            assert_eq!((id, sequence), (first.id, 2));
        }
        other => panic!("a duplicate id was not refused: {other:?}"),
    }
    assert_eq!(store.count(&StoreQuery::all()).expect("count"), 2);
    // The next append still gets a higher sequence (a refused append may leave a gap).
    assert!(
        store
            .append(event(3, "order.placed"))
            .await
            .expect("append")
            > 2
    );
}

/// Each setting of a query narrows by its field, alone and together.
pub async fn every_query_field_narrows(store: impl EventStore) {
    let names = [
        "order.placed",
        "order.paid",
        "order.line.added",
        "invoice.sent",
        "order.placed",
        "orders.placed",
    ];
    let events = stored(&store, &names).await;
    let q = StoreQuery::all;
    assert_eq!(sequences(&store, q().id(events[2].id)), [3], "id");
    assert_eq!(
        sequences(&store, q().id(EventId::new())),
        [0u64; 0],
        "unknown id"
    );
    let name = |p: &str| q().name(p).expect("pattern");
    assert_eq!(
        sequences(&store, name("order.placed")),
        [1, 5],
        "exact name"
    );
    assert_eq!(sequences(&store, name("order.*")), [1, 2, 5], "one segment");
    assert_eq!(sequences(&store, name("order.>")), [1, 2, 3, 5], "the rest");
    assert_eq!(
        sequences(&store, name("*.placed")),
        [1, 5, 6],
        "leading wildcard"
    );
    assert_eq!(
        sequences(&store, name(">")),
        [1, 2, 3, 4, 5, 6],
        "everything"
    );
    assert_eq!(
        sequences(&store, q().kind(EventKind::Command)),
        [2, 4, 6],
        "kind"
    );
    assert_eq!(sequences(&store, q().source("source-1")), [2, 5], "source");
    assert_eq!(
        sequences(&store, q().target("billing")),
        [2, 4, 6],
        "target"
    );
    let mut child = event(7, "order.placed");
    child.correlation_id = events[0].id;
    store.append(child).await.expect("append");
    assert_eq!(
        sequences(&store, q().correlation_id(events[0].id)),
        [1, 7],
        "correlation id"
    );
    let at = |n: u64| std::time::UNIX_EPOCH + std::time::Duration::from_nanos(event(n, "").time);
    assert_eq!(
        sequences(&store, q().since(at(4))),
        [5, 6, 7],
        "since (inclusive)"
    );
    assert_eq!(
        sequences(&store, q().until(at(2))),
        [1, 2],
        "until (exclusive)"
    );
    assert_eq!(
        sequences(&store, q().from_sequence(6)),
        [6, 7],
        "from sequence"
    );
    assert_eq!(sequences(&store, q().to_sequence(2)), [1, 2], "to sequence");
    assert_eq!(
        sequences(
            &store,
            name("order.>")
                .kind(EventKind::Notification)
                .from_sequence(2)
                .to_sequence(6)
        ),
        [3, 5],
        "settings together"
    );
}

/// Newest first, limits (after the name pattern, not before), and counts.
pub async fn order_limit_and_count(store: impl EventStore) {
    let names = ["a.x", "b.x", "a.y", "b.y", "a.z"];
    stored(&store, &names).await;
    let q = StoreQuery::all;
    assert_eq!(sequences(&store, q().newest_first()), [5, 4, 3, 2, 1]);
    assert_eq!(sequences(&store, q().limit(2)), [1, 2]);
    assert_eq!(sequences(&store, q().newest_first().limit(2)), [5, 4]);
    let a = || q().name("a.*").expect("pattern");
    assert_eq!(
        sequences(&store, a().limit(2)),
        [1, 3],
        "limit counts matches"
    );
    assert_eq!(sequences(&store, a().newest_first().limit(2)), [5, 3]);
    assert_eq!(sequences(&store, q().limit(0)), [0u64; 0]);
    assert_eq!(store.count(&q()).expect("count"), 5);
    assert_eq!(store.count(&a()).expect("count"), 3);
    assert_eq!(store.count(&a().limit(2)).expect("count"), 2);
    assert_eq!(store.count(&q().from_sequence(4)).expect("count"), 2);
    let rows = store.read(&q().newest_first().limit(1)).expect("read");
    assert!(matches!(rows.as_slice(), [Ok(e)] if e.sequence == 5));
}

fn undelivered(store: &impl EventStore, handler: &str, event: &str, after: u64) -> Vec<u64> {
    store
        .undelivered(handler, event, after, 100)
        .expect("undelivered")
        .into_iter()
        .map(|r| r.expect("row").sequence)
        .collect()
}

/// A delivery record hides that event from that handler only; `after` and `limit` page.
pub async fn delivery_records_hide_delivered_events_per_handler(store: impl EventStore) {
    let names = ["job", "job", "other", "job", "job"];
    stored(&store, &names).await;
    assert_eq!(undelivered(&store, "h", "job", 0), [1, 2, 4, 5]);
    store.record_delivery("h", 2);
    store.record_delivery("h", 4);
    store.flush().await.expect("flush");
    assert_eq!(undelivered(&store, "h", "job", 0), [1, 5]);
    assert_eq!(undelivered(&store, "other-handler", "job", 0), [1, 2, 4, 5]);
    assert_eq!(undelivered(&store, "h", "job", 1), [5], "after");
    assert_eq!(undelivered(&store, "h", "other", 0), [3], "by event name");
    let page = store
        .undelivered("other-handler", "job", 0, 2)
        .expect("undelivered");
    assert_eq!(page.len(), 2, "limit");
    // Recording twice is harmless.
    store.record_delivery("h", 2);
    store.flush().await.expect("flush");
    assert_eq!(undelivered(&store, "h", "job", 0), [1, 5]);
}

/// A checkpoint moves to just before the first unfinished event, and hides what is below.
pub async fn checkpoints_move_up_to_the_first_unfinished_event(store: impl EventStore) {
    let events: Vec<StoredEvent> = (0..5).map(|n| event(n, "job")).collect();
    append_all(&store, &events).await;
    for s in [1, 2, 4] {
        store.record_delivery("h", s);
    }
    store.flush().await.expect("flush");
    let checkpoint = store.checkpoint("h", "job").await.expect("checkpoint");
    assert_eq!(checkpoint, 2, "1 and 2 done, 3 not");
    assert_eq!(undelivered(&store, "h", "job", 0), [3, 5]);
    store.record_delivery("h", 3);
    store.record_delivery("h", 5);
    store.flush().await.expect("flush");
    assert_eq!(store.checkpoint("h", "job").await.expect("checkpoint"), 5);
    assert_eq!(undelivered(&store, "h", "job", 0), [0u64; 0]);
    // A new event after the checkpoint is undelivered; other handlers keep their own.
    store.append(event(6, "job")).await.expect("append");
    store.flush().await.expect("flush");
    assert_eq!(undelivered(&store, "h", "job", 0), [6]);
    assert_eq!(undelivered(&store, "g", "job", 0), [1, 2, 3, 4, 5, 6]);
}

/// Dead letters: kept with their event, listed newest `limit` oldest first, removed by id;
/// the highest id ever kept outlives removal.
pub async fn dead_letters_are_kept_listed_and_removed(store: impl EventStore) {
    for id in 1..=3 {
        let mut letter = StoredDeadLetter::new(
            id,
            event(id, "job"),
            "billing.charge",
            format!("declined {id}"),
        );
        letter.permanent = id == 2;
        letter.attempts = id as u32;
        letter.first_failure = 10 * id;
        letter.last_failure = 10 * id + 5;
        store.put_dead_letter(letter);
    }
    store.flush().await.expect("flush");
    let all = store.dead_letters(10).expect("dead letters");
    let ids: Vec<u64> = all.iter().map(|l| l.id).collect();
    assert_eq!(ids, [1, 2, 3]);
    let second = &all[1];
    assert_eq!(second.handler, "billing.charge");
    assert_eq!(second.error, "declined 2");
    assert!(second.permanent);
    assert_eq!(
        (second.attempts, second.first_failure, second.last_failure),
        (2, 20, 25)
    );
    assert_eq!(second.event.payload, event(2, "job").payload);
    let ids = |limit| -> Vec<u64> {
        let letters = store.dead_letters(limit).expect("dead letters");
        letters.iter().map(|l| l.id).collect()
    };
    assert_eq!(ids(2), [2, 3], "the newest two, oldest first");
    store.remove_dead_letter(3);
    store.flush().await.expect("flush");
    assert_eq!(ids(10), [1, 2]);
    assert_eq!(store.last_dead_letter_id().expect("last id"), 3);
}

/// A store that keeps an outbox ([`EventStore::outbox`]): an event appended through it
/// gets an entry in the same write; claims return the entries' whole events, oldest first,
/// again until they are forwarded; a duplicate id adds no entry; forwarded entries leave the
/// outbox but not the history; the backlog counts what waits and dates the oldest. A store
/// without an outbox passes trivially.
pub async fn the_outbox_keeps_entries_until_they_are_forwarded(store: impl EventStore) {
    let Some(outbox) = store.outbox() else {
        return;
    };
    let lease = std::time::Duration::from_secs(10);
    let claim = |limit| outbox.claim("owner-1", "partition-1", 0, limit, lease);
    assert!(claim(10).await.expect("claim").is_empty());
    assert_eq!(outbox.backlog().expect("backlog").events, 0);
    let events: Vec<StoredEvent> = (1..=4).map(|n| event(n, "order.placed")).collect();
    let first = outbox
        .append(events[0].clone(), "partition-1")
        .await
        .expect("append");
    store.append(events[1].clone()).await.expect("append");
    let third = outbox
        .append(events[2].clone(), "partition-1")
        .await
        .expect("append");
    let fourth = outbox
        .append(events[3].clone(), "partition-1")
        .await
        .expect("append");
    assert!(first < third && third < fourth);
    match outbox.append(events[2].clone(), "partition-1").await {
        Err(StoreError::Duplicate { sequence, .. }) => assert_eq!(sequence, third),
        other => panic!("a duplicate id must be refused, got {other:?}"),
    }
    let backlog = outbox.backlog().expect("backlog");
    assert_eq!(
        backlog.events, 3,
        "the duplicate and the plain append add no entry"
    );
    assert_eq!(backlog.oldest, Some(events[0].time));
    let claimed = |rows: Vec<crate::store::Row>| -> Vec<StoredEvent> {
        rows.into_iter().map(|r| r.expect("readable")).collect()
    };
    let got = claimed(claim(10).await.expect("claim"));
    let sequences: Vec<u64> = got.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, [first, third, fourth], "oldest first");
    let mut expected = events[0].clone();
    expected.sequence = first;
    assert_eq!(got[0], expected, "the whole event");
    let two = claimed(claim(2).await.expect("claim"));
    assert_eq!(two.len(), 2, "the limit");
    assert_eq!(two[0].sequence, first, "claimed again until forwarded");
    let above: Vec<u64> = claimed(
        outbox
            .claim("owner-1", "partition-1", third, 10, lease)
            .await
            .expect("claim"),
    )
    .iter()
    .map(|e| e.sequence)
    .collect();
    assert_eq!(above, [fourth], "only entries above `after`");
    outbox.forwarded(vec![first]).await.expect("forwarded");
    let left: Vec<u64> = claimed(claim(10).await.expect("claim"))
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(left, [third, fourth]);
    assert_eq!(
        outbox.backlog().expect("backlog").oldest,
        Some(events[2].time)
    );
    outbox
        .forwarded(vec![third, fourth])
        .await
        .expect("forwarded");
    assert!(claim(10).await.expect("claim").is_empty());
    let backlog = outbox.backlog().expect("backlog");
    assert_eq!((backlog.events, backlog.oldest), (0, None));
    assert_eq!(
        store.count(&StoreQuery::all()).expect("count"),
        4,
        "history stays"
    );
}

/// [`EventStore::keys`]: a subject's key is made once (the same on every call), found by
/// its id, and gone for good after `forget` (which says how many it deleted).
pub async fn keys_are_made_once_and_forgotten(store: impl EventStore) {
    let Some(keys) = store.keys() else {
        return;
    };
    let ada = keys.key_for("ada").expect("key");
    assert_eq!(
        keys.key_for("ada").expect("key"),
        ada,
        "one key per subject"
    );
    let bob = keys.key_for("bob").expect("key");
    assert_ne!(ada.id, bob.id);
    assert_ne!(ada.secret, bob.secret);
    assert_eq!(keys.key(&ada.id).expect("key"), Some(ada));
    assert_eq!(keys.forget("ada").expect("forget"), 1);
    assert_eq!(keys.forget("ada").expect("forget"), 0);
    assert_eq!(keys.key(&ada.id).expect("key"), None, "forgotten");
    assert_eq!(
        keys.key(&bob.id).expect("key"),
        Some(bob),
        "the other stays"
    );
    let again = keys.key_for("ada").expect("key");
    assert_ne!(again.id, ada.id, "a new key after forgetting");
}

/// The sequences of every stored event, oldest first.
fn sequences_of(store: &impl EventStore) -> Vec<u64> {
    store
        .query(&StoreQuery::all())
        .expect("query")
        .iter()
        .map(|e| e.sequence)
        .collect()
}

/// [`EventStore::purge`] deletes the named events below the sequence and before the time,
/// but the newest `keep` of each name, never the newest event of the log, at most its
/// limit per call (the oldest first), and with their delivery records.
pub async fn purge_keeps_what_the_rule_keeps(store: impl EventStore) {
    let events: Vec<StoredEvent> = ["a", "a", "b", "a", "a", "a", "b"]
        .iter()
        .enumerate()
        .map(|(n, name)| event(n as u64, name))
        .collect();
    let sequences = append_all(&store, &events).await;
    store.record_delivery("h", sequences[0]);
    store.flush().await.expect("flush");
    let purge = |below, before, keep| Purge::new(vec!["a".into()], below, before, keep);
    // Below sequence 5 and before event 4's time, keeping the newest one: events 0, 1, 3;
    // in pages of two, oldest first.
    let page = purge(sequences[5], events[4].time, 1).limit(2);
    let deleted = match store.purge(page.clone()).await {
        Ok(n) => n,
        Err(_) => return, // a store without retention
    };
    assert_eq!(deleted, 2, "at most the limit");
    let left = sequences_of(&store);
    assert_eq!(left, sequences[2..], "the oldest first");
    assert_eq!(store.purge(page.clone()).await.expect("purge"), 1);
    assert_eq!(store.purge(page).await.expect("purge"), 0);
    let left = sequences_of(&store);
    assert_eq!(
        left,
        [sequences[2], sequences[4], sequences[5], sequences[6]]
    );
    // Everything of "b" but the newest event of the log.
    let all_b = Purge::new(vec!["b".into()], u64::MAX, u64::MAX, 0);
    assert_eq!(store.purge(all_b).await.expect("purge"), 1);
    assert_eq!(store.count(&StoreQuery::all()).expect("count"), 3);
}

/// [`EventStore::lag`] counts what a durable handler has not finished (by record or by
/// checkpoint) and dates the oldest; [`EventStore::reset`] makes every event of the type
/// undelivered to it again, and leaves other handlers and event types alone.
pub async fn lag_and_reset_follow_delivery_records(store: impl EventStore) {
    let events: Vec<StoredEvent> = ["job", "job", "other", "job", "job"]
        .iter()
        .enumerate()
        .map(|(n, name)| event(n as u64, name))
        .collect();
    append_all(&store, &events).await;
    assert_eq!(
        store.lag("h", "job").expect("lag"),
        (4, Some(events[0].time))
    );
    for s in [1, 2, 5] {
        store.record_delivery("h", s);
    }
    store.record_delivery("other-handler", 1);
    store.flush().await.expect("flush");
    assert_eq!(
        store.lag("h", "job").expect("lag"),
        (1, Some(events[3].time))
    );
    store.checkpoint("h", "job").await.expect("checkpoint");
    assert_eq!(
        store.lag("h", "job").expect("lag"),
        (1, Some(events[3].time)),
        "a checkpoint changes nothing"
    );
    store.record_delivery("h", 4);
    store.flush().await.expect("flush");
    store.checkpoint("h", "job").await.expect("checkpoint");
    assert_eq!(store.lag("h", "job").expect("lag"), (0, None));
    store.reset("h", "job").await.expect("reset");
    assert_eq!(
        store.lag("h", "job").expect("lag"),
        (4, Some(events[0].time))
    );
    assert_eq!(undelivered(&store, "h", "job", 0), [1, 2, 4, 5]);
    assert_eq!(
        store.lag("other-handler", "job").expect("lag").0,
        3,
        "other handlers keep theirs"
    );
}

/// A store that keeps streams ([`EventStore::streams`]): an append is taken only at the
/// stream's current version, and a refused one ([`StoreError::Conflict`] with both versions)
/// writes nothing, not even the events that were not in conflict; a duplicate id refuses
/// the whole append; stream events are in the log like any other, with their outbox
/// entries. A store without streams passes trivially.
pub async fn streams_append_at_the_expected_version_only(store: impl EventStore) {
    use crate::store::StreamAppend;
    let Some(streams) = store.streams() else {
        return;
    };
    let rows = |from: u64, n: u64| -> Vec<(StoredEvent, Option<String>)> {
        (from..from + n)
            .map(|i| (event(i, "account.deposited"), None))
            .collect()
    };
    assert_eq!(streams.stream_version("account-1").expect("version"), 0);
    let first = streams
        .append_to_stream(StreamAppend::new("account-1", 0, rows(1, 2)))
        .await
        .expect("append at 0");
    assert_eq!(first.len(), 2);
    assert!(first[0] < first[1]);
    assert_eq!(streams.stream_version("account-1").expect("version"), 2);
    // A stale writer: refused, with both versions, and nothing of it written.
    match streams
        .append_to_stream(StreamAppend::new("account-1", 1, rows(3, 2)))
        .await
    {
        Err(StoreError::Conflict {
            stream,
            expected,
            actual,
        }) => {
            assert_eq!((stream.as_str(), expected, actual), ("account-1", 1, 2));
        }
        other => panic!("a stale append must conflict, got {other:?}"),
    }
    match streams
        .append_to_stream(StreamAppend::new("account-1", 3, rows(3, 1)))
        .await
    {
        Err(StoreError::Conflict { actual: 2, .. }) => {}
        other => panic!("an append ahead of the stream must conflict, got {other:?}"),
    }
    assert_eq!(streams.stream_version("account-1").expect("version"), 2);
    assert_eq!(store.count(&StoreQuery::all()).expect("count"), 2);
    // A duplicate id refuses the whole append.
    let mut dup = rows(5, 1);
    dup.push(
        streams
            .read_stream("account-1", 0)
            .expect("read")
            .remove(0)
            .map(|e| (e, None))
            .expect("readable"),
    );
    match streams
        .append_to_stream(StreamAppend::new("account-1", 2, dup))
        .await
    {
        Err(StoreError::Duplicate { .. }) => {}
        other => panic!("an append with a stored id must be refused, got {other:?}"),
    }
    assert_eq!(streams.stream_version("account-1").expect("version"), 2);
    assert_eq!(store.count(&StoreQuery::all()).expect("count"), 2);
    // Appends between streams and plain appends share the log; other streams are apart.
    store.append(event(9, "other.event")).await.expect("append");
    streams
        .append_to_stream(StreamAppend::new("account-2", 0, rows(10, 1)))
        .await
        .expect("another stream at 0");
    let third = streams
        .append_to_stream(StreamAppend::new("account-1", 2, rows(11, 1)))
        .await
        .expect("append at 2");
    assert_eq!(streams.stream_version("account-1").expect("version"), 3);
    assert_eq!(streams.stream_version("account-2").expect("version"), 1);
    let log: Vec<u64> = store
        .query(&StoreQuery::all())
        .expect("query")
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(log.len(), 5);
    assert_eq!(log.last(), Some(&third[0]));
    // With an outbox, entries come with the append.
    if let Some(outbox) = store.outbox() {
        let before = outbox.backlog().expect("backlog").events;
        let mut row = rows(12, 1);
        row[0].1 = Some("partition-1".into());
        streams
            .append_to_stream(StreamAppend::new("account-3", 0, row))
            .await
            .expect("append with an entry");
        assert_eq!(outbox.backlog().expect("backlog").events, before + 1);
    }
}

/// A stream reads back whole and in order from any version, in one call; a snapshot
/// round-trips, and an older one never replaces a newer one.
pub async fn streams_read_in_order_and_snapshots_round_trip(store: impl EventStore) {
    use crate::store::{Snapshot, StreamAppend};
    let Some(streams) = store.streams() else {
        return;
    };
    let mut written = Vec::new();
    let mut version = 0;
    for batch in [3, 1, 5] {
        let rows: Vec<(StoredEvent, Option<String>)> = (0..batch)
            .map(|i| (event(version + i + 1, "account.deposited"), None))
            .collect();
        let sequences = streams
            .append_to_stream(StreamAppend::new("ledger-7", version, rows.clone()))
            .await
            .expect("append");
        for ((mut e, _), s) in rows.into_iter().zip(sequences) {
            e.sequence = s;
            written.push(e);
        }
        version += batch;
        // Interleaved with another stream.
        let other = vec![(event(100 + version, "account.deposited"), None)];
        let at = streams.stream_version("ledger-8").expect("version");
        streams
            .append_to_stream(StreamAppend::new("ledger-8", at, other))
            .await
            .expect("append");
    }
    let read = |after| -> Vec<StoredEvent> {
        streams
            .read_stream("ledger-7", after)
            .expect("read")
            .into_iter()
            .map(|r| r.expect("readable"))
            .collect()
    };
    assert_eq!(read(0), written, "whole, in order, every field");
    assert_eq!(read(4), written[4..].to_vec(), "after a version");
    assert!(read(9).is_empty());
    assert!(streams.read_stream("nobody-1", 0).expect("read").is_empty());
    assert_eq!(streams.snapshot("ledger-7").expect("snapshot"), None);
    let snap = Snapshot::new("ledger-7", 6, "shape-a", r#"{"balance":6,"name":"ünï"}"#);
    streams.put_snapshot(snap.clone()).await.expect("put");
    assert_eq!(
        streams.snapshot("ledger-7").expect("snapshot"),
        Some(snap.clone())
    );
    let older = Snapshot::new("ledger-7", 3, "shape-a", "{}");
    streams.put_snapshot(older).await.expect("put");
    assert_eq!(
        streams.snapshot("ledger-7").expect("snapshot"),
        Some(snap),
        "an older snapshot does not replace a newer one"
    );
    let newer = Snapshot::new("ledger-7", 9, "shape-b", "{}");
    streams.put_snapshot(newer.clone()).await.expect("put");
    assert_eq!(streams.snapshot("ledger-7").expect("snapshot"), Some(newer));
    assert_eq!(streams.snapshot("ledger-8").expect("snapshot"), None);
}

/// Runs the store conformance suite ([`events::testing::store`](crate::testing::store)):
/// one `#[test]` per case, each on a fresh store made by the expression given.
///
/// ```no_run,standalone_crate
/// events::store_conformance!(events::store::MemoryStore::new());
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! store_conformance {
    ($make:expr $(,)?) => {
        $crate::store_conformance!(@cases $make;
            appends_are_numbered_in_order_and_read_back_whole,
            a_duplicate_id_is_refused_with_the_stored_sequence,
            every_query_field_narrows,
            order_limit_and_count,
            delivery_records_hide_delivered_events_per_handler,
            checkpoints_move_up_to_the_first_unfinished_event,
            dead_letters_are_kept_listed_and_removed,
            the_outbox_keeps_entries_until_they_are_forwarded,
            lag_and_reset_follow_delivery_records,
            streams_append_at_the_expected_version_only,
            streams_read_in_order_and_snapshots_round_trip,
            keys_are_made_once_and_forgotten,
            purge_keeps_what_the_rule_keeps,
        );
    };
    (@cases $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::testing::store::run($make, $crate::testing::store::$case);
            }
        )+
    };
}
