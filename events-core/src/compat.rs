//! Schema compatibility: compare the event schemas of this binary with a saved snapshot
//! and report the breaking changes of events whose version was not bumped.
//!
//! A change is breaking when a payload valid under the saved schema may be refused or
//! misread now: a field removed, a field's type narrowed or changed, a new required field,
//! or an event version gone. Bump the version (and `upcast_from` the old one) instead.
//!
//! In a test, [`assert_compatible`] keeps the snapshot in the repository:
//!
//! ```no_run
//! #[test]
//! fn event_schemas_stay_compatible() {
//!     let bus = events::Bus::builder().build().unwrap();
//!     events::compat::assert_compatible(&bus, "tests/event-schemas.json".as_ref());
//! }
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use serde_json::{Map, Value};

use crate::bus::Bus;

/// The schema of every event the bus knows, keyed `name.vVERSION`: what to save and compare
/// against later.
pub fn snapshot(bus: &Bus) -> Value {
    let map: Map<String, Value> = bus
        .events()
        .iter()
        .map(|e| {
            let schema = serde_json::to_value(e.schema()).unwrap_or(Value::Null);
            (format!("{}.v{}", e.name(), e.version()), schema)
        })
        .collect();
    Value::Object(map)
}

/// One breaking change.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Breaking {
    /// The event version is in the snapshot but no longer in the binary.
    EventRemoved {
        /// `name.vVERSION`.
        event: String,
    },
    /// A field the snapshot had is gone.
    FieldRemoved {
        /// `name.vVERSION`.
        event: String,
        /// The field, as `a.b[].c`.
        field: String,
    },
    /// A field's type changed so that old values may no longer be accepted.
    TypeChanged {
        /// `name.vVERSION`.
        event: String,
        /// The field (empty for the payload itself).
        field: String,
        /// Its types in the snapshot.
        from: String,
        /// Its types now.
        to: String,
    },
    /// A field is required now that was not (old payloads may lack it).
    NewRequired {
        /// `name.vVERSION`.
        event: String,
        /// The field.
        field: String,
    },
}

impl fmt::Display for Breaking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Breaking::EventRemoved { event } => {
                write!(f, "`{event}`: the event version was removed")
            }
            Breaking::FieldRemoved { event, field } => {
                write!(f, "`{event}`: field `{field}` was removed")
            }
            Breaking::TypeChanged {
                event,
                field,
                from,
                to,
            } => {
                let field = if field.is_empty() {
                    "the payload"
                } else {
                    field
                };
                write!(f, "`{event}`: `{field}` changed type from {from} to {to}")
            }
            Breaking::NewRequired { event, field } => {
                write!(f, "`{event}`: field `{field}` is newly required")
            }
        }
    }
}

/// The breaking changes between `saved` (a [`snapshot`]) and `bus`'s events now. New events
/// and new versions are not breaking.
pub fn check(saved: &Value, bus: &Bus) -> Vec<Breaking> {
    check_snapshots(saved, &snapshot(bus))
}

/// The breaking changes between two [`snapshot`]s: `saved`, and `now` (of a running
/// service, say, as its admin API serves it). New events and new versions are not breaking.
pub fn check_snapshots(saved: &Value, now: &Value) -> Vec<Breaking> {
    let mut out = Vec::new();
    let (Some(saved), Some(now)) = (saved.as_object(), now.as_object()) else {
        return out;
    };
    for (event, old) in saved {
        match now.get(event) {
            None => out.push(Breaking::EventRemoved {
                event: event.clone(),
            }),
            Some(new) => {
                let mut cx = Compare {
                    event,
                    old_defs: old.get("$defs"),
                    new_defs: new.get("$defs"),
                    out: &mut out,
                };
                cx.schema(old, new, "", 0);
            }
        }
    }
    out
}

