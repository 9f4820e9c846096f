//! Parses `#[handler(..)]` options.

use syn::parse::Parser;

use crate::ctxt::Ctxt;
use crate::lit;

const KEYS: &str = "`name`, `priority`, `filter`, `pattern`, `concurrency`, `timeout`, `retry(..)`, `durable`, \
     `inbox`, `replay`, `crate`";

pub(crate) struct Options {
    pub(crate) name: Option<syn::LitStr>,
    pub(crate) priority: i32,
    /// A `Filter` expression or a `fn(&E, &Meta) -> bool`.
    pub(crate) filter: Option<syn::Expr>,
    /// `(pattern, the option's path for errors)`.
    pub(crate) pattern: Option<(syn::LitStr, syn::Path)>,
    /// `(limit, the option's path for errors)`.
    pub(crate) concurrency: Option<(u32, syn::Path)>,
    /// `(milliseconds, the option's path for errors)`.
    pub(crate) timeout: Option<(u64, syn::Path)>,
    /// `retry(max = .., backoff = .., base = .., max_delay = .., jitter = ..)`.
    pub(crate) retry: Option<Retry>,
    /// `durable`: the path, for errors.
    pub(crate) durable: Option<syn::Path>,
    /// `inbox`: the path, for errors.
    pub(crate) inbox: Option<syn::Path>,
    /// `replay = false`.
    pub(crate) replay: bool,
    pub(crate) krate: syn::Path,
}

impl Options {
    pub(crate) fn parse(cx: &mut Ctxt, args: proc_macro2::TokenStream) -> Options {
        let mut opts = Options {
            name: None,
            priority: 0,
            filter: None,
            pattern: None,
            concurrency: None,
            timeout: None,
            retry: None,
            durable: None,
            inbox: None,
            replay: true,
            krate: syn::parse_quote!(::events),
        };
        let mut seen: Vec<String> = Vec::new();
        let parser = syn::meta::parser(|meta| {
            let Some(key) = lit::first_time(cx, &meta, &mut seen, "`#[handler]` option") else {
                return Ok(());
            };
            match key.as_str() {
                "name" => {
                    let s = lit::string(&meta, "name")?;
                    if s.value().trim().is_empty() {
                        cx.error(&s, "a handler name cannot be empty");
                    }
                    opts.name = Some(s);
                }
                "priority" => opts.priority = lit::int(&meta, "priority", "10")?,
                "filter" => opts.filter = Some(lit::expr(&meta)?),
                "pattern" => {
                    let s = lit::string(&meta, "pattern")?;
                    if let Some(why) = invalid_pattern(&s.value()) {
                        cx.error(&s, why);
                    }
                    opts.pattern = Some((s, meta.path.clone()));
                }
                "concurrency" => {
                    let n: u32 = lit::int(&meta, "concurrency", "4")?;
                    if n == 0 {
                        cx.error(
                            &meta.path,
                            "`concurrency = 0` would never run the handler; use 1 or more",
                        );
                    }
                    opts.concurrency = Some((n, meta.path.clone()));
                }
                "timeout" => {
                    let s = lit::string(&meta, "timeout")?;
                    match parse_duration(&s.value()) {
                        Some(ms) if ms > 0 => opts.timeout = Some((ms, meta.path.clone())),
                        _ => cx.error(
                            &s,
                            format!(
                                "`timeout = \"{}\"` is not a duration; write a whole number with a \
                                 unit: `\"250ms\"`, `\"2s\"`, `\"1m\"`",
                                s.value()
                            ),
                        ),
                    }
                }
                "crate" => opts.krate = lit::path(&meta, "crate")?,
                "retry" => opts.retry = Some(Retry::parse(cx, &meta)?),
                "durable" => {
                    if !meta.input.is_empty() && !meta.input.peek(syn::Token![,]) {
                        return Err(meta.error("`durable` is a flag: write `#[handler(durable)]`"));
                    }
                    opts.durable = Some(meta.path.clone());
                }
                "inbox" => {
                    if !meta.input.is_empty() && !meta.input.peek(syn::Token![,]) {
                        return Err(meta.error("`inbox` is a flag: write `#[handler(inbox)]`"));
                    }
                    opts.inbox = Some(meta.path.clone());
                }
                "replay" => {
                    let v: syn::LitBool = meta
                        .value()?
                        .parse()
                        .map_err(|e| syn::Error::new(e.span(), "write `replay = false`"))?;
                    opts.replay = v.value;
                }
                _ => {
                    cx.error(
                        &meta.path,
                        format!("unknown `#[handler]` option `{key}`; expected one of {KEYS}"),
                    );
                    if meta.input.peek(syn::Token![=]) {
                        lit::skip_value(&meta);
                    } else if meta.input.peek(syn::token::Paren) {
                        let _ = meta.parse_nested_meta(|m| {
                            let _ = m.value().and_then(|v| v.parse::<syn::Expr>());
                            Ok(())
                        });
                    }
                }
            }
            Ok(())
        });
        if let Err(e) = parser.parse2(args) {
            cx.push(e);
        }
        opts
    }
}

