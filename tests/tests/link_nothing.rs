//! `events::link!` naming a crate that contributes no handler and no event type fails
//! `build()`, naming the line (its own test binary: the link is for the whole binary).

use events::{Bus, Problem};

events::link!(serde_json);

#[test]
fn linking_a_crate_without_handlers_or_events_is_a_build_error() {
    let err = Bus::builder().build().unwrap_err();
    let [Problem::LinkedNothing { krate, location }] = err.problems() else {
        panic!("{err:#?}");
    };
    assert_eq!(*krate, "serde_json");
    assert_eq!(location, "tests/tests/link_nothing.rs:6");
    let text = format!("{err:?}");
    assert!(
        text.contains("`events::link!(serde_json)` (tests/tests/link_nothing.rs:6) links a crate that has no `#[handler]`"),
        "{text}"
    );
}

#[test]
fn a_crate_with_handlers_passes_the_check() {
    // `events_tests` (this package's library) has a handler; it is linked by naming it.
    events::link!(events_tests);
    let err = Bus::builder().build().unwrap_err();
    assert!(
        err.problems().iter().all(|p| matches!(
            p,
            Problem::LinkedNothing {
                krate: "serde_json",
                ..
            }
        )),
        "{err}"
    );
}
