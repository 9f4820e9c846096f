//! The admin API under `/admin`: the catalog and schemas, store queries, dead letters
//! (list, inspect redacted, retry, discard), durable handlers' lag and the outbox backlog;
//! described by the OpenAPI document at `/admin/openapi.json` ([`openapi`], served to
//! anyone: it holds no data). Every other request needs the admin credential ([`HttpOptions::admin`](crate::HttpOptions::admin)); without
//! one configured, the admin API answers 403 to everyone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use events::store::StoreQuery;
use events::{DeadLetter, DeadLetterFilter, EventId};
use serde_json::{Value, json};

use crate::{Problem, Shared};

/// An event name or pattern (`order.*`, `order.>`), as [`StoreQuery::name`] takes it.
const PATTERN: &str = r"^(>|([a-z0-9_-]+|\*)(\.([a-z0-9_-]+|\*))*(\.>)?)$";

/// The last millisecond of the year 9999: the latest time a query takes.
const MAX_MS: u64 = 253_402_300_799_999;

/// The largest whole number the API takes (2^53 - 1, exact in every JSON reader).
const MAX_SAFE: u64 = (1 << 53) - 1;

/// How many events a store query reads at once for a page of `/admin/events`.
const READ_CHUNK: usize = 16;

/// Past this many bytes of payloads, a page of `/admin/events` ends (with `next`) before
/// its `limit`.
const PAGE_BYTES: usize = 4 << 20;

/// The largest page of a list.
pub const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/admin/openapi.json", get(openapi_json))
        .route("/admin/catalog", get(catalog))
        .route("/admin/schemas", get(schemas))
        .route("/admin/schemas/{name}/{version}", get(schema))
        .route("/admin/docs", get(docs))
        .route("/admin/events", get(events_page))
        .route("/admin/dead-letters", get(dead_letters).delete(discard_all))
        .route(
            "/admin/dead-letters/{id}",
            get(dead_letter).delete(discard_one),
        )
        .route("/admin/dead-letters/{id}/retry", post(retry_one))
        .route("/admin/handlers", get(handlers))
        .route("/admin/handlers/{handler}/pause", post(pause))
        .route("/admin/handlers/{handler}/resume", post(resume))
        .route("/admin/projections/{handler}/rebuild", post(rebuild))
        .route("/admin/outbox", get(outbox))
        .route("/admin/metrics", get(metrics))
        .route("/admin/flows/{correlation_id}", get(flow))
        .route("/admin/live", get(live))
        .route("/admin/dashboard", get(dashboard))
}

type Answer = Result<Response, Problem>;

fn ok(body: Value) -> Answer {
    Ok((StatusCode::OK, Json(body)).into_response())
}

fn bad_request(detail: &str) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "bad-query", detail)
}

fn not_found(detail: &str) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not-found", detail)
}

fn unavailable(what: &str, e: &dyn std::fmt::Display) -> Problem {
    tracing::warn!(error = %e, "admin API: {what}");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the store could not be read now; try again later",
    )
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Runs `f` with the bus after the admin credential is checked, off the runtime's threads
/// (a store read may block).
async fn admin<F>(shared: Arc<Shared>, headers: &HeaderMap, f: F) -> Response
where
    F: FnOnce(&Shared) -> Answer + Send + 'static,
{
    if let Err(problem) = shared.options.check_admin(headers) {
        return problem.into_response();
    }
    match tokio::task::spawn_blocking(move || f(&shared)).await {
        Ok(Ok(response)) => response,
        Ok(Err(problem)) => problem.into_response(),
        Err(_) => Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request failed on the service's side",
        )
        .into_response(),
    }
}

/// `limit` of a query: 1 to [`MAX_PAGE`], [`DEFAULT_PAGE`] when absent.
fn page_size(query: &HashMap<String, String>) -> Result<usize, Problem> {
    match query.get("limit") {
        None => Ok(DEFAULT_PAGE),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| bad_request("`limit` must be a whole number from 1 to 1000")),
    }
}

/// The first `limit` of `items` (which may hold one more), and the `after` of the next
/// page when there is one.
fn page_of<T>(mut items: Vec<T>, limit: usize, key: impl Fn(&T) -> u64) -> (Vec<T>, Option<u64>) {
    let more = items.len() > limit;
    items.truncate(limit);
    let next = if more { items.last().map(key) } else { None };
    (items, next)
}

fn number(query: &HashMap<String, String>, key: &str) -> Result<Option<u64>, Problem> {
    query
        .get(key)
        .map(|v| {
            v.parse::<u64>()
                .ok()
                .filter(|n| *n <= MAX_SAFE)
                .ok_or_else(|| {
                    bad_request(&format!(
                        "`{key}` must be a whole number from 0 to 9007199254740991"
                    ))
                })
        })
        .transpose()
}

type Params = Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>;

fn params(query: Params) -> Result<HashMap<String, String>, Problem> {
    query
        .map(|Query(q)| q)
        .map_err(|_| bad_request("the query string is not form-encoded text"))
}

