//! Documents generated from the registry alone: one JSON Schema file per event and version,
//! a Markdown catalog, an AsyncAPI 3.1 document (the wire, with a NATS transport) and a
//! self-contained HTML catalog page.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = events::Bus::builder().build()?;
//! let written = events::docs::write(&bus, "target/event-docs".as_ref(), &events::docs::Options::default())?;
//! println!("{} files", written.len());
//! # Ok(()) }
//! ```
//!
//! Behind the `docs` feature.

mod asyncapi;

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::bus::Bus;
use crate::event::EventInfo;
use crate::handler::HandlerInfo;

pub use asyncapi::asyncapi;

/// Titles and versions the documents carry.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// The catalog's title (default "Event catalog").
    pub title: String,
    /// The API's version in the AsyncAPI document (default "1.0.0").
    pub version: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            title: "Event catalog".into(),
            version: "1.0.0".into(),
        }
    }
}

impl Options {
    /// With this title.
    pub fn title(mut self, title: impl Into<String>) -> Options {
        self.title = title.into();
        self
    }
    /// With this API version.
    pub fn version(mut self, version: impl Into<String>) -> Options {
        self.version = version.into();
        self
    }
}

/// Why documents could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocsError {
    /// Writing a file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A template failed to render (a bug in `events`).
    #[error("cannot render the {what}: {source}")]
    Template {
        /// Which document.
        what: &'static str,
        /// Why.
        source: minijinja::Error,
    },
    /// A schema or document could not be serialized.
    #[error("cannot serialize: {0}")]
    Json(#[from] serde_json::Error),
}

/// One event type as the documents show it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DocEvent {
    /// `order.placed.v2`: unique, and valid as an AsyncAPI component key.
    pub(crate) key: String,
    pub(crate) name: &'static str,
    pub(crate) version: u32,
    pub(crate) kind: &'static str,
    pub(crate) priority: i32,
    pub(crate) type_name: &'static str,
    pub(crate) description: Option<&'static str>,
    pub(crate) schema_id: String,
    pub(crate) file: String,
    pub(crate) schema: Value,
    pub(crate) schema_pretty: String,
    pub(crate) example: Value,
    pub(crate) example_pretty: String,
    pub(crate) response: Option<&'static str>,
    pub(crate) upcast_from: Option<u32>,
    pub(crate) redacted: &'static [&'static str],
    /// The top-level fields that are `Personal` (encrypted per data subject, forgettable).
    pub(crate) personal: Vec<String>,
    pub(crate) handlers: Vec<DocHandler>,
}

/// A handler that receives an event.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DocHandler {
    pub(crate) name: &'static str,
    pub(crate) is_async: bool,
    pub(crate) priority: i32,
    pub(crate) module: &'static str,
    pub(crate) responder: bool,
    /// The pattern of a wildcard handler.
    pub(crate) pattern: Option<&'static str>,
}

/// Every event the bus knows, by name then version, with its handlers.
pub(crate) fn model(bus: &Bus) -> Result<Vec<DocEvent>, DocsError> {
    bus.events()
        .iter()
        .map(|info| doc_event(info, bus.handlers()))
        .collect()
}

fn doc_event(
    info: &'static EventInfo,
    handlers: &[&'static HandlerInfo],
) -> Result<DocEvent, DocsError> {
    let key = format!("{}.v{}", info.name(), info.version());
    let schema = schema_document(info)?;
    let example = crate::example::example(&schema);
    let handlers = handlers
        .iter()
        .filter(|h| match h.event() {
            Some(e) => e.type_id() == info.type_id(),
            None => h
                .pattern()
                .is_none_or(|p| crate::pattern::matches(p, info.name())),
        })
        .map(|h| DocHandler {
            name: h.name(),
            is_async: h.is_async(),
            priority: h.priority(),
            module: h.module(),
            responder: h.is_responder(),
            pattern: h.event().is_none().then(|| h.pattern().unwrap_or(">")),
        })
        .collect();
    let personal = crate::personal::personal_properties(&schema);
    Ok(DocEvent {
        personal,
        file: format!("schemas/{key}.json"),
        schema_pretty: serde_json::to_string_pretty(&schema)?,
        example_pretty: serde_json::to_string_pretty(&example)?,
        key,
        name: info.name(),
        version: info.version(),
        kind: info.kind().as_str(),
        priority: info.priority(),
        type_name: info.type_name(),
        description: info.description(),
        schema_id: info.schema_id(),
        schema,
        example,
        response: info.response().map(|r| r.type_name()),
        upcast_from: info.upcast_from().map(EventInfo::version),
        redacted: info.redacted_fields(),
        handlers,
    })
}

/// The event's JSON Schema as a standalone document: `$id`, title, description, and
/// `x-redacted` on redacted properties.
fn schema_document(info: &EventInfo) -> Result<Value, DocsError> {
    let mut schema = serde_json::to_value(info.schema())?;
    if let Value::Object(map) = &mut schema {
        map.insert("$id".into(), info.schema_id().into());
        map.insert(
            "title".into(),
            format!("{} v{}", info.name(), info.version()).into(),
        );
        if let Some(props) = map.get_mut("properties").and_then(Value::as_object_mut) {
            for key in info.redacted_fields() {
                if let Some(Value::Object(p)) = props.get_mut(*key) {
                    p.insert("x-redacted".into(), true.into());
                }
            }
        }
    }
    Ok(schema)
}

/// One JSON Schema document per event and version: `(relative path, document)`.
///
/// # Errors
/// When a schema cannot be serialized.
pub fn json_schemas(bus: &Bus) -> Result<Vec<(String, Value)>, DocsError> {
    Ok(model(bus)?
        .into_iter()
        .map(|e| (e.file, e.schema))
        .collect())
}

#[derive(Serialize)]
struct Page<'a> {
    title: &'a str,
    version: &'a str,
    events: &'a [DocEvent],
    names: usize,
    handlers: usize,
}

