//! Parses `#[handler(..)]` options.

use syn::parse::Parser;

use crate::ctxt::Ctxt;
use crate::lit;

const KEYS: &str = "`name`, `priority`, `filter`, `crate`";

pub(crate) struct Options {
    pub(crate) name: Option<syn::LitStr>,
    pub(crate) priority: i32,
    pub(crate) filter: Option<syn::Path>,
    pub(crate) krate: syn::Path,
}

impl Options {
    pub(crate) fn parse(cx: &mut Ctxt, args: proc_macro2::TokenStream) -> Options {
        let mut opts = Options {
            name: None,
            priority: 0,
            filter: None,
            krate: syn::parse_quote!(::events),
        };
        let mut seen: Vec<String> = Vec::new();
        let parser = syn::meta::parser(|meta| {
            let key = lit::key(&meta);
            if seen.contains(&key) {
                cx.error(
                    &meta.path,
                    format!("duplicate `#[handler]` option `{key}`; give it once"),
                );
                let _ = meta.value().and_then(|v| v.parse::<syn::Expr>());
                return Ok(());
            }
            seen.push(key.clone());
            match key.as_str() {
                "name" => {
                    let s = lit::string(&meta, "name")?;
                    if s.value().trim().is_empty() {
                        cx.error(&s, "a handler name cannot be empty");
                    }
                    opts.name = Some(s);
                }
                "priority" => opts.priority = lit::int(&meta, "priority", "10")?,
                "filter" => opts.filter = Some(lit::path(&meta, "filter")?),
                "crate" => opts.krate = lit::path(&meta, "crate")?,
                _ => {
                    cx.error(
                        &meta.path,
                        format!("unknown `#[handler]` option `{key}`; expected one of {KEYS}"),
                    );
                    if meta.input.peek(syn::Token![=]) {
                        let _ = meta.value().and_then(|v| v.parse::<syn::Expr>());
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
