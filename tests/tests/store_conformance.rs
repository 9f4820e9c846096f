//! The store conformance suite (`events::testing::store`) on every store in the workspace.

mod memory {
    events::store_conformance!(events::store::MemoryStore::new());
}

mod sqlite {
    /// A store in a directory of its own, removed when the test's statement ends.
    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    events::store_conformance!(
        events::store::SqliteStore::open(dir().path().join("events.db")).unwrap()
    );
}

/// The macro declares every case the suite has.
#[test]
fn the_macro_runs_every_case() {
    let source = include_str!("../../events-core/src/testing/store.rs");
    let body = source.split("(@cases $make;").nth(1).unwrap();
    let declared: Vec<&str> = body
        .split(");")
        .next()
        .unwrap()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(declared, events::testing::store::CASES);
    for case in events::testing::store::CASES {
        assert!(source.contains(&format!("pub async fn {case}(")), "{case}");
    }
}
