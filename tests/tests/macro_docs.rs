//! Keeps the rustdoc honest about the macros: every option `#[handler]` accepts, every key
//! `#[derive(Event)]` accepts (and every value of theirs the macro matches on) appears in the
//! docs users read, so the next option cannot be added without its documentation. The keys
//! are read from the macros' own parsers, not from a list kept beside them.

/// The string literals the parser matches on: `"key" =>` arms and `is_ident("key")`.
fn matched_literals(source: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for line in source.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix('"') {
            if let Some((key, tail)) = rest.split_once('"') {
                if tail.trim_start().starts_with("=>") && !key.is_empty() {
                    keys.push(key.to_owned());
                }
            }
        }
        for part in line.split("is_ident(\"").skip(1) {
            if let Some((key, _)) = part.split_once('"') {
                keys.push(key.to_owned());
            }
        }
    }
    keys
}

/// The doc comment lines of `source` (`//!` or `///`), joined.
fn docs(source: &str, marker: &str) -> String {
    source
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix(marker))
        .collect::<Vec<_>>()
        .join("\n")
}

fn undocumented(keys: &[String], docs: &str) -> Vec<String> {
    keys.iter()
        .filter(|k| {
            !docs.contains(&format!("`{k}`"))
                && !docs.contains(&format!("`{k} "))
                && !docs.contains(&format!("`{k}("))
                && !docs.contains(&format!("\"{k}\""))
                && !docs.contains(&format!("({k})"))
        })
        .cloned()
        .collect()
}

#[test]
fn every_handler_option_is_in_the_crate_docs() {
    let args = include_str!("../../events-macros/src/handler/args.rs");
    // The duration units are parsed after the options; they are documented as a group.
    let options = args.split("fn parse_duration").next().unwrap();
    let keys = matched_literals(options);
    for expected in [
        "name", "retry", "durable", "replay", "pattern", "backoff", "fixed",
    ] {
        assert!(
            keys.iter().any(|k| k == expected),
            "the parser lost `{expected}`: {keys:?}"
        );
    }
    let docs = docs(include_str!("../../events/src/lib.rs"), "//!");
    let missing = undocumented(&keys, &docs);
    assert!(
        missing.is_empty(),
        "`#[handler]` accepts these, but the crate docs' option table does not say so: {missing:?}"
    );
}

#[test]
fn every_event_key_is_in_the_event_docs() {
    let keys: Vec<String> = [
        include_str!("../../events-macros/src/event/attr.rs"),
        include_str!("../../events-macros/src/event/mod.rs"),
    ]
    .iter()
    .flat_map(|s| matched_literals(s))
    // The attribute names the derive reads, not keys of `#[event(..)]`.
    .filter(|k| !["event", "doc", "serde", "rename"].contains(&k.as_str()))
    .collect();
    for expected in ["name", "version", "upcast_from", "redact"] {
        assert!(
            keys.iter().any(|k| k == expected),
            "the parser lost `{expected}`: {keys:?}"
        );
    }
    let docs = docs(include_str!("../../events-core/src/event.rs"), "///");
    let missing = undocumented(&keys, &docs);
    assert!(
        missing.is_empty(),
        "`#[derive(Event)]` accepts these, but the `Event` docs do not say so: {missing:?}"
    );
}
