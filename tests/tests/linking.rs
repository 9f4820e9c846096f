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
    let bus = Bus::builder().scope("some::other::module").build().unwrap();
    assert!(bus.handlers().is_empty());
    let receipt = bus.publish_blocking(PluginPing { n: 1 }).unwrap();
    assert_eq!(receipt.handler_count(), 0);

    let bus = Bus::builder().scope("events_tests").build().unwrap();
    assert_eq!(bus.handler_names::<PluginPing>(), ["plugin.count_pings"]);
}
