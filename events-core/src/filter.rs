//! [`Filter`]: which events a handler or subscription receives, as a value that composes.

use std::borrow::Cow;
use std::fmt;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use crate::envelope::Meta;
use crate::event::{AnyEvent, Event};
use crate::handler::HandlerEvent;
use crate::pattern::InvalidPattern;

/// A predicate over an event and its envelope, built from parts and combined with
/// [`all`](Filter::all), [`any`](Filter::any), `&`, `|` and `!`.
///
/// Give one to a dynamic subscription with [`SubscribeOptions::filter`](crate::SubscribeOptions::filter),
/// or to a link-time handler with `#[handler(filter = ..)]`, where it may also be a plain
/// `fn(&E, &Meta) -> bool`. A handler whose filter says no does not run; its receipt shows
/// [`Outcome::Filtered`](crate::Outcome::Filtered).
///
/// ```
/// use events::Filter;
///
/// let for_billing = (Filter::target("billing") | Filter::untargeted())
///     & Filter::priority(5..)
///     & !Filter::source("load-test");
/// assert_eq!(
///     for_billing.to_string(),
///     r#"all(any(target == "billing", untargeted), priority in 5.., not(source == "load-test"))"#
/// );
/// ```
///
/// Cloning is cheap (one reference count); filters are evaluated in the order written and
/// stop early, so put the cheap, selective parts first.
#[derive(Clone)]
pub struct Filter(Arc<Node>);

type Predicate = dyn Fn(&AnyEvent, &Meta) -> bool + Send + Sync;