/// The document itself needs no credential: it says what the API is, nothing of the data.
async fn openapi_json() -> Response {
    (StatusCode::OK, Json(openapi())).into_response()
}

async fn catalog(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    admin(shared, &headers, |shared| {
        let events: Vec<Value> = shared
            .bus
            .events()
            .iter()
            .map(|info| {
                json!({
                    "name": info.name(),
                    "version": info.version(),
                    "kind": format!("{:?}", info.kind()).to_lowercase(),
                    "type_name": info.type_name(),
                    "description": info.description(),
                    "redacted": info.redacted_fields(),
                    "personal": info.has_personal_data(),
                })
            })
            .collect();
        ok(json!({ "events": events }))
    })
    .await
}

/// Every event's schema keyed `name.vVERSION`: the snapshot `events::compat` compares.
async fn schemas(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    admin(shared, &headers, |shared| {
        ok(events::compat::snapshot(&shared.bus))
    })
    .await
}

/// Every generated document (`events::docs::render_all`): what `events docs --out` writes.
async fn docs(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    admin(shared, &headers, |shared| {
        let files = events::docs::render_all(&shared.bus, &events::docs::Options::default())
            .map_err(|e| unavailable("the documents could not be made", &e))?;
        let files: Vec<Value> = files
            .into_iter()
            .map(|(path, content)| json!({ "path": path, "content": content }))
            .collect();
        ok(json!({ "files": files }))
    })
    .await
}

async fn schema(
    State(shared): State<Arc<Shared>>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    admin(shared, &headers, move |shared| {
        let version: Option<u32> = version.strip_prefix('v').unwrap_or(&version).parse().ok();
        let info = shared
            .bus
            .events()
            .iter()
            .find(|i| i.name() == name && Some(i.version()) == version)
            .ok_or_else(|| not_found("no event of that name and version"))?;
        ok(serde_json::to_value(info.schema()).unwrap_or(Value::Null))
    })
    .await
}

/// A stored event as the admin API shows it: the envelope, and the payload as stored
/// (personal and redacted values sealed).
fn stored_json(e: &events::store::StoredEvent) -> Value {
    json!({
        "sequence": e.sequence,
        "id": e.id.to_string(),
        "name": e.name,
        "version": e.version,
        "time_ms": e.time / 1_000_000,
        "source": e.source,
        "correlation_id": e.correlation_id.to_string(),
        "causation_id": e.causation_id.map(|c| c.to_string()),
        "payload": e.payload_json().unwrap_or(Value::Null),
    })
}

async fn events_page(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    query: Params,
) -> Response {
    admin(shared, &headers, move |shared| {
        let query = params(query)?;
        let store = shared
            .bus
            .store()
            .ok_or_else(|| not_found("this service keeps no event store"))?;
        let limit = page_size(&query)?;
        let mut q = StoreQuery::all();
        if let Some(name) = query.get("name") {
            if name.len() > 256 {
                return Err(bad_request("`name` is longer than 256 bytes"));
            }
            q = q
                .name(name.as_str())
                .map_err(|_| bad_request("`name` is not an event name or pattern"))?;
        }
        if let Some(id) = query.get("correlation_id") {
            let id: EventId = id
                .parse()
                .map_err(|_| bad_request("`correlation_id` is not an event id"))?;
            q = q.correlation_id(id);
        }
        let after = number(&query, "after")?;
        if let Some(ms) = number(&query, "since_ms")? {
            if ms > MAX_MS {
                return Err(bad_request("`since_ms` is past the year 9999"));
            }
            q = q.since(UNIX_EPOCH + std::time::Duration::from_millis(ms));
        }
        // Read a few at a time, and end the page early past PAGE_BYTES of payloads: a page
        // of a thousand large events is never held at once.
        let newest = match query.get("order").map(String::as_str) {
            None | Some("oldest") => false,
            Some("newest") => true,
            Some(_) => return Err(bad_request("`order` must be `oldest` or `newest`")),
        };
        let mut found: Vec<events::store::StoredEvent> = Vec::new();
        let mut bytes = 0;
        let mut next = None;
        scan(store, &q, newest, after, |e| {
            if found.len() == limit || (bytes >= PAGE_BYTES && !found.is_empty()) {
                next = found.last().map(|e| e.sequence);
                return false;
            }
            bytes += e.payload.len();
            found.push(e);
            true
        })?;
        let events: Vec<Value> = found.iter().map(stored_json).collect();
        ok(json!({ "events": events, "next": next }))
    })
    .await
}

/// Gives `q`'s events to `each`, oldest first (`newest`: newest first) from past the
/// sequence `after`, until it returns `false`: [`READ_CHUNK`] at a time from the store, so
/// that what `each` drops is never held.
fn scan(
    store: &dyn events::store::EventStore,
    q: &StoreQuery,
    newest: bool,
    after: Option<u64>,
    mut each: impl FnMut(events::store::StoredEvent) -> bool,
) -> Result<(), Problem> {
    let mut cursor = after;
    loop {
        let chunk = match (newest, cursor) {
            (false, c) => q
                .clone()
                .from_sequence(c.map_or(0, |c| c.saturating_add(1))),
            (true, None) => q.clone().newest_first(),
            (true, Some(0)) => return Ok(()),
            (true, Some(c)) => q.clone().newest_first().to_sequence(c - 1),
        };
        let chunk = store
            .query(&chunk.limit(READ_CHUNK))
            .map_err(|e| unavailable("a store query failed", &e))?;
        let last_chunk = chunk.len() < READ_CHUNK;
        for e in chunk {
            cursor = Some(e.sequence);
            if !each(e) {
                return Ok(());
            }
        }
        if last_chunk {
            return Ok(());
        }
    }
}

