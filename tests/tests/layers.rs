//! The layers of `events-core`, and the rule that keeps them: a module imports only its own
//! layer and the ones below it, the model and the seams import nothing of their own layer but
//! acyclically (the seams not each other at all), and only the runtime may hold an import
//! cycle. Every `crate::` path in the source counts (a `use` line or a path inline); doc
//! comments, comments and `#[cfg(test)]` modules do not.
//!
//! The layer list is written here and nowhere else; the README's "Design notes" show it, and
//! this test checks that they do.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lowest first. Every top-level module of `events-core/src` is in exactly one layer.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "model",
        &[
            "text",
            "ids",
            "pattern",
            "options",
            "error",
            "event",
            "example",
            "envelope",
            "outcome",
            "retry",
            "wire",
            "dead_letter",
            "outbox",
            "aggregate",
            "security",
            "personal",
            "retention",
            "audit",
        ],
    ),
    ("seams", &["store", "ingest", "transport", "observe"]),
    (
        "runtime",
        &[
            "bus",
            "context",
            "registry",
            "handler",
            "filter",
            "dedup",
            "receipt",
            "link",
            "__private",
            "compat",
        ],
    ),
    ("tools", &["docs", "testing"]),
];

/// Layers whose modules may not import each other at all.
const ISOLATED: &[&str] = &["seams"];
/// The one layer that may hold an import cycle.
const CYCLES_ALLOWED: &str = "runtime";

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../events-core/src")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`bus/dispatch.rs` → `bus`).
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_str()
        .unwrap();
    first.trim_end_matches(".rs").to_owned()
}

/// The code of a file: comments, doc comments and the `#[cfg(test)]` module left out.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(at) => &l[..at],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a name re-exported at the crate root comes from: `pub use bus::{Bus, ..}` in
/// `lib.rs` makes `crate::Bus` a path into `bus`.
fn root_names(lib: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    let lib = code(lib);
    let mut rest = lib.as_str();
    while let Some(at) = rest.find("pub use ") {
        rest = &rest[at + "pub use ".len()..];
        let end = rest.find(';').unwrap();
        let stmt: String = rest[..end].split_whitespace().collect();
        rest = &rest[end..];
        let Some((module, items)) = stmt.split_once("::") else {
            continue;
        };
        let items = items
            .rsplit_once("::{")
            .map_or(items, |(_, list)| list)
            .trim_start_matches('{')
            .trim_end_matches('}');
        for item in items.split(',').filter(|i| !i.is_empty()) {
            let item = item.rsplit("::").next().unwrap();
            let item = item.rsplit(" as ").next().unwrap();
            // A local module's item first (`crate::Event` is the trait, not the derive).
            names
                .entry(item.to_owned())
                .or_insert_with(|| module.to_owned());
        }
    }
    names
}

/// Every module each module names through `crate::`.
fn imports() -> BTreeMap<String, BTreeSet<(String, String)>> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let roots = root_names(&lib);
    let mut all = Vec::new();
    files(&src(), &mut all);
    // `#[macro_export]` macros live at the root: `crate::store_conformance` is its file's.
    let mut roots = roots;
    for file in &all {
        let text = std::fs::read_to_string(file).unwrap();
        for (at, _) in text.match_indices("macro_rules! ") {
            let name: String = text[at + "macro_rules! ".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            roots.entry(name).or_insert_with(|| module_of(file));
        }
    }
    let mut out: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for file in all {
        let module = module_of(&file);
        if module == "lib" {
            continue;
        }
        let text = code(&std::fs::read_to_string(&file).unwrap());
        let entry = out.entry(module.clone()).or_default();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // A module's own name first: `crate::handler` is the module, not the macro.
            let local = src().join(&name).is_dir() || src().join(format!("{name}.rs")).is_file();
            let target = match roots.get(&name) {
                Some(m) if !local => m.clone(),
                _ => name,
            };
            if target != module && !target.is_empty() {
                let shown = file.strip_prefix(src()).unwrap().display().to_string();
                entry.insert((target, shown));
            }
        }
    }
    out
}

fn layer_of(module: &str) -> Option<(usize, &'static str)> {
    LAYERS
        .iter()
        .enumerate()
        .find(|(_, (_, modules))| modules.contains(&module))
        .map(|(i, (name, _))| (i, *name))
}

#[test]
fn every_module_imports_only_its_layer_and_the_ones_below() {
    let imports = imports();
    let mut wrong = Vec::new();
    for (module, targets) in &imports {
        let Some((layer, layer_name)) = layer_of(module) else {
            wrong.push(format!(
                "module `{module}` is in no layer: add it to LAYERS"
            ));
            continue;
        };
        for (target, file) in targets {
            let Some((target_layer, target_name)) = layer_of(target) else {
                wrong.push(format!("{file}: `crate::{target}` is in no layer"));
                continue;
            };
            if target_layer > layer {
                wrong.push(format!(
                    "{file}: `{module}` ({layer_name}) imports `{target}` ({target_name}), a higher layer"
                ));
            } else if target_layer == layer && ISOLATED.contains(&layer_name) {
                wrong.push(format!(
                    "{file}: `{module}` imports `{target}`; the {layer_name} import only lower layers"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn no_import_cycle_outside_the_runtime() {
    let imports = imports();
    let edges: BTreeMap<&str, BTreeSet<&str>> = imports
        .iter()
        .map(|(m, ts)| {
            let same: BTreeSet<&str> = ts
                .iter()
                .map(|(t, _)| t.as_str())
                .filter(|t| layer_of(t).map(|l| l.0) == layer_of(m).map(|l| l.0))
                .collect();
            (m.as_str(), same)
        })
        .collect();
    // Depth-first search for a cycle among modules of one layer.
    fn cycle<'a>(
        at: &'a str,
        edges: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(i) = path.iter().position(|p| *p == at) {
            let mut c = path[i..].to_vec();
            c.push(at);
            return Some(c);
        }
        if !done.insert(at) {
            return None;
        }
        path.push(at);
        for next in edges.get(at).into_iter().flatten() {
            if let Some(c) = cycle(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    for (name, modules) in LAYERS {
        if *name == CYCLES_ALLOWED {
            continue;
        }
        let mut done = BTreeSet::new();
        for m in *modules {
            if let Some(c) = cycle(m, &edges, &mut Vec::new(), &mut done) {
                panic!("an import cycle in the {name} layer: {}", c.join(" -> "));
            }
        }
    }
}

#[test]
fn the_readme_shows_the_layers() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    for (name, modules) in LAYERS {
        let line = format!(
            "| {name} | {} |",
            modules
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert!(
            readme.contains(&line),
            "the README's design notes lack the line\n{line}"
        );
    }
}
