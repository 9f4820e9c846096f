// A package name with a hyphen: Rust code spells the crate `link_billing`.
events::link!(link-billing);

fn main() {}
