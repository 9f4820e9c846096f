//! Refusals as problem documents (RFC 9457): `application/problem+json`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use events::{IngestError, PublishError};
use serde_json::{Map, Value, json};

/// A problem document: `type` (`urn:events:problem:<kind>`), `title`, `status`, `detail`,
/// and members of its own (`violations`, `index`, `retry_after_ms`, `id`).
#[derive(Debug, Clone)]
pub struct Problem {
    status: StatusCode,
    kind: &'static str,
    detail: String,
    members: Map<String, Value>,
    retry_after: Option<u64>,
}

/// The HTTP status of a refusal: 4xx for anything about the input (400 malformed, 401 an
/// anonymous caller the rules refuse, 403 a known one, 404 an unknown event or version,
/// 413 too large, 415 data that cannot be a payload, 422 a payload that breaks its schema,
/// 429 a rate limit), 5xx only for the service's side (503 a bus that takes no events now,
/// 502 a broker that refused, 504 an outcome not known).
pub fn status_of(error: &IngestError) -> StatusCode {
    match error {
        IngestError::UnknownEvent { .. } | IngestError::UnknownVersion { .. } => {
            StatusCode::NOT_FOUND
        }
        IngestError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        IngestError::TooDeep { .. }
        | IngestError::Malformed { .. }
        | IngestError::NotAnEvent { .. }
        | IngestError::MissingAttribute { .. }
        | IngestError::BadAttribute { .. }
        | IngestError::UnsupportedSpecVersion { .. } => StatusCode::BAD_REQUEST,
        IngestError::UnsupportedData { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        IngestError::Invalid { .. } | IngestError::Decode { .. } => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        IngestError::InBatch { error, .. } => status_of(error),
        IngestError::Forbidden { principal, .. } if principal.is_anonymous() => {
            StatusCode::UNAUTHORIZED
        }
        IngestError::Forbidden { .. } => StatusCode::FORBIDDEN,
        IngestError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        IngestError::Publish(e) => match e {
            PublishError::TooDeep { .. }
            | PublishError::Expired { .. }
            | PublishError::BadMetadata { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            PublishError::QueueFull { .. }
            | PublishError::Disabled { .. }
            | PublishError::Closed
            | PublishError::Store { .. } => StatusCode::SERVICE_UNAVAILABLE,
            PublishError::Transport { .. } => StatusCode::BAD_GATEWAY,
            PublishError::Unconfirmed { .. } => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        },
        // A bug in the type's schema, not in the input.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The `type` of a refusal: which variant.
fn kind_of(error: &IngestError) -> &'static str {
    match error {
        IngestError::UnknownEvent { .. } => "unknown-event",
        IngestError::UnknownVersion { .. } => "unknown-version",
        IngestError::TooLarge { .. } => "too-large",
        IngestError::TooDeep { .. } => "too-deep",
        IngestError::Malformed { .. } => "malformed",
        IngestError::Invalid { .. } => "invalid",
        IngestError::Decode { .. } => "decode",
        IngestError::NotAnEvent { .. } => "not-an-event",
        IngestError::MissingAttribute { .. } => "missing-attribute",
        IngestError::BadAttribute { .. } => "bad-attribute",
        IngestError::UnsupportedSpecVersion { .. } => "unsupported-specversion",
        IngestError::UnsupportedData { .. } => "unsupported-data",
        IngestError::InBatch { error, .. } => kind_of(error),
        IngestError::Forbidden { principal, .. } if principal.is_anonymous() => "unauthorized",
        IngestError::Forbidden { .. } => "forbidden",
        IngestError::RateLimited { .. } => "rate-limited",
        IngestError::Publish(PublishError::Unconfirmed { .. }) => "unconfirmed",
        IngestError::Publish(_) => "not-published",
        _ => "internal",
    }
}

fn title_of(kind: &str) -> &'static str {
    match kind {
        "unknown-event" => "No such event",
        "unknown-version" => "No such version of the event",
        "too-large" => "The body is over the size limit",
        "too-deep" => "The payload nests too deep",
        "malformed" => "The body is not JSON",
        "invalid" => "The payload does not match the event's schema",
        "decode" => "The payload does not deserialize",
        "not-an-event" => "The body is not a CloudEvent",
        "missing-attribute" => "A required CloudEvents attribute is missing",
        "bad-attribute" => "A CloudEvents attribute is invalid",
        "unsupported-specversion" => "The CloudEvents specversion is not supported",
        "unsupported-data" => "The CloudEvent's data cannot be an event payload",
        "unsupported-media-type" => "The content type is not accepted",
        "unauthorized" => "A credential is needed",
        "forbidden" => "The caller may not publish this event",
        "rate-limited" => "Too many requests",
        "unconfirmed" => "Sent but not confirmed: the event may have been published",
        "not-published" => "The event was not published",
        "body" => "The body could not be read",
        "bad-query" => "The query is not valid",
        "not-found" => "Not found",
        "unavailable" => "Not available now",
        _ => "Internal error",
    }
}

impl Problem {
    /// A problem of `kind` with `detail`.
    pub(crate) fn new(status: StatusCode, kind: &'static str, detail: &str) -> Problem {
        Problem {
            status,
            kind,
            detail: detail.to_owned(),
            members: Map::new(),
            retry_after: None,
        }
    }

    /// 401: no or an unknown credential.
    pub(crate) fn unauthorized(detail: &str) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// The problem document of a refused ingest. Its `detail` is the error's message (which
    /// never quotes a redacted or personal value); for a 5xx, a generic sentence (the error,
    /// which may name files or hosts, is logged instead).
    pub fn from_error(error: &IngestError) -> Problem {
        let status = status_of(error);
        let kind = kind_of(error);
        let detail = if status.is_server_error() && kind != "unconfirmed" {
            tracing::warn!(error = %error, "an HTTP ingest failed on the service's side");
            "the service could not take the event now; try again later".to_owned()
        } else {
            error.to_string()
        };
        let mut problem = Problem::new(status, kind, &detail);
        let mut inner = error;
        if let IngestError::InBatch { index, error } = error {
            problem.members.insert("index".into(), json!(index));
            inner = error;
        }
        match inner {
            IngestError::Invalid {
                violations, more, ..
            } => {
                let listed: Vec<Value> = violations
                    .iter()
                    .map(|v| json!({ "path": v.path, "message": v.message }))
                    .collect();
                problem.members.insert("violations".into(), listed.into());
                if let Some(more) = more {
                    problem.members.insert("more".into(), json!(more));
                }
            }
            IngestError::RateLimited { retry_after, .. } => {
                let ms = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX);
                problem.members.insert("retry_after_ms".into(), json!(ms));
                problem.retry_after = Some(ms.div_ceil(1000).max(1));
            }
            IngestError::Publish(PublishError::QueueFull { .. }) => {
                problem.retry_after = Some(1);
            }
            IngestError::Publish(PublishError::Unconfirmed { id, .. }) => {
                problem.members.insert("id".into(), json!(id.to_string()));
            }
            _ => {}
        }
        problem
    }

    /// Its HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The document, as JSON.
    pub fn to_json(&self) -> Value {
        let mut doc = Map::new();
        doc.insert(
            "type".into(),
            format!("urn:events:problem:{}", self.kind).into(),
        );
        doc.insert("title".into(), title_of(self.kind).into());
        doc.insert("status".into(), self.status.as_u16().into());
        doc.insert("detail".into(), self.detail.clone().into());
        doc.extend(self.members.clone());
        Value::Object(doc)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = self.to_json().to_string();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
