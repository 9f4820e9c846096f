//! Compile-time guarantees: each mistake in an event, a handler or an aggregate is a compile error on the
//! user's token, with the fix in the message. The `.stderr` files are made with the toolchain
//! pinned in `rust-toolchain.toml`; regenerate with `TRYBUILD=overwrite`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/event/*.rs");
    t.compile_fail("ui/handler/*.rs");
    t.compile_fail("ui/link/*.rs");
    t.compile_fail("ui/aggregate/*.rs");
}