/// A dead letter as the admin API shows it: its payload with every redacted and personal
/// field replaced by `"[redacted]"`.
fn letter_json(d: &DeadLetter) -> Value {
    let mut payload = d.redacted_payload();
    if let Value::Object(map) = &mut payload {
        for key in d.meta.info().secret_keys() {
            if let Some(v) = map.get_mut(&**key) {
                *v = Value::String("[redacted]".into());
            }
        }
    }
    json!({
        "id": d.id,
        "event": d.event_name(),
        "event_id": d.event_id().to_string(),
        "handler": d.handler,
        "error": d.error,
        "permanent": d.permanent,
        "attempts": d.attempts,
        "sequence": d.sequence,
        "first_failure_ms": millis(d.first_failure),
        "last_failure_ms": millis(d.last_failure),
        "payload": payload,
    })
}

fn letter_filter(query: &HashMap<String, String>) -> Result<DeadLetterFilter, Problem> {
    let mut filter = DeadLetterFilter::all();
    if let Some(event) = query.get("event") {
        filter = filter.event(event.as_str());
    }
    if let Some(handler) = query.get("handler") {
        filter = filter.handler(handler.as_str());
    }
    match query.get("permanent").map(String::as_str) {
        None => {}
        Some("true") => filter = filter.permanent(true),
        Some("false") => filter = filter.permanent(false),
        Some(_) => return Err(bad_request("`permanent` must be `true` or `false`")),
    }
    Ok(filter)
}

async fn dead_letters(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    query: Params,
) -> Response {
    admin(shared, &headers, move |shared| {
        let query = params(query)?;
        let limit = page_size(&query)?;
        let after = number(&query, "after")?.unwrap_or(0);
        let all = shared.bus.dead_letters().list(&letter_filter(&query)?);
        let mut page: Vec<&DeadLetter> = all.iter().filter(|d| d.id > after).collect();
        page.sort_by_key(|d| d.id);
        let (page, next) = page_of(page, limit, |d| d.id);
        let letters: Vec<Value> = page.into_iter().map(letter_json).collect();
        ok(json!({ "dead_letters": letters, "next": next, "total": all.len() }))
    })
    .await
}

fn letter_id(id: &str) -> Result<u64, Problem> {
    id.parse()
        .ok()
        .filter(|n| *n <= MAX_SAFE)
        .ok_or_else(|| not_found("a dead letter's id is a whole number"))
}

async fn dead_letter(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    admin(shared, &headers, move |shared| {
        let letter = shared
            .bus
            .dead_letters()
            .get(letter_id(&id)?)
            .ok_or_else(|| not_found("no dead letter has that id"))?;
        ok(letter_json(&letter))
    })
    .await
}

async fn discard_one(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    admin(shared, &headers, move |shared| {
        let id = letter_id(&id)?;
        let n = shared
            .bus
            .dead_letters()
            .discard(&DeadLetterFilter::all().id(id));
        if n == 0 {
            return Err(not_found("no dead letter has that id"));
        }
        ok(json!({ "discarded": n }))
    })
    .await
}

async fn discard_all(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    query: Params,
) -> Response {
    admin(shared, &headers, move |shared| {
        let query = params(query)?;
        let n = shared.bus.dead_letters().discard(&letter_filter(&query)?);
        ok(json!({ "discarded": n }))
    })
    .await
}

/// Retries one dead letter. An optional body `{"patch": {..}}` edits its payload first
/// (a JSON Merge Patch, checked against the event's schema: 422 with the violations when
/// refused, and the letter stays).
async fn retry_one(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(problem) = shared.options.check_admin(&headers) {
        return problem.into_response();
    }
    match retry_letter(&shared, &id, &headers, &body).await {
        Ok(answer) => (StatusCode::OK, Json(answer)).into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn retry_letter(
    shared: &Shared,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, Problem> {
    let id = letter_id(id)?;
    let patch = retry_patch(headers, body)?;
    let letters = shared.bus.dead_letters();
    let letter = letters
        .get(id)
        .ok_or_else(|| not_found("no dead letter has that id"))?;
    let retried = match &patch {
        None => letters.retry(id).await,
        Some(patch) => letters
            .retry_with(id, patch)
            .await
            .map_err(|e| Problem::from_error(&e))?,
    };
    // Failed again, it is a new letter (a new id) of the same event and handler.
    let still = letters
        .list(&DeadLetterFilter::all().handler(letter.handler.as_str()))
        .iter()
        .find(|d| d.event_id() == letter.event_id())
        .map(letter_json);
    Ok(json!({ "retried": retried, "dead_letter": still }))
}

/// The merge patch of a retry's body, if it has one.
fn retry_patch(headers: &HeaderMap, body: &[u8]) -> Result<Option<Value>, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "a retry's body is `application/json`",
        ));
    }
    let mut body: Value =
        serde_json::from_slice(body).map_err(|_| bad_request("the body is not JSON"))?;
    match body.get_mut("patch").map(Value::take) {
        Some(patch) if body.as_object().is_some_and(|o| o.len() == 1) => Ok(Some(patch)),
        _ => Err(bad_request(
            "a retry's body is `{\"patch\": <a JSON Merge Patch of the payload>}`",
        )),
    }
}

