//! HTTP for `events`: events from services that are not written in Rust, through the same
//! validated ingest path as every other entry point.
//!
//! [`router`] is an [`axum::Router`] to mount or serve:
//!
//! | request | what it takes |
//! |---|---|
//! | `POST /events` with `Content-Type: application/cloudevents+json` | one CloudEvent, structured mode |
//! | `POST /events` with `ce-id`, `ce-type`, ... headers | one CloudEvent, binary mode: the attributes in the headers (percent-encoded), the data in the body, `Content-Type` its `datacontenttype` |
//! | `POST /events` with `Content-Type: application/cloudevents-batch+json` | a batch: every event is checked before any is published |
//! | `POST /events/{name}/{version}` with `Content-Type: application/json` | one event's payload as plain JSON |
//!
//! An accepted event is answered `202 Accepted` with `{"id": "<event id>"}` (a batch with
//! `{"ids": [..]}`), once the bus has taken it (`publish` returned: stored, when the bus has
//! a store). A refusal is a problem document (RFC 9457, `application/problem+json`) whose
//! `type` names the [`IngestError`] variant, with the status of [`status_of`]: never a 5xx for
//! bad input. A body past [`IngestLimits::max_bytes`](events::IngestLimits) is refused with
//! 413 before more of it is read.
//!
//! The caller's [`Principal`] comes from its credential, never from the payload:
//! `Authorization: Bearer <token>` with a token given to [`HttpOptions::bearer`]; no
//! `Authorization` header is the anonymous principal; an unknown token is 401. The bus's
//! access rules and rate limits then apply (403, 429 with `Retry-After`).
//!
//! The [`admin`] API under `/admin` (the catalog and schemas, paged store queries, dead
//! letters listed redacted, retried and discarded, durable handlers' lag, the outbox, and
//! projection rebuilds streamed over Server-Sent Events) needs a token given to
//! [`HttpOptions::admin`]; its OpenAPI document is [`admin::openapi`], served at
//! `/admin/openapi.json`. The live dashboard, a self-contained page, is at
//! `/admin/dashboard` (give it the token as `#token=..` or in its form); it shows the counts
//! of [`HttpOptions::metrics`].
//!
//! ```no_run
//! # async fn run(bus: events::Bus) -> std::io::Result<()> {
//! use events::security::Principal;
//! use events_http::{HttpOptions, router};
//!
//! let options = HttpOptions::new().bearer("s3cr3t-token", Principal::new("checkout").unwrap());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, router(bus, options)).await
//! # }
//! ```

// The OpenAPI document is one `json!` literal, nested deeper than the default allows.
#![recursion_limit = "512"]

pub mod admin;
mod problem;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use events::Bus;
use events::IngestError;
use events::security::Principal;

pub use axum;
pub use problem::{Problem, status_of};

/// How the router authenticates callers.
#[derive(Clone, Default)]
pub struct HttpOptions {
    tokens: Vec<(Box<[u8]>, Principal)>,
    admin: Vec<Box<[u8]>>,
    rebuildable: Vec<(String, Reset)>,
    metrics: Option<events::observe::Metrics>,
}

