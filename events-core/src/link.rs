//! [`link!`]: the one line that makes another crate's handlers part of a binary.

/// Links crates whose `#[handler]`s (or events) this binary uses, and checks at
/// [`BusBuilder::build`](crate::BusBuilder::build) that each one contributed some.
///
/// Handlers are collected at start-up from everything linked into the binary. Cargo lists a
/// dependency, but rustc links a crate only when the code names something in it, and a
/// crate of handlers is usually named by nothing: its functions are called by the bus. Its
/// handlers then silently do not exist. Name such crates once, anywhere in the binary (its
/// `main.rs`, or the top of an integration test file):
///
/// ```no_run,standalone_crate
/// # extern crate serde as billing;
/// # extern crate serde_json as shipping;
/// events::link!(billing, shipping);
/// # fn main() {}
/// ```
///
/// For each crate this is `use billing as _;` (which makes rustc link it) plus a record
/// that `build()` checks: a named crate that contributed no handler and no event type is a
/// [`Problem::LinkedNothing`](crate::Problem::LinkedNothing), naming the line. Forgetting
/// the line is loud too: an event that nothing in the bus takes gets a receipt that is not
/// [`is_ok`](crate::Receipt::is_ok), whose text names this macro, a warning in the log the
/// first time, and a place in [`Bus::unhandled_events`](crate::Bus::unhandled_events); a
/// query with no responder fails `build()` with the same advice.
///
/// Each name is the crate's name as Rust code spells it (`my_billing` for a package named
/// `my-billing`).
#[macro_export]
macro_rules! link {
    ($($krate:ident),+ $(,)?) => {
        $(
            const _: () = {
                // Not `::$krate`: a path of the user's token alone puts an unknown crate's
                // error on that token.
                #[allow(unused_imports)]
                use $krate as _;
                $crate::__private::inventory::submit! {
                    $crate::__private::LinkEntry {
                        krate: ::core::stringify!($krate),
                        file: ::core::file!(),
                        line: ::core::line!(),
                    }
                }
            };
        )+
    };
    ($($other:tt)*) => {
        ::core::compile_error!(
            "`events::link!` takes crate names as Rust code spells them, separated by commas: \
             `events::link!(my_billing, shipping);` (a package `my-billing` is the crate \
             `my_billing`)"
        );
    };
}

/// Submitted by [`link!`]. Not public API.
#[doc(hidden)]
#[derive(Debug)]
pub struct LinkEntry {
    /// The crate's name, as an identifier.
    pub krate: &'static str,
    /// Where `link!` was written.
    pub file: &'static str,
    /// Where `link!` was written.
    pub line: u32,
}

inventory::collect!(LinkEntry);

/// The `link!` lines in the binary, by crate name.
pub(crate) fn entries() -> Vec<&'static LinkEntry> {
    let mut links: Vec<&'static LinkEntry> = inventory::iter::<LinkEntry>.into_iter().collect();
    links.sort_by_key(|l| (l.krate, l.file, l.line));
    links
}

/// The crate a Rust path (`billing::cards::Charge`) is in.
pub(crate) fn crate_of(path: &str) -> &str {
    path.split("::").next().unwrap_or(path)
}