/// Pauses a durable handler: its live events wait in the store.
async fn pause(
    State(shared): State<Arc<Shared>>,
    Path(handler): Path<String>,
    headers: HeaderMap,
) -> Response {
    admin(shared, &headers, move |shared| {
        shared
            .bus
            .pause(&handler)
            .map_err(|e| rebuild_problem(&e))?;
        ok(json!({ "handler": handler, "paused": true }))
    })
    .await
}

/// Resumes a paused durable handler: delivers what it missed, then live again.
async fn resume(
    State(shared): State<Arc<Shared>>,
    Path(handler): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(problem) = shared.options.check_admin(&headers) {
        return problem.into_response();
    }
    match shared.bus.resume(&handler).await {
        Ok(r) => (
            StatusCode::OK,
            Json(json!({
                "handler": handler, "paused": false, "events": r.events,
                "unreadable": r.unreadable, "switched_at": r.switched_at,
            })),
        )
            .into_response(),
        Err(e) => rebuild_problem(&e).into_response(),
    }
}

/// A failed rebuild, pause or resume as a problem.
fn rebuild_problem(e: &events::RebuildError) -> Problem {
    match e {
        events::RebuildError::AlreadyRebuilding(_) => Problem::new(
            StatusCode::CONFLICT,
            "conflict",
            "that handler is being rebuilt or resumed now",
        ),
        events::RebuildError::UnknownHandler(_) => {
            not_found("no durable handler of that name is on this service")
        }
        events::RebuildError::NoStore => not_found("this service keeps no event store"),
        other => unavailable("the store failed", other),
    }
}

async fn handlers(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    admin(shared, &headers, |shared| {
        let lag = match shared.bus.lag() {
            Ok(lag) => lag,
            Err(events::store::StoreError::Closed) => Vec::new(),
            Err(e) => return Err(unavailable("reading the handlers' lag failed", &e)),
        };
        let rows: Vec<Value> = lag
            .iter()
            .map(|l| {
                json!({
                    "handler": l.handler,
                    "event": l.event,
                    "behind": l.behind,
                    "oldest_ms": l.oldest.map(millis),
                    "age_ms": u64::try_from(l.age().as_millis()).unwrap_or(u64::MAX),
                    "rebuilding": l.rebuilding,
                    "paused": l.paused,
                })
            })
            .collect();
        ok(json!({ "durable": rows }))
    })
    .await
}

async fn outbox(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    admin(shared, &headers, |shared| match shared.bus.outbox() {
        None => ok(json!({ "outbox": null })),
        Some(Err(e)) => Err(unavailable("reading the outbox failed", &e)),
        Some(Ok(status)) => ok(json!({ "outbox": {
            "waiting": status.backlog.events,
            "oldest_ms": status.backlog.oldest.map(|n| n / 1_000_000),
            "state": format!("{:?}", status.state).to_lowercase(),
            "forwarded": status.forwarded,
            "duplicates": status.duplicates,
            "failed_sends": status.failed_sends,
            "stuck": status.stuck,
        }})),
    })
    .await
}

/// The counts of the options' [`Metrics`](events::observe::Metrics), per event and per
/// handler.
fn metrics_json(shared: &Shared) -> Value {
    let Some(metrics) = &shared.options.metrics else {
        return json!({ "events": {}, "handlers": {}, "queue_depth": null });
    };
    let snap = metrics.snapshot(&shared.bus);
    let events: serde_json::Map<String, Value> = snap
        .events
        .iter()
        .map(|(name, e)| {
            (
                (*name).to_owned(),
                json!({ "published": e.published, "delivered": e.delivered, "failed": e.failed,
                        "invalid": e.invalid, "refused": e.refused }),
            )
        })
        .collect();
    let handlers: serde_json::Map<String, Value> = snap
        .handlers
        .iter()
        .map(|(name, h)| {
            let p99 = h
                .latency
                .quantile(0.99)
                .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
            (
                name.clone(),
                json!({ "calls": h.calls, "failures": h.failures, "p99_us": p99 }),
            )
        })
        .collect();
    json!({ "events": events, "handlers": handlers, "queue_depth": snap.queue_depth })
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    admin(shared, &headers, |shared| ok(metrics_json(shared))).await
}