fn render(
    template: &'static str,
    source: &'static str,
    options: &Options,
    events: &[DocEvent],
    bus: &Bus,
) -> Result<String, DocsError> {
    let mut env = minijinja::Environment::new();
    env.add_template(template, source)
        .and_then(|()| env.get_template(template))
        .and_then(|t| {
            let mut names: Vec<&str> = events.iter().map(|e| e.name).collect();
            names.dedup();
            t.render(minijinja::value::Serde(Page {
                title: &options.title,
                version: &options.version,
                events,
                names: names.len(),
                handlers: bus.handlers().len(),
            }))
        })
        .map_err(|source| DocsError::Template {
            what: template,
            source,
        })
}

/// The Markdown catalog: every event, its kind, description, handlers, schema and example.
///
/// # Errors
/// [`DocsError`] when a schema cannot be serialized.
pub fn markdown(bus: &Bus, options: &Options) -> Result<String, DocsError> {
    let events = model(bus)?;
    render(
        "catalog.md",
        include_str!("catalog.md.j2"),
        options,
        &events,
        bus,
    )
}

/// The HTML catalog: one self-contained page (no external resources) with a searchable
/// list of events, versions, kinds, descriptions, schemas, example payloads and handlers.
///
/// # Errors
/// [`DocsError`] when a schema cannot be serialized.
pub fn html(bus: &Bus, options: &Options) -> Result<String, DocsError> {
    let events = model(bus)?;
    // Named `.html`: the template engine escapes every value for HTML.
    render(
        "catalog.html",
        include_str!("catalog.html.j2"),
        options,
        &events,
        bus,
    )
}

/// Every document, as `(relative path, text)`: `schemas/<name>.v<version>.json`,
/// `catalog.md`, `asyncapi.json` and `index.html`, what [`write()`] writes.
///
/// # Errors
/// [`DocsError`] when a schema cannot be serialized or a template rendered.
pub fn render_all(bus: &Bus, options: &Options) -> Result<Vec<(String, String)>, DocsError> {
    let mut files = Vec::new();
    for (file, schema) in json_schemas(bus)? {
        files.push((file, serde_json::to_string_pretty(&schema)?));
    }
    files.push(("catalog.md".to_owned(), markdown(bus, options)?));
    files.push((
        "asyncapi.json".to_owned(),
        serde_json::to_string_pretty(&asyncapi(bus, options)?)?,
    ));
    files.push(("index.html".to_owned(), html(bus, options)?));
    Ok(files)
}

/// Writes every document into `dir` ([`render_all`]): `schemas/<name>.v<version>.json`,
/// `catalog.md`, `asyncapi.json` and `index.html`. Returns the files written.
///
/// # Errors
/// [`DocsError`] when a file cannot be written.
pub fn write(bus: &Bus, dir: &Path, options: &Options) -> Result<Vec<PathBuf>, DocsError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DocsError::Io { path, source }
    };
    let files = render_all(bus, options)?;
    let schemas_dir = dir.join("schemas");
    std::fs::create_dir_all(&schemas_dir).map_err(io(&schemas_dir))?;
    let mut written = Vec::new();
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(io(&path))?;
        written.push(path);
    }
    Ok(written)
}
