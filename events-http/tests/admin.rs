//! The admin API on a real server over a real SQLite file, with a real client: the
//! credential, the catalog and schemas, paged store queries, dead letters (redacted, retried
//! from the API, discarded), durable handlers' lag and the outbox; every answer checked
//! against the OpenAPI document the server serves. (`.ci/run` also points schemathesis at
//! it: `examples/serve.rs`.)

#![allow(unreachable_pub)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::serve;
use events::{Bus, Event, handler};
use events_http::HttpOptions;
use serde_json::{Value, json};

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "shop.paid")]
pub struct Paid {
    pub order_id: u64,
    #[event(redact)]
    pub card: String,
}

/// How often the projection was cleared for a rebuild.
static RESETS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Whether the mailer works: off, every event leaves a dead letter.
static MAILER_UP: AtomicBool = AtomicBool::new(false);

mod handlers {
    use super::*;

    #[handler(durable)]
    fn book(_: &Paid) {}

    #[handler]
    fn mail(_: &Paid) -> Result<(), events::HandlerError> {
        if MAILER_UP.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(events::HandlerError::permanent("the mail server said no"))
        }
    }
}

/// `method url` with the bearer `token`: the status and the body as JSON.
async fn call(method: &'static str, url: String, token: Option<&'static str>) -> (u16, Value) {
    tokio::task::spawn_blocking(move || {
        let agent = common::agent();
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = token {
            request = request.header("authorization", format!("Bearer {t}"));
        }
        let mut response = agent.run(request.body(()).unwrap()).unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    })
    .await
    .unwrap()
}