/// Everything one correlation id caused: its stored events, each with its cause and the
/// handlers of its type, each `dead-lettered` (with the error) or `no failure`.
async fn flow(
    State(shared): State<Arc<Shared>>,
    Path(correlation): Path<String>,
    headers: HeaderMap,
) -> Response {
    admin(shared, &headers, move |shared| {
        let id: EventId = correlation
            .parse()
            .map_err(|_| not_found("a correlation id is an event id (a UUID)"))?;
        let store = shared
            .bus
            .store()
            .ok_or_else(|| not_found("this service keeps no event store"))?;
        // The envelopes only, a chunk at a time: never a thousand payloads at once.
        let mut found = Vec::new();
        let mut truncated = false;
        scan(
            store,
            &StoreQuery::all().correlation_id(id),
            false,
            None,
            |e| {
                if found.len() == MAX_PAGE {
                    truncated = true;
                    return false;
                }
                found.push((e.id, e.name, e.sequence, e.causation_id));
                true
            },
        )?;
        let letters = shared.bus.dead_letters().list(&DeadLetterFilter::all());
        let events: Vec<Value> = found
            .iter()
            .map(|(event_id, name, sequence, causation)| {
                let handlers: Vec<Value> = shared
                    .bus
                    .handlers()
                    .iter()
                    .filter(|h| h.event_name() == name)
                    .map(|h| {
                        let letter = letters
                            .iter()
                            .find(|d| d.event_id() == *event_id && d.handler == h.name());
                        match letter {
                            Some(d) => json!({ "handler": h.name(), "outcome": "dead-lettered",
                                              "error": d.error, "dead_letter": d.id }),
                            None => json!({ "handler": h.name(), "outcome": "no failure" }),
                        }
                    })
                    .collect();
                json!({
                    "id": event_id.to_string(), "name": name, "sequence": sequence,
                    "causation_id": causation.map(|c| c.to_string()),
                    "handlers": handlers,
                })
            })
            .collect();
        ok(json!({ "correlation_id": id.to_string(), "events": events, "truncated": truncated }))
    })
    .await
}

/// What the dashboard shows, once: counts, dead letters, lag.
fn live_json(shared: &Shared) -> Value {
    let mut letters = shared.bus.dead_letters().list(&DeadLetterFilter::all());
    letters.sort_by_key(|d| d.id);
    let total = letters.len();
    let shown: Vec<Value> = letters.iter().take(DEFAULT_PAGE).map(letter_json).collect();
    let lag: Vec<Value> = shared
        .bus
        .lag()
        .unwrap_or_default()
        .iter()
        .map(|l| {
            json!({ "handler": l.handler, "event": l.event, "behind": l.behind,
                         "age_ms": u64::try_from(l.age().as_millis()).unwrap_or(u64::MAX) })
        })
        .collect();
    json!({
        "metrics": metrics_json(shared),
        "dead_letters": { "total": total, "first": shown },
        "lag": lag,
    })
}

/// The dashboard's feed: a `state` event (as [`live_json`]) now and every second after,
/// until the client goes.
async fn live(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    use axum::response::sse::{Event as Sse, KeepAlive};
    if let Err(problem) = shared.options.check_admin(&headers) {
        return problem.into_response();
    }
    let stream = futures_util::stream::unfold((shared, true), |(shared, first)| async move {
        if !first {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        let state = {
            let shared = shared.clone();
            tokio::task::spawn_blocking(move || live_json(&shared))
                .await
                .unwrap_or(Value::Null)
        };
        let event = Sse::default().event("state").data(state.to_string());
        Some((Ok::<_, std::convert::Infallible>(event), (shared, false)))
    });
    axum::response::sse::Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The dashboard: one self-contained page (no CDN, no build step); it asks for the admin
/// token and reads the API with it. The page holds no data, so it is served to anyone.
async fn dashboard() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("dashboard.html"),
    )
        .into_response()
}

