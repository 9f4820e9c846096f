//! The README's "Add to Cargo.toml" block names what the quickstart is really built with: the
//! same crates, the same major versions (schemars 1, not 0.8), and no feature the build here
//! does not use.

use std::collections::BTreeMap;

/// The `[dependencies]` table of the README's "Add to Cargo.toml" section.
fn readme_dependencies() -> toml::Table {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("## Add to Cargo.toml")
        .nth(1)
        .expect("the README has an \"Add to Cargo.toml\" section");
    let block = section
        .split("```toml")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a ```toml block in it");
    let doc: toml::Table = block.parse().expect("the block is valid TOML");
    doc["dependencies"].as_table().unwrap().clone()
}

/// `(version requirement, features)` of a dependency entry.
fn spec(value: &toml::Value) -> (String, Vec<String>) {
    match value {
        toml::Value::String(v) => (v.clone(), Vec::new()),
        toml::Value::Table(t) => (
            t.get("version")
                .and_then(toml::Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            t.get("features")
                .and_then(toml::Value::as_array)
                .map(|fs| {
                    fs.iter()
                        .filter_map(|f| f.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        _ => panic!("unexpected entry {value}"),
    }
}

/// The leading number of a version requirement (`"=0.1.0"` → 0, `"1"` → 1), and the next one
/// for 0.x.
fn major(requirement: &str) -> (u64, u64) {
    let mut parts = requirement
        .trim_start_matches(['=', '^', '~'])
        .split('.')
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let first = parts.next().unwrap_or(0);
    let second = if first == 0 {
        parts.next().unwrap_or(0)
    } else {
        0
    };
    (first, second)
}

#[test]
fn the_readme_names_the_dependencies_the_quickstart_is_built_with() {
    let workspace: toml::Table = include_str!("../../Cargo.toml").parse().unwrap();
    let ours = workspace["workspace"]["dependencies"].as_table().unwrap();
    let tests: toml::Table = include_str!("../Cargo.toml").parse().unwrap();
    let tests = tests["dependencies"].as_table().unwrap();
    let readme = readme_dependencies();
    let names: Vec<&str> = readme.keys().map(String::as_str).collect();
    assert_eq!(names, ["events", "schemars", "serde", "tokio"]);

    let mut used: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, entry) in tests {
        used.entry(name).or_default().extend(spec(entry).1);
    }
    for (name, entry) in &readme {
        let (version, features) = spec(entry);
        let (ours_version, mut ours_features) = spec(&ours[name.as_str()]);
        ours_features.extend(used.get(name.as_str()).cloned().unwrap_or_default());
        assert_eq!(
            major(&version),
            major(&ours_version),
            "`{name}`: the README says {version}, the workspace builds with {ours_version}"
        );
        for f in &features {
            // `events`'s features are its own; the others must be ones the build uses.
            if name != "events" {
                assert!(
                    ours_features.contains(f),
                    "`{name}`: feature `{f}` is not one the quickstart is built with"
                );
            }
        }
    }
    // What the quickstart's code needs.
    assert!(spec(&readme["serde"]).1.contains(&"derive".to_owned()));
    let tokio = spec(&readme["tokio"]).1;
    assert!(tokio.contains(&"macros".to_owned()) && tokio.contains(&"rt-multi-thread".to_owned()));
}