/// What clears a projection before it is rebuilt.
type Reset = Arc<dyn Fn() + Send + Sync>;

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens.
        f.debug_struct("HttpOptions")
            .field(
                "principals",
                &self.tokens.iter().map(|(_, p)| p).collect::<Vec<_>>(),
            )
            .field(
                "rebuildable",
                &self.rebuildable.iter().map(|(h, _)| h).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl HttpOptions {
    /// No credentials: every caller is anonymous.
    pub fn new() -> HttpOptions {
        HttpOptions::default()
    }

    /// A caller presenting `Authorization: Bearer <token>` is `principal`. Tokens are
    /// compared in constant time.
    #[must_use]
    pub fn bearer(mut self, token: impl AsRef<str>, principal: Principal) -> HttpOptions {
        self.tokens
            .push((token.as_ref().as_bytes().into(), principal));
        self
    }

    /// A caller presenting `Authorization: Bearer <token>` may use the admin API
    /// ([`admin`]): read the store and the dead letters, retry and discard. Without one,
    /// the admin API answers 403 to every request.
    #[must_use]
    pub fn admin(mut self, token: impl AsRef<str>) -> HttpOptions {
        self.admin.push(token.as_ref().as_bytes().into());
        self
    }

    /// Durable handler `handler` (a projection) may be rebuilt from the admin API
    /// (`POST /admin/projections/{handler}/rebuild`, progress streamed over Server-Sent
    /// Events); `reset` clears what it built first (see `Bus::rebuild`). Only the handlers
    /// named here can be rebuilt over HTTP: a projection that is not cleared would count
    /// its history twice.
    #[must_use]
    pub fn rebuildable(
        mut self,
        handler: impl Into<String>,
        reset: impl Fn() + Send + Sync + 'static,
    ) -> HttpOptions {
        self.rebuildable.push((handler.into(), Arc::new(reset)));
        self
    }

    /// The counts the dashboard and `/admin/metrics` show: a clone of the
    /// [`Metrics`](events::observe::Metrics) given to `BusBuilder::observer`. Without one,
    /// they show none.
    #[must_use]
    pub fn metrics(mut self, metrics: events::observe::Metrics) -> HttpOptions {
        self.metrics = Some(metrics);
        self
    }

    pub(crate) fn reset_of(&self, handler: &str) -> Option<Reset> {
        self.rebuildable
            .iter()
            .find(|(h, _)| h == handler)
            .map(|(_, r)| r.clone())
    }

    /// Whether the request carries an admin token: 401 without one or with a wrong one,
    /// 403 when none is configured.
    pub(crate) fn check_admin(&self, headers: &HeaderMap) -> Result<(), Problem> {
        if self.admin.is_empty() {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the admin API is off: no admin credential is configured (`HttpOptions::admin`)",
            ));
        }
        let token = bearer(headers)
            .ok_or_else(|| Problem::unauthorized("the admin API needs a bearer token"))?;
        let mut found = false;
        for known in &self.admin {
            found |= bool::from(subtle::ConstantTimeEq::ct_eq(&known[..], token.as_bytes()));
        }
        if found {
            Ok(())
        } else {
            Err(Problem::unauthorized(
                "the bearer token is not an admin token",
            ))
        }
    }

    /// The principal of a request's headers: anonymous without `Authorization`.
    fn principal(&self, headers: &HeaderMap) -> Result<Principal, Box<Problem>> {
        if !headers.contains_key(header::AUTHORIZATION) {
            return Ok(Principal::anonymous());
        }
        let token = bearer(headers).ok_or_else(|| {
            Box::new(Problem::unauthorized(
                "the credential is not a bearer token",
            ))
        })?;
        let mut found = None;
        for (known, principal) in &self.tokens {
            // Every token is compared, whatever matched: the time says nothing of which.
            if bool::from(subtle::ConstantTimeEq::ct_eq(&known[..], token.as_bytes())) {
                found = Some(principal.clone());
            }
        }
        found.ok_or_else(|| Box::new(Problem::unauthorized("the bearer token is not known")))
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.get(..7)
        .filter(|s| s.eq_ignore_ascii_case("bearer "))
        .map(|_| v[7..].trim())
}

struct Shared {
    bus: Bus,
    options: HttpOptions,
}

/// The ingress routes on `bus` (see the [crate docs](crate)).
pub fn router(bus: Bus, options: HttpOptions) -> Router {
    let shared = Arc::new(Shared { bus, options });
    Router::new()
        .route("/events", post(cloudevents))
        .route("/events/{name}/{version}", post(plain_json))
        .merge(admin::routes())
        .with_state(shared)
}