/// Rebuilds a projection the options allow ([`HttpOptions::rebuildable`](crate::HttpOptions::rebuildable)),
/// streaming its progress as Server-Sent Events: `progress` (`{"done", "total",
/// "sequence"}`, at most ten a second and the last one), then `done` (`{"events",
/// "unreadable", "switched_at"}`) or `error` (a problem document).
async fn rebuild(
    State(shared): State<Arc<Shared>>,
    Path(handler): Path<String>,
    headers: HeaderMap,
) -> Response {
    use axum::response::sse::{Event as Sse, KeepAlive};
    if let Err(problem) = shared.options.check_admin(&headers) {
        return problem.into_response();
    }
    let Some(reset) = shared.options.reset_of(&handler) else {
        return not_found("no projection of that name may be rebuilt over HTTP").into_response();
    };
    if shared.bus.is_rebuilding(&handler) {
        return Problem::new(
            StatusCode::CONFLICT,
            "conflict",
            "that projection is being rebuilt already",
        )
        .into_response();
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Sse>(64);
    let bus = shared.bus.clone();
    tokio::spawn(async move {
        let progress_tx = tx.clone();
        let mut last = std::time::Instant::now();
        let mut pending = None;
        let mut sent = None;
        let report = bus
            .rebuild(&handler)
            .reset(move || reset())
            .on_progress(|p| {
                pending = Some(p);
                // At most ten a second (a slow client drops some, never the last).
                if last.elapsed() >= std::time::Duration::from_millis(100) || p.done == p.total {
                    last = std::time::Instant::now();
                    if progress_tx.try_send(progress_event(p)).is_ok() {
                        sent = Some(p);
                    }
                }
            })
            .await;
        // The last progress, unless it went out already.
        let last = match &report {
            Ok(_) if pending != sent => pending.map(progress_event),
            _ => None,
        };
        if let Some(last) = last {
            let _ = tx.send(last).await;
        }
        let end = match report {
            Ok(r) => Sse::default().event("done").data(
                json!({ "events": r.events, "unreadable": r.unreadable, "switched_at": r.switched_at })
                    .to_string(),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "admin API: a rebuild failed");
                let problem = rebuild_problem(&e);
                Sse::default().event("error").data(problem.to_json().to_string())
            }
        };
        let _ = tx.send(end).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|e| (Ok::<_, std::convert::Infallible>(e), rx))
    });
    axum::response::sse::Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn progress_event(p: events::RebuildProgress) -> axum::response::sse::Event {
    axum::response::sse::Event::default()
        .event("progress")
        .data(json!({ "done": p.done, "total": p.total, "sequence": p.sequence }).to_string())
}

