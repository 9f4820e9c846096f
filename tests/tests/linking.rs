//! A handler defined in another crate (`events_tests`' library) is found with no
//! registration call.

use std::sync::atomic::Ordering;

use events::Bus;
use events_tests::{PLUGIN_PINGS, PluginPing};

#[test]
fn handler_in_another_crate_is_found_and_called() {
    let bus = Bus::builder().build().unwrap();
    assert!(
        bus.handlers()
            .iter()
            .any(|h| h.name() == "plugin.count_pings")
    );
    assert_eq!(bus.handler_names::<PluginPing>(), ["plugin.count_pings"]);
    assert!(bus.events().iter().any(|e| e.name() == "plugin.ping"));

    let before = PLUGIN_PINGS.load(Ordering::SeqCst);
    let receipt = bus.publish_blocking(PluginPing { n: 7 }).unwrap();
    assert_eq!(receipt.delivered(), 1);
    assert_eq!(PLUGIN_PINGS.load(Ordering::SeqCst), before + 7);
}

#[test]
fn a_scope_excludes_handlers_of_other_modules() {
    let bus = Bus::builder().scope("events_tests").build().unwrap();
    assert_eq!(bus.handler_names::<PluginPing>(), ["plugin.count_pings"]);
    assert!(bus.handlers().iter().all(|h| h.module() == "events_tests"));

    let bus = Bus::builder().no_handlers().build().unwrap();
    assert!(bus.handlers().is_empty());
    let receipt = bus.publish_blocking(PluginPing { n: 1 }).unwrap();
    assert_eq!(receipt.handler_count(), 0);
}

/// Issue 17: a scope or handler name that selects nothing was an empty bus, silently.
#[test]
fn a_selector_that_selects_nothing_fails_the_build_with_a_suggestion() {
    let err = Bus::builder()
        .scope("events_test")
        .handler("plugin.count_ping")
        .handler("linking::nowhere")
        .build()
        .unwrap_err();
    let problems: Vec<String> = err.problems().iter().map(|p| p.to_string()).collect();
    assert_eq!(problems.len(), 3, "{err}");
    assert!(
        problems[0].starts_with("`.scope(\"events_test\")` selects no `#[handler]`")
            && problems[0].ends_with("did you mean `events_tests`?"),
        "{err}"
    );
    assert!(
        problems[1].ends_with("did you mean `plugin.count_pings`?"),
        "{err}"
    );
    assert!(
        problems[2].contains("`.handler(\"linking::nowhere\")` selects no `#[handler]`")
            && problems[2].contains("events::link!(crate_name);"),
        "{err}"
    );
}

#[test]
fn a_handler_is_selected_by_its_name_or_its_function_path() {
    for selector in ["plugin.count_pings", "events_tests::count_plugin_pings"] {
        let bus = Bus::builder().handler(selector).build().unwrap();
        assert_eq!(bus.handler_names::<PluginPing>(), ["plugin.count_pings"]);
        assert_eq!(bus.handlers().len(), 1);
    }
    let info = Bus::builder().build().unwrap();
    let info = info
        .handlers()
        .iter()
        .find(|h| h.name() == "plugin.count_pings")
        .unwrap();
    assert_eq!(info.function(), "events_tests::count_plugin_pings");
}