/// The body, at most `limit` bytes: 413 past it, without reading the rest.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, Problem> {
    let too_large = |size: Option<usize>| {
        Problem::from_error(&IngestError::TooLarge {
            size: size.unwrap_or(limit + 1),
            limit,
        })
    };
    if let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if length > limit {
            return Err(too_large(Some(length)));
        }
    }
    let limited = http_body_util::Limited::new(body, limit);
    match http_body_util::BodyExt::collect(limited).await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(None)),
        Err(_) => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "body",
            "the request body could not be read",
        )),
    }
}

fn media_type(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim())
}

fn accepted(body: serde_json::Value) -> Response {
    (StatusCode::ACCEPTED, axum::Json(body)).into_response()
}

async fn cloudevents(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match take_cloudevents(&shared, &headers, body).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}

async fn take_cloudevents(
    shared: &Shared,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let principal = shared.options.principal(headers).map_err(|p| *p)?;
    let bytes = read_body(headers, body, shared.bus.ingest_limits().max_bytes).await?;
    let ingress = shared.bus.ingress(&principal);
    let batch = media_type(headers)
        .is_some_and(|m| m.eq_ignore_ascii_case("application/cloudevents-batch+json"));
    if batch {
        let receipts = ingress
            .ingest_cloudevents_batch(&bytes)
            .await
            .map_err(|e| Problem::from_error(&e))?;
        let ids: Vec<String> = receipts.iter().map(|r| r.event_id().to_string()).collect();
        return Ok(accepted(serde_json::json!({ "ids": ids })));
    }
    // Binary mode reads `ce-*` and `Content-Type`; the tracing headers of the HTTP binding
    // (`traceparent`, `tracestate`) are the distributed-tracing extension's attributes.
    let mut pairs: Vec<(String, &str)> = Vec::with_capacity(headers.len());
    let has_ce = headers.keys().any(|k| k.as_str().starts_with("ce-"));
    for (name, value) in headers {
        let value = value.to_str().map_err(|_| {
            Problem::from_error(&IngestError::BadAttribute {
                attribute: name.as_str().chars().take(64).collect(),
                reason: "the header's value is not visible ASCII (the HTTP binding \
                         percent-encodes anything else)"
                    .into(),
            })
        });
        let name = name.as_str();
        if name == "content-type" || name.starts_with("ce-") {
            pairs.push((name.to_owned(), value?));
        } else if has_ce && (name == "traceparent" || name == "tracestate") {
            pairs.push((format!("ce-{name}"), value?));
        }
    }
    let receipt = ingress
        .ingest_cloudevent_binary(pairs.iter().map(|(n, v)| (n.as_str(), *v)), &bytes)
        .await
        .map_err(|e| Problem::from_error(&e))?;
    Ok(accepted(
        serde_json::json!({ "id": receipt.event_id().to_string() }),
    ))
}

async fn plain_json(
    State(shared): State<Arc<Shared>>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match take_plain_json(&shared, &name, &version, &headers, body).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}

async fn take_plain_json(
    shared: &Shared,
    name: &str,
    version: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let principal = shared.options.principal(headers).map_err(|p| *p)?;
    let json = media_type(headers).is_some_and(|m| {
        m.eq_ignore_ascii_case("application/json")
            || m.get(m.len().saturating_sub(5)..)
                .is_some_and(|s| s.eq_ignore_ascii_case("+json"))
    });
    if !json {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "the payload must be sent as `Content-Type: application/json`",
        ));
    }
    let version: u32 = version
        .strip_prefix('v')
        .unwrap_or(version)
        .parse()
        .map_err(|_| {
            Problem::new(
                StatusCode::NOT_FOUND,
                "unknown-version",
                "the version in the path is not a number (`/events/order.placed/1`)",
            )
        })?;
    let bytes = read_body(headers, body, shared.bus.ingest_limits().max_bytes).await?;
    let receipt = shared
        .bus
        .ingress(&principal)
        .publish_json(name, version, &bytes, events::PublishOptions::new())
        .await
        .map_err(|e| Problem::from_error(&e))?;
    Ok(accepted(
        serde_json::json!({ "id": receipt.event_id().to_string() }),
    ))
}