/// `#[handler(retry(..))]`.
pub(crate) struct Retry {
    pub(crate) max: u32,
    pub(crate) exponential: bool,
    pub(crate) base_ms: u64,
    pub(crate) max_delay_ms: u64,
    pub(crate) jitter: bool,
}

impl Retry {
    fn parse(cx: &mut Ctxt, meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<Retry> {
        let mut r = Retry {
            max: 3,
            exponential: true,
            base_ms: 100,
            max_delay_ms: 30_000,
            jitter: true,
        };
        if !meta.input.peek(syn::token::Paren) {
            return Err(meta.error(
                "write `retry(max = 5)`, optionally with `backoff = \"exponential\"` or \
                 `\"fixed\"`, `base = \"100ms\"`, `max_delay = \"30s\"`, `jitter = false`",
            ));
        }
        meta.parse_nested_meta(|m| {
            let key = lit::key(&m);
            let duration = |m: &syn::meta::ParseNestedMeta<'_>, cx: &mut Ctxt| -> syn::Result<Option<u64>> {
                let s = lit::string(m, &key)?;
                match parse_duration(&s.value()) {
                    Some(ms) => Ok(Some(ms)),
                    None => {
                        cx.error(
                            &s,
                            format!(
                                "`{key} = \"{}\"` is not a duration; write a whole number with a \
                                 unit: `\"250ms\"`, `\"2s\"`, `\"1m\"`",
                                s.value()
                            ),
                        );
                        Ok(None)
                    }
                }
            };
            match key.as_str() {
                "max" => {
                    r.max = lit::int(&m, "max", "5")?;
                    if r.max == 0 {
                        cx.error(&m.path, "`retry(max = 0)` never retries; remove `retry`");
                    }
                }
                "backoff" => {
                    let s = lit::string(&m, "backoff")?;
                    match s.value().as_str() {
                        "exponential" => r.exponential = true,
                        "fixed" => r.exponential = false,
                        other => cx.error(
                            &s,
                            format!("unknown backoff `{other}`; expected `\"exponential\"` or `\"fixed\"`"),
                        ),
                    }
                }
                "base" => r.base_ms = duration(&m, cx)?.unwrap_or(r.base_ms),
                "max_delay" => r.max_delay_ms = duration(&m, cx)?.unwrap_or(r.max_delay_ms),
                "jitter" => {
                    let v: syn::LitBool = m.value()?.parse()?;
                    r.jitter = v.value;
                }
                _ => {
                    cx.error(
                        &m.path,
                        format!(
                            "unknown `retry` option `{key}`; expected `max`, `backoff`, `base`, \
                             `max_delay`, `jitter`"
                        ),
                    );
                    if m.input.peek(syn::Token![=]) {
                        let _ = m.value().and_then(|v| v.parse::<syn::Expr>());
                    }
                }
            }
            Ok(())
        })?;
        Ok(r)
    }
}

/// `"250ms"`, `"2s"`, `"1m"`, `"1h"` in milliseconds.
pub(crate) fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let factor = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// Why `pattern` is not an event-name pattern (the rule of `events`' `pattern` module:
/// `.`-separated lower-case segments, `*` for one segment, a final `>` for the rest).
pub(crate) fn invalid_pattern(pattern: &str) -> Option<String> {
    let segments: Vec<&str> = pattern.split('.').collect();
    let bad = segments
        .iter()
        .enumerate()
        .find_map(|(i, seg)| match *seg {
            "" => Some("it has an empty segment".to_owned()),
            "*" => None,
            ">" if i + 1 == segments.len() => None,
            ">" => Some("`>` may only be the last segment".to_owned()),
            lit => lit
                .chars()
                .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-')))
                .map(|c| format!("segment `{lit}` contains `{c}`")),
        })?;
    Some(format!(
        "invalid event pattern `{pattern}`: {bad}; use lower-case segments, `*` for one segment \
         and a final `>` for the rest, e.g. `order.*`"
    ))
}

#[cfg(test)]
mod tests {
    use super::{invalid_pattern, parse_duration};

    #[test]
    fn patterns() {
        assert_eq!(invalid_pattern("order.*"), None);
        assert_eq!(invalid_pattern(">"), None);
        assert!(invalid_pattern("order.>.x").is_some());
        assert!(invalid_pattern("Order.*").is_some());
        assert!(invalid_pattern("").is_some());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(250));
        assert_eq!(parse_duration("2s"), Some(2_000));
        assert_eq!(parse_duration(" 1m "), Some(60_000));
        assert_eq!(parse_duration("1h"), Some(3_600_000));
        assert_eq!(parse_duration("2"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("1.5s"), None);
        assert_eq!(parse_duration("2 weeks"), None);
    }
}