/// The OpenAPI 3.1 document of the admin API (and of the ingress routes).
pub fn openapi() -> Value {
    let problem = json!({ "$ref": "#/components/responses/Problem" });
    let refused = json!({
        "400": problem, "401": problem, "403": problem, "404": problem, "503": problem
    });
    let page = |name: &str, item: &str| {
        json!({
            "type": "object",
            "required": [name, "next"],
            "properties": {
                name: { "type": "array", "items": { "$ref": format!("#/components/schemas/{item}") } },
                "next": { "type": ["integer", "null"], "minimum": 0 }
            }
        })
    };
    let ok_with = |schema: Value| {
        let mut r = refused.clone();
        r["200"] = json!({
            "description": "OK",
            "content": { "application/json": { "schema": schema } }
        });
        r
    };
    let limit = json!({ "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": MAX_PAGE } });
    let whole = json!({ "type": "integer", "minimum": 0, "maximum": MAX_SAFE });
    let after = json!({ "name": "after", "in": "query", "schema": whole });
    let id = json!({ "name": "id", "in": "path", "required": true, "schema": whole });
    let letter_filters = [
        json!({ "name": "event", "in": "query", "schema": { "type": "string" } }),
        json!({ "name": "handler", "in": "query", "schema": { "type": "string" } }),
        json!({ "name": "permanent", "in": "query", "schema": { "type": "boolean" } }),
    ];
    let mut letters_list = vec![limit.clone(), after.clone()];
    letters_list.extend(letter_filters.iter().cloned());
    json!({
        "openapi": "3.1.0",
        "info": { "title": "events admin API", "version": env!("CARGO_PKG_VERSION") },
        "security": [{ "bearer": [] }],
        "paths": {
            "/admin/catalog": { "get": {
                "summary": "The events this service knows",
                "responses": ok_with(json!({ "type": "object", "required": ["events"], "properties": { "events": { "type": "array", "items": { "$ref": "#/components/schemas/CatalogEntry" } } } }))
            }},
            "/admin/schemas": { "get": {
                "summary": "Every event's JSON Schema keyed `name.vVERSION`: the snapshot `events::compat` compares",
                "responses": ok_with(json!({ "type": "object", "additionalProperties": { "type": "object" } }))
            }},
            "/admin/docs": { "get": {
                "summary": "Every generated document (JSON Schemas, catalog.md, asyncapi.json, index.html) with its relative path",
                "responses": ok_with(json!({ "type": "object", "required": ["files"], "properties": { "files": { "type": "array", "items": {
                    "type": "object", "required": ["path", "content"],
                    "properties": { "path": { "type": "string" }, "content": { "type": "string" } }
                } } } }))
            }},
            "/admin/schemas/{name}/{version}": { "get": {
                "summary": "An event's JSON Schema",
                "parameters": [
                    { "name": "name", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "version", "in": "path", "required": true, "schema": { "type": "integer", "minimum": 1 } }
                ],
                "responses": ok_with(json!({ "type": "object" }))
            }},
            "/admin/events": { "get": {
                "summary": "Stored events, oldest first (or newest first), a page at a time: `next` is the `after` of the next page (the sequences past it in the page's order); a page ends before `limit` past 4 MiB of payloads",
                "parameters": [
                    limit, after,
                    { "name": "order", "in": "query", "schema": { "enum": ["oldest", "newest"] } },
                    { "name": "name", "in": "query", "schema": { "type": "string", "maxLength": 256, "pattern": PATTERN } },
                    { "name": "correlation_id", "in": "query", "schema": { "type": "string", "format": "uuid" } },
                    { "name": "since_ms", "in": "query", "schema": { "type": "integer", "minimum": 0, "maximum": MAX_MS } }
                ],
                "responses": ok_with(page("events", "StoredEvent"))
            }},
            "/admin/dead-letters": {
                "get": {
                    "summary": "Dead letters, a page at a time (payloads redacted)",
                    "parameters": letters_list,
                    "responses": ok_with({
                        let mut p = page("dead_letters", "DeadLetter");
                        p["required"] = json!(["dead_letters", "next", "total"]);
                        p["properties"]["total"] = json!({ "type": "integer", "minimum": 0 });
                        p
                    })
                },
                "delete": {
                    "summary": "Discards the dead letters the filters select",
                    "parameters": letter_filters,
                    "responses": ok_with(json!({ "type": "object", "required": ["discarded"], "properties": { "discarded": { "type": "integer", "minimum": 0 } } }))
                }
            },
            "/admin/dead-letters/{id}": {
                "get": {
                    "summary": "One dead letter (payload redacted)",
                    "parameters": [id],
                    "responses": ok_with(json!({ "$ref": "#/components/schemas/DeadLetter" }))
                },
                "delete": {
                    "summary": "Discards one dead letter",
                    "parameters": [id],
                    "responses": ok_with(json!({ "type": "object", "required": ["discarded"], "properties": { "discarded": { "type": "integer", "minimum": 0 } } }))
                }
            },
            "/admin/dead-letters/{id}/retry": { "post": {
                "summary": "Runs a dead letter's handler again: it leaves the list; `dead_letter` is its new letter (a new id) if the handler failed again. With a body, its `patch` (a JSON Merge Patch, RFC 7396) edits the payload first; an edited payload the event's schema refuses is answered 422 and the letter stays",
                "parameters": [id],
                "requestBody": { "required": false, "content": { "application/json": { "schema": {
                    "type": "object", "required": ["patch"], "additionalProperties": false,
                    "properties": { "patch": {} }
                } } } },
                "responses": {
                    "200": { "description": "OK", "content": { "application/json": { "schema": {
                        "type": "object", "required": ["retried", "dead_letter"],
                        "properties": {
                            "retried": { "type": "boolean" },
                            "dead_letter": { "anyOf": [{ "$ref": "#/components/schemas/DeadLetter" }, { "type": "null" }] }
                        }
                    } } } },
                    "400": problem, "401": problem, "403": problem, "404": problem, "413": problem,
                    "415": problem, "422": problem, "503": problem
                }
            }},
            "/admin/handlers/{handler}/pause": { "post": {
                "summary": "Pauses a durable handler: its live events wait in the store (its lag grows) until it is resumed; not kept across a restart",
                "parameters": [{ "name": "handler", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": ok_with(json!({ "type": "object", "required": ["handler", "paused"],
                    "properties": { "handler": { "type": "string" }, "paused": { "const": true } } }))
            }},
            "/admin/handlers/{handler}/resume": { "post": {
                "summary": "Resumes a durable handler: delivers what it missed, oldest first, then live again",
                "parameters": [{ "name": "handler", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": {
                    "200": { "description": "OK", "content": { "application/json": { "schema": {
                        "type": "object", "required": ["handler", "paused", "events", "unreadable", "switched_at"],
                        "properties": { "handler": { "type": "string" }, "paused": { "const": false },
                            "events": { "type": "integer", "minimum": 0 }, "unreadable": { "type": "integer", "minimum": 0 },
                            "switched_at": { "type": "integer", "minimum": 0 } }
                    } } } },
                    "400": problem, "401": problem, "403": problem, "404": problem, "409": problem, "503": problem
                }
            }},
            "/admin/handlers": { "get": {
                "summary": "How far each durable handler is behind",
                "responses": ok_with(json!({ "type": "object", "required": ["durable"], "properties": { "durable": { "type": "array", "items": { "$ref": "#/components/schemas/Lag" } } } }))
            }},
            "/admin/projections/{handler}/rebuild": { "post": {
                "summary": "Rebuilds a projection allowed by `HttpOptions::rebuildable`; its progress as Server-Sent Events (`progress`, then `done` or `error`)",
                "parameters": [{ "name": "handler", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": {
                    "200": { "description": "The progress stream", "content": { "text/event-stream": { "schema": {
                        "type": "object", "required": ["event", "data"],
                        "properties": { "event": { "enum": ["progress", "done", "error"] }, "data": { "type": "string" } }
                    } } } },
                    "400": problem, "401": problem, "403": problem, "404": problem, "409": problem
                }
            }},
            "/admin/metrics": { "get": {
                "summary": "Counts per event and per handler (the Metrics given to HttpOptions::metrics)",
                "responses": ok_with(json!({ "type": "object", "required": ["events", "handlers", "queue_depth"],
                    "properties": { "events": { "type": "object" }, "handlers": { "type": "object" },
                                    "queue_depth": { "type": ["integer", "null"] } } }))
            }},
            "/admin/flows/{correlation_id}": { "get": {
                "summary": "Everything one correlation id caused: its events (the first 1,000: `truncated` says whether there are more), their causes and their handlers' outcomes",
                "parameters": [{ "name": "correlation_id", "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } }],
                "responses": ok_with(json!({ "type": "object", "required": ["correlation_id", "events", "truncated"],
                    "properties": { "correlation_id": { "type": "string" }, "truncated": { "type": "boolean" }, "events": { "type": "array", "items": {
                        "type": "object", "required": ["id", "name", "sequence", "causation_id", "handlers"],
                        "properties": { "id": { "type": "string" }, "name": { "type": "string" },
                            "sequence": { "type": "integer" }, "causation_id": { "type": ["string", "null"] },
                            "handlers": { "type": "array", "items": { "type": "object", "required": ["handler", "outcome"],
                                "properties": { "handler": { "type": "string" }, "outcome": { "enum": ["dead-lettered", "no failure"] } } } } } } } } }))
            }},
            "/admin/live": { "get": {
                "summary": "The dashboard's feed: a `state` Server-Sent Event now and every second (counts, dead letters, lag), until the client goes",
                "responses": {
                    "200": { "description": "The feed", "content": { "text/event-stream": { "schema": {
                        "type": "object", "required": ["event", "data"],
                        "properties": { "event": { "const": "state" }, "data": { "type": "string" } } } } } },
                    "401": problem, "403": problem
                }
            }},
            "/admin/dashboard": { "get": {
                "summary": "The live dashboard: a self-contained page that asks for the admin token",
                "security": [],
                "responses": { "200": { "description": "The page", "content": { "text/html": { "schema": { "type": "string" } } } } }
            }},
            "/admin/outbox": { "get": {
                "summary": "The outbox's backlog and forwarder",
                "responses": ok_with(json!({ "type": "object", "required": ["outbox"], "properties": { "outbox": { "anyOf": [{ "$ref": "#/components/schemas/Outbox" }, { "type": "null" }] } } }))
            }}
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "responses": {
                "Problem": {
                    "description": "A problem document (RFC 9457)",
                    "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } }
                }
            },
            "schemas": {
                "Problem": {
                    "type": "object", "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": { "type": "string" }, "title": { "type": "string" },
                        "status": { "type": "integer" }, "detail": { "type": "string" }
                    }
                },
                "CatalogEntry": {
                    "type": "object",
                    "required": ["name", "version", "kind", "type_name", "description", "redacted", "personal"],
                    "properties": {
                        "name": { "type": "string" }, "version": { "type": "integer", "minimum": 1 },
                        "kind": { "type": "string" }, "type_name": { "type": "string" },
                        "description": { "type": ["string", "null"] },
                        "redacted": { "type": "array", "items": { "type": "string" } },
                        "personal": { "type": "boolean" }
                    }
                },
                "StoredEvent": {
                    "type": "object",
                    "required": ["sequence", "id", "name", "version", "time_ms", "source", "correlation_id", "causation_id", "payload"],
                    "properties": {
                        "sequence": { "type": "integer", "minimum": 1 }, "id": { "type": "string" },
                        "name": { "type": "string" }, "version": { "type": "integer" },
                        "time_ms": { "type": "integer" }, "source": { "type": "string" },
                        "correlation_id": { "type": "string" },
                        "causation_id": { "type": ["string", "null"] },
                        "payload": {}
                    }
                },
                "DeadLetter": {
                    "type": "object",
                    "required": ["id", "event", "event_id", "handler", "error", "permanent", "attempts", "sequence", "first_failure_ms", "last_failure_ms", "payload"],
                    "properties": {
                        "id": { "type": "integer", "minimum": 0 }, "event": { "type": "string" },
                        "event_id": { "type": "string" }, "handler": { "type": "string" },
                        "error": { "type": "string" }, "permanent": { "type": "boolean" },
                        "attempts": { "type": "integer", "minimum": 0 },
                        "sequence": { "type": ["integer", "null"] },
                        "first_failure_ms": { "type": "integer" }, "last_failure_ms": { "type": "integer" },
                        "payload": {}
                    }
                },
                "Lag": {
                    "type": "object",
                    "required": ["handler", "event", "behind", "oldest_ms", "age_ms", "rebuilding", "paused"],
                    "properties": {
                        "handler": { "type": "string" }, "event": { "type": "string" },
                        "behind": { "type": "integer", "minimum": 0 },
                        "oldest_ms": { "type": ["integer", "null"] },
                        "age_ms": { "type": "integer", "minimum": 0 },
                        "rebuilding": { "type": "boolean" },
                        "paused": { "type": "boolean" }
                    }
                },
                "Outbox": {
                    "type": "object",
                    "required": ["waiting", "oldest_ms", "state", "forwarded", "duplicates", "failed_sends", "stuck"],
                    "properties": {
                        "waiting": { "type": "integer", "minimum": 0 },
                        "oldest_ms": { "type": ["integer", "null"] },
                        "state": { "type": "string" },
                        "forwarded": { "type": "integer" }, "duplicates": { "type": "integer" },
                        "failed_sends": { "type": "integer" }, "stuck": { "type": "integer" }
                    }
                }
            }
        }
    })
}