/// Compares `bus` with the snapshot at `path` and panics with every breaking change. With
/// no snapshot there yet, or with `EVENTS_UPDATE_SCHEMAS=1` in the environment, writes it
/// instead (commit the file).
///
/// # Panics
/// On a breaking change, or when the file cannot be read, parsed or written.
pub fn assert_compatible(bus: &Bus, path: &Path) {
    let update = std::env::var_os("EVENTS_UPDATE_SCHEMAS").is_some_and(|v| v == "1");
    if update || !path.exists() {
        let text = serde_json::to_string_pretty(&snapshot(bus)).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text + "\n") {
            panic!("cannot write the schema snapshot {}: {e}", path.display());
        }
        return;
    }
    let saved: Value = match std::fs::read(path).map(|b| serde_json::from_slice(&b)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("the schema snapshot {} is not JSON: {e}", path.display()),
        Err(e) => panic!("cannot read the schema snapshot {}: {e}", path.display()),
    };
    let breaking = check(&saved, bus);
    if !breaking.is_empty() {
        let list: Vec<String> = breaking.iter().map(|b| format!("  - {b}")).collect();
        panic!(
            "{} breaking schema change(s) without a version bump (snapshot {}):\n{}\n\
             Give the changed event a new `version` (with `upcast_from` the old type), or, if \
             no payload of the old shape exists anywhere, accept the change with \
             EVENTS_UPDATE_SCHEMAS=1",
            breaking.len(),
            path.display(),
            list.join("\n")
        );
    }
}

struct Compare<'a> {
    event: &'a str,
    old_defs: Option<&'a Value>,
    new_defs: Option<&'a Value>,
    out: &'a mut Vec<Breaking>,
}

impl<'a> Compare<'a> {
    fn resolve(defs: Option<&'a Value>, schema: &'a Value) -> &'a Value {
        let mut s = schema;
        for _ in 0..8 {
            match s
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/$defs/"))
                .and_then(|name| defs?.get(name))
            {
                Some(target) => s = target,
                None => break,
            }
        }
        s
    }

    fn schema(&mut self, old: &'a Value, new: &'a Value, field: &str, depth: usize) {
        if depth > 16 {
            return;
        }
        let old = Self::resolve(self.old_defs, old);
        let new = Self::resolve(self.new_defs, new);
        let (ot, nt) = (types(old), types(new));
        if !ot.is_empty() && !nt.is_empty() && !ot.is_subset(&nt) {
            self.out.push(Breaking::TypeChanged {
                event: self.event.to_owned(),
                field: field.to_owned(),
                from: show(&ot),
                to: show(&nt),
            });
            return;
        }
        let props = |s: &'a Value| s.get("properties").and_then(Value::as_object);
        if let (Some(op), Some(np)) = (props(old), props(new)) {
            let join = |k: &str| {
                if field.is_empty() {
                    k.to_owned()
                } else {
                    format!("{field}.{k}")
                }
            };
            for (k, o) in op {
                match np.get(k) {
                    None => self.out.push(Breaking::FieldRemoved {
                        event: self.event.to_owned(),
                        field: join(k),
                    }),
                    Some(n) => self.schema(o, n, &join(k), depth + 1),
                }
            }
            let required = |s: &Value| -> BTreeSet<String> {
                s.get("required")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let (or, nr) = (required(old), required(new));
            for k in nr.difference(&or) {
                self.out.push(Breaking::NewRequired {
                    event: self.event.to_owned(),
                    field: join(k),
                });
            }
        }
        if let (Some(oi), Some(ni)) = (old.get("items"), new.get("items")) {
            self.schema(oi, ni, &format!("{field}[]"), depth + 1);
        }
    }
}

/// The JSON types a schema allows; empty when it does not say (any).
fn types(s: &Value) -> BTreeSet<String> {
    let mut set: BTreeSet<String> = match s.get("type") {
        Some(Value::String(t)) => [t.clone()].into(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => BTreeSet::new(),
    };
    // An integer is a number: widening integer -> number is compatible.
    if set.contains("number") {
        set.insert("integer".into());
    }
    set
}

fn show(set: &BTreeSet<String>) -> String {
    let v: Vec<&str> = set
        .iter()
        .map(String::as_str)
        .filter(|t| !(set.contains("number") && *t == "integer"))
        .collect();
    v.join(" | ")
}
