//! [`IngestError`]: why outside JSON was refused.

use std::fmt;

use super::PublishError;

/// Why JSON from outside the process was refused. Nothing was dispatched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// No event type has this name.
    #[error("unknown event `{name}`{}", suggest(close))]
    UnknownEvent {
        /// The name given.
        name: String,
        /// Known names close to it, closest first.
        close: Vec<&'static str>,
    },
    /// The event exists, but not at this version.
    #[error(
        "event `{name}` has no version {version}; known versions: {}",
        list(known)
    )]
    UnknownVersion {
        /// The event's name.
        name: &'static str,
        /// The version given.
        version: u32,
        /// The versions this binary knows.
        known: Vec<u32>,
    },
    /// The payload is larger than the bus accepts.
    #[error("payload of {size} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit ([`IngestLimits::max_bytes`](crate::IngestLimits)).
        limit: usize,
    },
    /// The payload nests arrays and objects deeper than the bus accepts.
    #[error("payload nests arrays and objects more than {limit} levels deep")]
    TooDeep {
        /// The limit ([`IngestLimits::max_depth`](crate::IngestLimits)).
        limit: usize,
    },
    /// The payload is not JSON.
    #[error("malformed JSON at line {line}, column {column}: {reason}")]
    Malformed {
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What is wrong there.
        reason: String,
    },
    /// The payload is JSON but does not match the event's schema.
    #[error(
        "payload of `{name}` v{version} does not match its schema ({}): {}{}",
        Count(violations.len(), *more),
        Joined(violations),
        More(*more)
    )]
    Invalid {
        /// The event's name.
        name: &'static str,
        /// Its version.
        version: u32,
        /// The violations described, sorted by path: at most
        /// [`IngestLimits::max_violations`](crate::IngestLimits), within
        /// [`IngestLimits::max_error_bytes`](crate::IngestLimits).
        violations: Vec<Violation>,
        /// How many more there are, not described; `None` when they were not searched for:
        /// a payload of more than 4,096 JSON values gets only its first violation (finding
        /// them all would cost many times the payload's size in memory).
        more: Option<usize>,
    },
    /// The payload matches the schema but the type's `Deserialize` refused it (a custom
    /// implementation, or a constraint the schema cannot express).
    #[error("payload of `{name}` v{version} matches its schema but does not deserialize: {reason}")]
    Decode {
        /// The event's name.
        name: &'static str,
        /// Its version.
        version: u32,
        /// What `serde` said.
        reason: String,
    },
    /// The event's generated schema could not be compiled: a bug in the type's
    /// `JsonSchema`, not in the input.
    #[error("the JSON Schema of `{name}` v{version} does not compile: {reason}")]
    BadSchema {
        /// The event's name.
        name: &'static str,
        /// Its version.
        version: u32,
        /// What the validator said.
        reason: String,
    },
    /// The input is not a CloudEvent (or a batch is not an array).
    #[error("expected {expected}, got {found}")]
    NotAnEvent {
        /// What the JSON was.
        found: &'static str,
        /// What was expected.
        expected: &'static str,
    },
    /// A required CloudEvents attribute is missing (or `null`).
    #[error("the CloudEvent has no `{attribute}` attribute, which is required")]
    MissingAttribute {
        /// The attribute.
        attribute: &'static str,
    },
    /// A CloudEvents attribute has the wrong type or form.
    #[error("the CloudEvent's `{attribute}` attribute is invalid: {reason}")]
    BadAttribute {
        /// The attribute.
        attribute: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The CloudEvent uses another version of the specification.
    #[error("CloudEvents specversion `{found}` is not supported; expected `1.0`")]
    UnsupportedSpecVersion {
        /// The version given.
        found: String,
    },
    /// The CloudEvent's data is not JSON (binary `data_base64`, or a non-JSON content type).
    #[error("the CloudEvent's data cannot be an event payload: {reason}")]
    UnsupportedData {
        /// Why.
        reason: String,
    },
    /// One event of a CloudEvents batch was refused, so none was published.
    #[error("event {index} of the batch (counting from 0): {error}")]
    InBatch {
        /// Its position in the batch.
        index: usize,
        /// Why it was refused.
        error: Box<IngestError>,
    },
    /// No [access rule](crate::security::AccessRules) lets this principal publish this
    /// event. Checked before the payload is read: nothing of it was looked at.
    #[error("principal `{principal}` may not publish `{name}`")]
    Forbidden {
        /// The caller.
        principal: crate::security::Principal,
        /// The event name it sent (control characters escaped, clipped).
        name: String,
    },
    /// A [rate limit](crate::security::RateLimits) refused the call. Checked before the
    /// payload is read.
    #[error(
        "{limit} rate limit refused `{name}` from principal `{principal}`; retry after {} ms",
        retry_after.as_millis()
    )]
    RateLimited {
        /// The caller.
        principal: crate::security::Principal,
        /// The event.
        name: &'static str,
        /// Which limit.
        limit: crate::security::Limit,
        /// How long until the same call would be let through.
        retry_after: std::time::Duration,
    },
    /// The input was valid but the bus refused to publish it.
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// One place where a payload breaks its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Where, as a JSON Pointer into the payload (`""` for the payload itself).
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(f, "at {path}: {}", self.message)
    }
}

impl IngestError {
    pub(crate) fn malformed(e: serde_json::Error) -> IngestError {
        // serde_json ends its message with " at line L column C"; keep only the reason.
        let text = e.to_string();
        let reason = match text.rfind(" at line ") {
            Some(at) => text[..at].to_owned(),
            None => text,
        };
        IngestError::Malformed {
            line: e.line(),
            column: e.column(),
            reason,
        }
    }

    /// Whether the caller was refused (access rules, rate limits) rather than its input.
    pub fn is_refusal(&self) -> bool {
        match self {
            IngestError::Forbidden { .. } | IngestError::RateLimited { .. } => true,
            IngestError::InBatch { error, .. } => error.is_refusal(),
            _ => false,
        }
    }

    /// The event's name, when the input got far enough to name a known event.
    pub fn event(&self) -> Option<&'static str> {
        match self {
            IngestError::UnknownVersion { name, .. }
            | IngestError::Invalid { name, .. }
            | IngestError::Decode { name, .. }
            | IngestError::BadSchema { name, .. }
            | IngestError::RateLimited { name, .. } => Some(name),
            IngestError::InBatch { error, .. } => error.event(),
            _ => None,
        }
    }
}

fn suggest(close: &[&'static str]) -> String {
    match close {
        [] => String::new(),
        [one] => format!("; did you mean `{one}`?"),
        several => format!("; did you mean one of `{}`?", several.join("`, `")),
    }
}

fn list(versions: &[u32]) -> String {
    versions
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

struct Count(usize, Option<usize>);

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            None => f.write_str("a first violation"),
            Some(more) if self.0 + more == 1 => f.write_str("1 violation"),
            Some(more) => write!(f, "{} violations", self.0 + more),
        }
    }
}

struct More(Option<usize>);

impl fmt::Display for More {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(0) => Ok(()),
            Some(1) => f.write_str("; and 1 more violation"),
            Some(n) => write!(f, "; and {n} more violations"),
            None => f.write_str(
                "; others not searched for (the payload has more than 4096 JSON values)",
            ),
        }
    }
}

struct Joined<'a>(&'a [Violation]);

impl fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}
