//! The link-time registry: every `#[derive(Event)]` type and `#[handler]` function in the
//! binary, collected through `inventory` and checked once, at [`BusBuilder::build`].
//!
//! [`BusBuilder::build`]: crate::BusBuilder::build

use std::any::TypeId;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::event::EventInfo;
use crate::handler::HandlerInfo;

/// Submitted by `#[derive(Event)]`. Not public API.
#[doc(hidden)]
#[derive(Debug)]
pub struct EventEntry(pub &'static EventInfo);

/// Submitted by `#[handler]`. Not public API.
#[doc(hidden)]
#[derive(Debug)]
pub struct HandlerEntry(pub &'static HandlerInfo);

inventory::collect!(EventEntry);
inventory::collect!(HandlerEntry);

/// The events and handlers linked into this binary, in a stable order.
pub(crate) struct Registry {
    /// By name, then version.
    pub(crate) events: Vec<&'static EventInfo>,
    /// By event name and version, then dispatch order (priority descending, then name).
    pub(crate) handlers: Vec<&'static HandlerInfo>,
}

impl Registry {
    pub(crate) fn collect() -> Registry {
        let mut events: Vec<&'static EventInfo> = inventory::iter::<EventEntry>
            .into_iter()
            .map(|e| e.0)
            .collect();
        events.sort_by(|a, b| {
            (a.name, a.version, a.type_name).cmp(&(b.name, b.version, b.type_name))
        });
        let mut handlers: Vec<&'static HandlerInfo> = inventory::iter::<HandlerEntry>
            .into_iter()
            .map(|h| h.0)
            .collect();
        // File and line last: only handlers with the same name (a build error) get that far,
        // and even their error then reads the same on every run.
        // Wildcard handlers are listed under their pattern, version 0.
        handlers.sort_by_key(|h| {
            let version = h.event().map_or(0, |e| e.version);
            (
                h.event_name(),
                version,
                std::cmp::Reverse(h.priority),
                h.name,
                h.file,
                h.line,
            )
        });
        Registry { events, handlers }
    }

    /// Every problem at once, or `Ok`.
    ///
    /// `in_scope` says whether a module is in the bus's scope: a query declared outside it
    /// may be answered by another bus.
    /// `problems` holds what was found before (the selection's): they are listed first.
    pub(crate) fn check(
        &self,
        mut problems: Vec<Problem>,
        has_state: impl Fn(TypeId) -> bool,
        in_scope: impl Fn(&str) -> bool,
    ) -> Result<(), BuildError> {
        let mut by_key: BTreeMap<(&str, u32), Vec<&EventInfo>> = BTreeMap::new();
        for e in &self.events {
            by_key.entry((e.name, e.version)).or_default().push(e);
        }
        for ((name, version), infos) in by_key {
            if infos.len() > 1 {
                problems.push(Problem::DuplicateEvent {
                    name,
                    version,
                    types: infos.iter().map(|i| i.type_name).collect(),
                });
            }
        }

        let mut versions: BTreeMap<&str, Vec<&EventInfo>> = BTreeMap::new();
        for e in &self.events {
            versions.entry(e.name).or_default().push(e);
        }
        for (name, mut infos) in versions {
            if infos.iter().all(|e| e.upcast.is_none()) {
                continue;
            }
            infos.sort_by_key(|e| e.version);
            for pair in infos.windows(2) {
                let (older, newer) = (pair[0], pair[1]);
                if older.version == newer.version {
                    continue; // a duplicate, reported above
                }
                let from = newer.upcast_from();
                if from.is_none_or(|f| f.version != older.version) {
                    problems.push(Problem::UpcastGap {
                        name,
                        from: older.version,
                        to: newer.version,
                        declared: from.map(|f| f.version),
                    });
                }
            }
        }

        let mut names: HashMap<&str, Vec<&HandlerInfo>> = HashMap::new();
        for h in &self.handlers {
            names.entry(h.name).or_default().push(h);
            for key in h.states() {
                if !has_state(key.type_id) {
                    problems.push(Problem::MissingState {
                        handler: h.name,
                        state: key.written(),
                        location: format!("{}:{}", h.file, h.line),
                    });
                }
            }
        }
        let mut dup_names: Vec<_> = names.into_iter().filter(|(_, hs)| hs.len() > 1).collect();
        dup_names.sort_by_key(|(n, _)| *n);
        for (name, hs) in dup_names {
            problems.push(Problem::DuplicateHandlerName {
                name,
                locations: hs
                    .iter()
                    .map(|h| format!("{}:{}", h.file, h.line))
                    .collect(),
            });
        }

        for q in self.events.iter().filter(|e| e.response.is_some()) {
            let responders: Vec<&HandlerInfo> = self
                .handlers
                .iter()
                .copied()
                .filter(|h| {
                    h.is_responder() && h.event().is_some_and(|e| e.type_id() == q.type_id())
                })
                .collect();
            let module = q.type_name.rsplit_once("::").map_or("", |(m, _)| m);
            match responders.as_slice() {
                [] if in_scope(module) => problems.push(Problem::NoResponder {
                    query: q.name,
                    type_name: q.type_name,
                    response: q.response.as_ref().map_or("", |r| r.type_name),
                }),
                [] | [_] => {}
                several => problems.push(Problem::SeveralResponders {
                    query: q.name,
                    handlers: several
                        .iter()
                        .map(|h| format!("`{}` ({}:{})", h.name, h.file, h.line))
                        .collect(),
                }),
            }
        }

        if problems.is_empty() {
            Ok(())
        } else {
            Err(BuildError { problems })
        }
    }
}

/// A [`Problem::LinkedNothing`] for each `events::link!` crate that contributed no handler
/// and no event type to `registry` (the whole binary's, before any selection).
pub(crate) fn check_links(registry: &Registry) -> Vec<Problem> {
    use crate::link::crate_of;
    crate::link::entries()
        .into_iter()
        .filter(|l| {
            !registry
                .handlers
                .iter()
                .any(|h| crate_of(h.module) == l.krate)
                && !registry
                    .events
                    .iter()
                    .any(|e| crate_of(e.type_name) == l.krate)
        })
        .map(|l| Problem::LinkedNothing {
            krate: l.krate,
            location: format!("{}:{}", l.file, l.line),
        })
        .collect()
}

/// Why [`BusBuilder::build`](crate::BusBuilder::build) failed: every problem found, not just
/// the first.
///
/// Its `Debug` is its `Display` (what `fn main() -> Result<..>` prints on `build()?` is the
/// list of problems with their fixes); `{:#?}` shows the structure.
#[derive(Clone, PartialEq, Eq)]
pub struct BuildError {
    problems: Vec<Problem>,
}

impl fmt::Debug for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            f.debug_struct("BuildError")
                .field("problems", &self.problems)
                .finish()
        } else {
            fmt::Display::fmt(self, f)
        }
    }
}

