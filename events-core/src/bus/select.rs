//! Which `#[handler]`s a bus takes ([`BusBuilder::scope`](super::BusBuilder::scope),
//! [`BusBuilder::handler`](super::BusBuilder::handler)), and the problem a selector that
//! takes nothing is.

use std::borrow::Cow;

use super::in_module;
use crate::handler::HandlerInfo;
use crate::registry::Problem;

/// A [`Problem::NoMatch`] for each scope and each handler name that selects none of
/// `handlers` (every handler in the binary), with the closest existing one as a suggestion.
pub(super) fn unmatched(
    handlers: &[&'static HandlerInfo],
    scopes: &[Cow<'static, str>],
    named: &[Cow<'static, str>],
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for scope in scopes {
        if !handlers.iter().any(|h| in_module(h.module, scope)) {
            problems.push(Problem::NoMatch {
                kind: "scope",
                selector: crate::ingest::clip(scope),
                suggestion: closest(scope, handlers.iter().map(|h| h.module)),
            });
        }
    }
    for name in named {
        if !handlers
            .iter()
            .any(|h| h.name == name || h.function == name)
        {
            problems.push(Problem::NoMatch {
                kind: "handler",
                selector: crate::ingest::clip(name),
                suggestion: closest(name, handlers.iter().flat_map(|h| [h.name, h.function])),
            });
        }
    }
    problems
}

/// The candidate nearest `wanted` by edit distance, if it is near enough to be a typo (at
/// most a third of `wanted`'s length, and 4 edits).
fn closest(wanted: &str, candidates: impl Iterator<Item = &'static str>) -> Option<&'static str> {
    let limit = (wanted.chars().count() / 3).clamp(1, 4);
    candidates
        .filter(|c| *c != wanted)
        .map(|c| (crate::ingest::edit_distance(wanted, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}