/// Checks `body` against the document's schema of `method path`'s answer with `status`.
fn matches_document(doc: &Value, method: &str, path: &str, status: u16, body: &Value) {
    let operation = &doc["paths"][path][method];
    assert!(
        operation.is_object(),
        "{method} {path} is not in the document"
    );
    let answer = &operation["responses"][status.to_string()];
    let answer = match answer["$ref"].as_str() {
        Some(r) => &doc["components"]["responses"][r.rsplit('/').next().unwrap()],
        None => answer,
    };
    let content = answer["content"]
        .as_object()
        .unwrap_or_else(|| panic!("{method} {path}: status {status} is not documented"));
    let (_, media) = content.iter().next().unwrap();
    let mut schema = media["schema"].clone();
    schema["components"] = doc["components"].clone();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(body).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: {errors:?} in {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_read_and_act_through_the_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let store = events_sqlite::SqliteStore::open(dir.path().join("admin.db")).unwrap();
    let bus = Bus::builder()
        .scope("admin::handlers")
        .store(store)
        .no_retries()
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for n in 1..=5 {
        let receipt = bus
            .publish(Paid {
                order_id: n,
                card: format!("4111-{n}"),
            })
            .await
            .unwrap();
        ids.push(receipt.event_id());
    }
    bus.store().unwrap().flush().await.unwrap();

    // Without an admin credential configured, the admin API is off.
    let off = serve(bus.clone(), HttpOptions::new()).await;
    let (status, body) = call("GET", format!("{off}/admin/catalog"), Some("x")).await;
    assert_eq!(status, 403, "{body}");

    let options =
        HttpOptions::new()
            .admin("root-token")
            .rebuildable("admin::handlers::book", || {
                RESETS.fetch_add(1, Ordering::SeqCst);
            });
    let base = serve(bus.clone(), options).await;
    let (status, doc) = call("GET", format!("{base}/admin/openapi.json"), None).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let get = |path: String| call("GET", format!("{base}{path}"), Some("root-token"));
    for token in [None, Some("wrong")] {
        let (status, body) = call("GET", format!("{base}/admin/catalog"), token).await;
        assert_eq!(status, 401, "{body}");
        matches_document(&doc, "get", "/admin/catalog", 401, &body);
    }

    let (status, catalog) = get("/admin/catalog".into()).await;
    assert_eq!(status, 200);
    matches_document(&doc, "get", "/admin/catalog", 200, &catalog);
    let paid = catalog["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "shop.paid")
        .unwrap();
    assert_eq!(paid["redacted"], json!(["card"]));

    let (status, schema) = get("/admin/schemas/shop.paid/1".into()).await;
    assert_eq!(status, 200);
    assert!(schema["properties"]["order_id"].is_object(), "{schema}");
    let (status, body) = get("/admin/schemas/shop.paid/2".into()).await;
    assert_eq!(status, 404);
    matches_document(&doc, "get", "/admin/schemas/{name}/{version}", 404, &body);

    // The store, two at a time.
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = get(format!("/admin/events?name=shop.*&limit=2&after={after}")).await;
        assert_eq!(status, 200, "{page}");
        matches_document(&doc, "get", "/admin/events", 200, &page);
        for e in page["events"].as_array().unwrap() {
            seen.push(e["payload"]["order_id"].as_u64().unwrap());
            assert!(
                !e.to_string().contains("4111"),
                "a redacted value is sealed: {e}"
            );
        }
        match page["next"].as_u64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(seen, [1, 2, 3, 4, 5]);
    let (_, one) = get(format!("/admin/events?correlation_id={}", ids[2])).await;
    assert_eq!(one["events"].as_array().unwrap().len(), 1);
    let (status, body) = get("/admin/events?name=Shop.Paid".into()).await;
    assert_eq!(status, 400);
    matches_document(&doc, "get", "/admin/events", 400, &body);
    let (status, _) = get("/admin/events?limit=0".into()).await;
    assert_eq!(status, 400);

    // Dead letters: redacted, retried, discarded.
    let (status, letters) = get("/admin/dead-letters?handler=admin::handlers::mail".into()).await;
    assert_eq!(status, 200);
    matches_document(&doc, "get", "/admin/dead-letters", 200, &letters);
    assert_eq!(letters["total"], 5);
    assert!(!letters.to_string().contains("4111"), "{letters}");
    let first = letters["dead_letters"][0]["id"].as_u64().unwrap();
    assert_eq!(letters["dead_letters"][0]["payload"]["card"], "[redacted]");
    let (status, one) = get(format!("/admin/dead-letters/{first}")).await;
    assert_eq!(status, 200);
    matches_document(&doc, "get", "/admin/dead-letters/{id}", 200, &one);

    let (status, still) = call(
        "POST",
        format!("{base}/admin/dead-letters/{first}/retry"),
        Some("root-token"),
    )
    .await;
    assert_eq!(status, 200);
    matches_document(&doc, "post", "/admin/dead-letters/{id}/retry", 200, &still);
    assert_eq!(still["dead_letter"]["attempts"], 2, "failed again: {still}");
    let again = still["dead_letter"]["id"].as_u64().unwrap();
    assert_ne!(again, first, "a new letter");
    MAILER_UP.store(true, Ordering::SeqCst);
    let (_, retried) = call(
        "POST",
        format!("{base}/admin/dead-letters/{again}/retry"),
        Some("root-token"),
    )
    .await;
    assert_eq!(retried["retried"], true);
    assert_eq!(retried["dead_letter"], Value::Null, "it left the list");
    assert_eq!(get("/admin/dead-letters".into()).await.1["total"], 4);

    let second = letters["dead_letters"][1]["id"].as_u64().unwrap();
    let (status, gone) = call(
        "DELETE",
        format!("{base}/admin/dead-letters/{second}"),
        Some("root-token"),
    )
    .await;
    assert_eq!((status, gone["discarded"].as_u64()), (200, Some(1)));
    matches_document(&doc, "delete", "/admin/dead-letters/{id}", 200, &gone);
    let (status, _) = get(format!("/admin/dead-letters/{second}")).await;
    assert_eq!(status, 404);
    let (_, rest) = call(
        "DELETE",
        format!("{base}/admin/dead-letters?event=shop.paid"),
        Some("root-token"),
    )
    .await;
    assert_eq!(rest["discarded"], 3);
    assert_eq!(get("/admin/dead-letters".into()).await.1["total"], 0);

    // Durable handlers and the outbox.
    let (status, lag) = get("/admin/handlers".into()).await;
    assert_eq!(status, 200);
    matches_document(&doc, "get", "/admin/handlers", 200, &lag);
    let book = lag["durable"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["handler"] == "admin::handlers::book")
        .unwrap_or_else(|| panic!("{lag}"));
    assert_eq!(book["behind"], 0);
    let (status, outbox) = get("/admin/outbox".into()).await;
    assert_eq!(status, 200);
    matches_document(&doc, "get", "/admin/outbox", 200, &outbox);
    assert_eq!(outbox["outbox"], Value::Null);

    // A projection rebuilt from the API, its progress streamed; only the allowed ones.
    let (status, body) = call(
        "POST",
        format!("{base}/admin/projections/admin::handlers::mail/rebuild"),
        Some("root-token"),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let stream = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut response = agent
            .post(format!(
                "{base}/admin/projections/admin::handlers::book/rebuild"
            ))
            .header("authorization", "Bearer root-token")
            .send_empty()
            .unwrap();
        let kind = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        (kind, response.body_mut().read_to_string().unwrap())
    })
    .await
    .unwrap();
    assert!(stream.0.starts_with("text/event-stream"), "{}", stream.0);
    let events: Vec<(String, Value)> = stream
        .1
        .split("\n\n")
        .filter_map(|block| {
            let kind = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((kind.to_owned(), serde_json::from_str(data).unwrap()))
        })
        .collect();
    let (last_kind, last) = events.last().unwrap();
    assert_eq!(last_kind, "done", "{events:?}");
    assert_eq!(last["events"], 5);
    let progress: Vec<&Value> = events
        .iter()
        .filter(|(k, _)| k == "progress")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        progress
            .last()
            .map(|p| (p["done"].clone(), p["total"].clone())),
        Some((json!(5), json!(5))),
        "the last progress is the whole: {events:?}"
    );
    assert_eq!(RESETS.load(Ordering::SeqCst), 1, "cleared once, first");
}