impl BuildError {
    /// The problems, in a stable order.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "cannot build the bus: {n} problem{}",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BuildError {}

/// One problem found by [`BusBuilder::build`](crate::BusBuilder::build).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The bus's source ([`BusBuilder::source`](crate::BusBuilder::source)) holds a control
    /// character: every event carries it as its CloudEvents `source`, which may not.
    BadSource {
        /// The source (control characters escaped, clipped).
        source: String,
    },
    /// Two Rust types declare the same event name and version.
    DuplicateEvent {
        /// The event name.
        name: &'static str,
        /// The version.
        version: u32,
        /// The Rust paths of the types.
        types: Vec<&'static str>,
    },
    /// A handler takes a `State<T>` the builder was not given.
    MissingState {
        /// The handler's name.
        handler: &'static str,
        /// The state's type, as the handler writes it (`Mutex<u64>`).
        state: &'static str,
        /// Where the handler is defined (`file:line`).
        location: String,
    },
    /// Two handlers have the same name.
    DuplicateHandlerName {
        /// The name.
        name: &'static str,
        /// Where each is defined (`file:line`).
        locations: Vec<String>,
    },
    /// Some versions of an event upcast (`#[event(upcast_from = ..)]`), but version `to`
    /// does not upcast from the version just before it, so older payloads cannot reach
    /// the newest handlers.
    UpcastGap {
        /// The event's name.
        name: &'static str,
        /// The version before `to`.
        from: u32,
        /// The version that should upcast from `from`.
        to: u32,
        /// The version `to` upcasts from instead, if any.
        declared: Option<u32>,
    },
    /// A query declared in the bus's scope has no handler that answers it.
    NoResponder {
        /// The query's name.
        query: &'static str,
        /// Its Rust type.
        type_name: &'static str,
        /// Its response type.
        response: &'static str,
    },
    /// A crate named by [`events::link!`](crate::link!) contributed no `#[handler]` and no
    /// event type: its handlers are elsewhere, or it has none.
    LinkedNothing {
        /// The crate's name, as written in `link!`.
        krate: &'static str,
        /// Where `link!` names it (`file:line`).
        location: String,
    },
    /// A [`BusBuilder::scope`](crate::BusBuilder::scope) or
    /// [`BusBuilder::handler`](crate::BusBuilder::handler) that selects no `#[handler]` in
    /// the binary: a typo, or the crate that defines them is not linked.
    NoMatch {
        /// `scope` or `handler`.
        kind: &'static str,
        /// What was asked for.
        selector: String,
        /// What exists that is close (a module, or a handler's name or path), if anything.
        suggestion: Option<&'static str>,
    },
    /// [`BusBuilder::outbox`](crate::BusBuilder::outbox) without what it needs.
    Outbox {
        /// What is missing.
        missing: &'static str,
    },
    /// An access rule or a rate limit is not one
    /// ([`BusBuilder::access`](crate::BusBuilder::access),
    /// [`BusBuilder::rate_limits`](crate::BusBuilder::rate_limits)).
    Security {
        /// What is wrong.
        reason: String,
    },
    /// A query has more than one handler that answers it.
    SeveralResponders {
        /// The query's name.
        query: &'static str,
        /// Each responder: name and location.
        handlers: Vec<String>,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::BadSource { source } => write!(
                f,
                "the bus's source `{source}` contains a control character; every event carries \
                 it as its CloudEvents `source`, where CloudEvents allows none"
            ),
            Problem::DuplicateEvent {
                name,
                version,
                types,
            } => write!(
                f,
                "event `{name}` version {version} is declared by {} types: `{}`; give each its \
                 own name or version",
                types.len(),
                types.join("` and `")
            ),
            Problem::MissingState {
                handler,
                state,
                location,
            } => write!(
                f,
                "handler `{handler}` ({location}) takes `State<{state}>`, but the bus was not \
                 given one: add `.state(value)` with a `{state}` to the builder"
            ),
            Problem::DuplicateHandlerName { name, locations } => write!(
                f,
                "{} handlers are named `{name}` (at {}); give each a unique \
                 `#[handler(name = \"..\")]`",
                locations.len(),
                locations.join(", ")
            ),
            Problem::UpcastGap {
                name,
                from,
                to,
                declared,
            } => {
                write!(f, "event `{name}` v{to} ")?;
                match declared {
                    Some(d) => write!(f, "upcasts from v{d}, skipping v{from}")?,
                    None => write!(f, "does not upcast from v{from}")?,
                }
                write!(
                    f,
                    "; the chain has a gap, so v{from} payloads cannot reach v{to} handlers: add \
                     `#[event(upcast_from = ..)]` naming the v{from} type and a `From` impl"
                )
            }
            Problem::NoResponder {
                query,
                type_name,
                response,
            } => write!(
                f,
                "query `{query}` (`{type_name}`) has no responder: add a `#[handler]` that takes \
                 `&{short}` and returns `{response}`, or, if it is in a library crate, link that \
                 crate with `events::link!(crate_name);` in the binary",
                short = type_name.rsplit("::").next().unwrap_or(type_name)
            ),
            Problem::LinkedNothing { krate, location } => write!(
                f,
                "`events::link!({krate})` ({location}) links a crate that has no `#[handler]` and \
                 no event type; name the crate that defines the handlers, or remove it"
            ),
            Problem::NoMatch {
                kind: "scope",
                selector,
                suggestion,
            } => {
                write!(
                    f,
                    "`.scope(\"{selector}\")` selects no `#[handler]`: no handler is defined in that \
                     module or below it"
                )?;
                match suggestion {
                    Some(s) => write!(f, "; did you mean `{s}`?"),
                    None => write!(
                        f,
                        "; if its handlers are in a library crate, link it with \
                         `events::link!(crate_name);`, and for a bus with no handlers use \
                         `.no_handlers()`"
                    ),
                }
            }
            Problem::NoMatch {
                kind,
                selector,
                suggestion,
            } => {
                write!(
                    f,
                    "`.{kind}(\"{selector}\")` selects no `#[handler]`: no handler has that name or \
                     function path"
                )?;
                match suggestion {
                    Some(s) => write!(f, "; did you mean `{s}`?"),
                    None => write!(
                        f,
                        "; if it is in a library crate, link that crate with \
                         `events::link!(crate_name);`"
                    ),
                }
            }
            Problem::SeveralResponders { query, handlers } => write!(
                f,
                "query `{query}` has {} responders ({}); a query is answered by exactly one \
                 handler: make the others return `()` to listen only",
                handlers.len(),
                handlers.join(", ")
            ),
            Problem::Outbox { missing } => {
                write!(f, "the outbox (`BusBuilder::outbox`) needs {missing}")
            }
            Problem::Security { reason } => f.write_str(reason),
        }
    }
}