enum Node {
    Source(Cow<'static, str>),
    Target(Cow<'static, str>),
    Untargeted,
    Principal(Cow<'static, str>),
    Priority(Bound<i32>, Bound<i32>),
    Name(String),
    Metadata(String, crate::MetaValue),
    Custom(Arc<Predicate>, Cow<'static, str>),
    All(Vec<Filter>),
    Any(Vec<Filter>),
    Not(Filter),
}

impl Filter {
    fn new(node: Node) -> Filter {
        Filter(Arc::new(node))
    }

    /// Events whose [`source`](Meta::source) is `source`.
    pub fn source(source: impl Into<Cow<'static, str>>) -> Filter {
        Filter::new(Node::Source(source.into()))
    }

    /// Events published with [`PublishOptions::target`](crate::PublishOptions::target) `target`.
    pub fn target(target: impl Into<Cow<'static, str>>) -> Filter {
        Filter::new(Node::Target(target.into()))
    }

    /// Events that the authenticated principal `principal` put on the bus from outside
    /// ([`Meta::principal`]). Unlike [`Filter::source`], it cannot be spoofed by the sender:
    /// in-process and anonymous events have no principal and never pass.
    pub fn principal(principal: impl Into<Cow<'static, str>>) -> Filter {
        Filter::new(Node::Principal(principal.into()))
    }

    /// Events published without a target: meant for everyone.
    pub fn untargeted() -> Filter {
        Filter::new(Node::Untargeted)
    }

    /// Events whose [`priority`](Meta::priority) is in `range` (`5..`, `..=0`, `1..10`).
    pub fn priority(range: impl RangeBounds<i32>) -> Filter {
        Filter::new(Node::Priority(
            range.start_bound().cloned(),
            range.end_bound().cloned(),
        ))
    }

    /// Events whose name matches `pattern` (`order.*`, `order.>`; see
    /// [`Bus::subscribe_pattern`](crate::Bus::subscribe_pattern)).
    ///
    /// # Errors
    /// [`InvalidPattern`] when `pattern` is not one.
    pub fn name(pattern: &str) -> Result<Filter, InvalidPattern> {
        crate::pattern::check(pattern)?;
        Ok(Filter::new(Node::Name(pattern.to_owned())))
    }

    /// Events whose metadata has `key` set to `value`.
    pub fn metadata(key: impl Into<String>, value: impl Into<crate::MetaValue>) -> Filter {
        Filter::new(Node::Metadata(key.into(), value.into()))
    }

    /// Events for which `predicate` says yes. It sees every event as [`AnyEvent`]; its JSON
    /// is made only if the predicate asks for it.
    pub fn custom(predicate: impl Fn(&AnyEvent, &Meta) -> bool + Send + Sync + 'static) -> Filter {
        Filter::new(Node::Custom(
            Arc::new(predicate),
            Cow::Borrowed("custom(..)"),
        ))
    }

    /// Events of type `E` for which `predicate` says yes; events of other types do not pass.
    pub fn event<E: Event>(
        predicate: impl Fn(&E, &Meta) -> bool + Send + Sync + 'static,
    ) -> Filter {
        Filter::typed::<E, _>(predicate, format!("event({}, ..)", E::NAME).into())
    }

    fn typed<E, F>(predicate: F, label: Cow<'static, str>) -> Filter
    where
        E: HandlerEvent + ?Sized,
        F: Fn(&E, &Meta) -> bool + Send + Sync + 'static,
    {
        Filter::new(Node::Custom(
            Arc::new(move |ev: &AnyEvent, meta: &Meta| {
                E::from_payload(ev).is_some_and(|e| predicate(e, meta))
            }),
            label,
        ))
    }

    /// Events every filter passes; with none, every event.
    pub fn all(filters: impl IntoIterator<Item = Filter>) -> Filter {
        Filter::new(Node::All(filters.into_iter().collect()))
    }

    /// Events at least one filter passes; with none, no event.
    pub fn any(filters: impl IntoIterator<Item = Filter>) -> Filter {
        Filter::new(Node::Any(filters.into_iter().collect()))
    }

    /// Events both pass; the same as `self & other`.
    pub fn and(self, other: Filter) -> Filter {
        match Arc::try_unwrap(self.0) {
            Ok(Node::All(mut parts)) => {
                parts.push(other);
                Filter::all(parts)
            }
            Ok(node) => Filter::all([Filter::new(node), other]),
            Err(shared) => Filter::all([Filter(shared), other]),
        }
    }

    /// Events either passes; the same as `self | other`.
    pub fn or(self, other: Filter) -> Filter {
        match Arc::try_unwrap(self.0) {
            Ok(Node::Any(mut parts)) => {
                parts.push(other);
                Filter::any(parts)
            }
            Ok(node) => Filter::any([Filter::new(node), other]),
            Err(shared) => Filter::any([Filter(shared), other]),
        }
    }

    /// Whether `event`, with envelope `meta`, passes.
    pub fn matches(&self, event: &AnyEvent, meta: &Meta) -> bool {
        match &*self.0 {
            Node::Source(s) => meta.source() == s,
            Node::Target(t) => meta.target() == Some(t),
            Node::Untargeted => meta.target().is_none(),
            Node::Principal(p) => meta.principal() == Some(p),
            Node::Priority(lo, hi) => (*lo, *hi).contains(&meta.priority()),
            Node::Name(p) => crate::pattern::matches(p, meta.name()),
            Node::Metadata(k, v) => meta.metadata().get(k) == Some(v),
            Node::Custom(f, _) => f(event, meta),
            Node::All(parts) => parts.iter().all(|f| f.matches(event, meta)),
            Node::Any(parts) => parts.iter().any(|f| f.matches(event, meta)),
            Node::Not(f) => !f.matches(event, meta),
        }
    }
}

impl std::ops::Not for Filter {
    type Output = Filter;
    /// Events `self` does not pass.
    fn not(self) -> Filter {
        Filter::new(Node::Not(self))
    }
}

impl std::ops::BitAnd for Filter {
    type Output = Filter;
    fn bitand(self, other: Filter) -> Filter {
        self.and(other)
    }
}

impl std::ops::BitOr for Filter {
    type Output = Filter;
    fn bitor(self, other: Filter) -> Filter {
        self.or(other)
    }
}

/// Written as the filter reads: `all(source == "api", not(priority in ..0))`.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, name: &str, parts: &[Filter]| {
            write!(f, "{name}(")?;
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{p}")?;
            }
            f.write_str(")")
        };
        match &*self.0 {
            Node::Source(s) => write!(f, "source == {s:?}"),
            Node::Target(t) => write!(f, "target == {t:?}"),
            Node::Untargeted => f.write_str("untargeted"),
            Node::Principal(p) => write!(f, "principal == {p:?}"),
            Node::Priority(lo, hi) => {
                f.write_str("priority in ")?;
                match lo {
                    Bound::Included(n) => write!(f, "{n}")?,
                    Bound::Excluded(n) => write!(f, "{}", i64::from(*n) + 1)?,
                    Bound::Unbounded => {}
                }
                match hi {
                    Bound::Included(n) => write!(f, "..={n}"),
                    Bound::Excluded(n) => write!(f, "..{n}"),
                    Bound::Unbounded => f.write_str(".."),
                }
            }
            Node::Name(p) => write!(f, "name ~ {p:?}"),
            Node::Metadata(k, v) => match v {
                crate::MetaValue::Text(text) => write!(f, "metadata[{k:?}] == {text:?}"),
                other => write!(f, "metadata[{k:?}] == {other}"),
            },
            Node::Custom(_, label) => f.write_str(label),
            Node::All(parts) => list(f, "all", parts),
            Node::Any(parts) => list(f, "any", parts),
            Node::Not(inner) => write!(f, "not({inner})"),
        }
    }
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Filter({self})")
    }
}

/// What `#[handler(filter = ..)]` accepts for a handler of `E`: a [`Filter`], or a function
/// or closure `Fn(&E, &Meta) -> bool`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a filter for a handler of `{E}`",
    label = "not a filter for this handler",
    note = "a handler filter is an `events::Filter`, or a `fn(&{E}, &events::Meta) -> bool`"
)]
pub trait IntoFilter<E: ?Sized> {
    /// The filter.
    fn into_filter(self) -> Filter;
}

impl<E: ?Sized> IntoFilter<E> for Filter {
    fn into_filter(self) -> Filter {
        self
    }
}

impl<E, F> IntoFilter<E> for F
where
    E: HandlerEvent + ?Sized,
    F: Fn(&E, &Meta) -> bool + Send + Sync + 'static,
{
    fn into_filter(self) -> Filter {
        Filter::typed::<E, F>(self, format!("fn {}", std::any::type_name::<F>()).into())
    }
}