#[derive(Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[event(name = "shop.refund")]
pub struct Refund {
    pub amount: u32,
    #[event(redact)]
    pub card: String,
}

mod edits {
    use super::*;

    /// A ledger of refunds (durable).
    #[handler(durable)]
    fn ledger(_: &Refund) {}

    /// Refuses refunds over 100.
    #[handler]
    fn refund(r: &Refund) -> Result<(), events::HandlerError> {
        if r.amount > 100 {
            return Err(events::HandlerError::permanent("over the limit"));
        }
        Ok(())
    }
}

/// `method url` with a body of `content_type`: the status and the body as JSON.
async fn send(url: String, content_type: &'static str, body: String) -> (u16, Value) {
    tokio::task::spawn_blocking(move || {
        let mut response = common::agent()
            .post(&url)
            .header("authorization", "Bearer root-token")
            .header("content-type", content_type)
            .send(body)
            .unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_edit_letters_pause_handlers_and_read_documents() {
    let dir = tempfile::tempdir().unwrap();
    let store = events_sqlite::SqliteStore::open(dir.path().join("edits.db")).unwrap();
    let bus = Bus::builder()
        .scope("admin::edits")
        .store(store)
        .no_retries()
        .build()
        .unwrap();
    for amount in [50, 500, 700] {
        let card = format!("4111-{amount}");
        bus.publish(Refund { amount, card }).await.unwrap();
    }
    bus.store().unwrap().flush().await.unwrap();
    let base = serve(bus.clone(), HttpOptions::new().admin("root-token")).await;
    let (_, doc) = call("GET", format!("{base}/admin/openapi.json"), None).await;
    let get = |path: String| call("GET", format!("{base}{path}"), Some("root-token"));

    // The documents: the compatibility snapshot and every generated file.
    let (status, schemas) = get("/admin/schemas".into()).await;
    assert_eq!(status, 200);
    matches_document(&doc, "get", "/admin/schemas", 200, &schemas);
    assert!(
        schemas["shop.refund.v1"]["properties"]["amount"].is_object(),
        "{schemas}"
    );
    let (status, docs) = get("/admin/docs".into()).await;
    assert_eq!(status, 200);
    matches_document(&doc, "get", "/admin/docs", 200, &docs);
    let paths: Vec<&str> = docs["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    for expected in [
        "schemas/shop.refund.v1.json",
        "catalog.md",
        "asyncapi.json",
        "index.html",
    ] {
        assert!(paths.contains(&expected), "{paths:?}");
    }

    // A letter edited before its retry: refused by the schema (422, and it stays), then
    // accepted.
    let (_, letters) = get("/admin/dead-letters".into()).await;
    assert_eq!(letters["total"], 2);
    let id = letters["dead_letters"][0]["id"].as_u64().unwrap();
    let retry = format!("{base}/admin/dead-letters/{id}/retry");
    let patch = |p: Value| json!({ "patch": p }).to_string();
    let (status, problem) = send(
        retry.clone(),
        "application/json",
        patch(json!({"amount": "lots"})),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    matches_document(
        &doc,
        "post",
        "/admin/dead-letters/{id}/retry",
        422,
        &problem,
    );
    assert_eq!(problem["violations"][0]["path"], "/amount", "{problem}");
    let (status, _) = send(retry.clone(), "text/plain", patch(json!({"amount": 60}))).await;
    assert_eq!(status, 415);
    let (status, body) = send(
        retry.clone(),
        "application/json",
        r#"{"amount": 60}"#.into(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(get("/admin/dead-letters".into()).await.1["total"], 2);
    let (status, done) = send(
        retry.clone(),
        "application/json",
        patch(json!({"amount": 60})),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    matches_document(&doc, "post", "/admin/dead-letters/{id}/retry", 200, &done);
    assert_eq!(
        (&done["retried"], &done["dead_letter"]),
        (&json!(true), &Value::Null)
    );
    assert_eq!(get("/admin/dead-letters".into()).await.1["total"], 1);

    // A durable handler paused: its events wait; resumed: it catches up.
    let ledger = "admin::edits::ledger";
    let (status, paused) = call(
        "POST",
        format!("{base}/admin/handlers/{ledger}/pause"),
        Some("root-token"),
    )
    .await;
    assert_eq!(status, 200, "{paused}");
    matches_document(
        &doc,
        "post",
        "/admin/handlers/{handler}/pause",
        200,
        &paused,
    );
    for amount in [1, 2] {
        bus.publish(Refund {
            amount,
            card: "4111".into(),
        })
        .await
        .unwrap();
    }
    bus.store().unwrap().flush().await.unwrap();
    let (_, lag) = get("/admin/handlers".into()).await;
    matches_document(&doc, "get", "/admin/handlers", 200, &lag);
    assert_eq!(
        (&lag["durable"][0]["behind"], &lag["durable"][0]["paused"]),
        (&json!(2), &json!(true))
    );
    let (status, resumed) = call(
        "POST",
        format!("{base}/admin/handlers/{ledger}/resume"),
        Some("root-token"),
    )
    .await;
    assert_eq!(status, 200, "{resumed}");
    matches_document(
        &doc,
        "post",
        "/admin/handlers/{handler}/resume",
        200,
        &resumed,
    );
    assert_eq!(resumed["events"], 2);
    bus.store().unwrap().flush().await.unwrap();
    let (_, lag) = get("/admin/handlers".into()).await;
    assert_eq!(
        (&lag["durable"][0]["behind"], &lag["durable"][0]["paused"]),
        (&json!(0), &json!(false))
    );
    let (status, body) = call(
        "POST",
        format!("{base}/admin/handlers/admin::edits::nobody/pause"),
        Some("root-token"),
    )
    .await;
    assert_eq!(status, 404);
    matches_document(&doc, "post", "/admin/handlers/{handler}/pause", 404, &body);

    // Newest first, a page at a time.
    let (_, page) = get("/admin/events?order=newest&limit=2".into()).await;
    matches_document(&doc, "get", "/admin/events", 200, &page);
    let seqs = |p: &Value| -> Vec<u64> {
        p["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["sequence"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(seqs(&page), [5, 4]);
    let (_, page) = get(format!(
        "/admin/events?order=newest&limit=2&after={}",
        page["next"]
    ))
    .await;
    assert_eq!((seqs(&page), page["next"].as_u64()), (vec![3, 2], Some(2)));
    let (_, page) = get("/admin/events?order=newest&after=2".into()).await;
    assert_eq!((seqs(&page), &page["next"]), (vec![1], &Value::Null));

    // Large events: a page ends past 4 MiB of payloads, before its limit.
    for _ in 0..6 {
        let card = "x".repeat(900_000);
        bus.publish(Refund { amount: 1, card }).await.unwrap();
    }
    bus.store().unwrap().flush().await.unwrap();
    let (status, page) = get("/admin/events?after=5&limit=10".into()).await;
    assert_eq!(status, 200);
    let got = seqs(&page);
    assert!(got.len() < 6 && !got.is_empty(), "{got:?}");
    assert_eq!(page["next"].as_u64(), got.last().copied());
    let (_, rest) = get(format!("/admin/events?after={}&limit=10", page["next"])).await;
    assert_eq!(got.len() + seqs(&rest).len(), 6);

    // One order's flow (the refund of 700, still a dead letter): its event and each
    // handler's outcome.
    let (_, first) = get("/admin/events?limit=3".into()).await;
    let correlation = first["events"][2]["correlation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, flow) = get(format!("/admin/flows/{correlation}")).await;
    assert_eq!(status, 200);
    matches_document(&doc, "get", "/admin/flows/{correlation_id}", 200, &flow);
    assert_eq!(
        (flow["events"].as_array().unwrap().len(), &flow["truncated"]),
        (1, &json!(false))
    );
    let outcomes: Vec<&Value> = flow["events"][0]["handlers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| &h["outcome"])
        .collect();
    assert!(outcomes.contains(&&json!("dead-lettered")), "{flow}");
}
