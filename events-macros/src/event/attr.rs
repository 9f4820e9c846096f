//! Parses `#[event(..)]` on the type into the model the expansion works from.

use proc_macro2::Span;

use super::name;
use crate::ctxt::Ctxt;
use crate::lit;

const KEYS: &str = "`name`, `version`, `kind`, `response`, `upcast_from`, `priority`, `crate`";
const KINDS: [(&str, &str); 5] = [
    ("notification", "Notification"),
    ("command", "Command"),
    ("query", "Query"),
    ("response", "Response"),
    ("error", "Error"),
];

pub(crate) struct Model {
    pub(crate) name: String,
    pub(crate) version: u32,
    /// The `EventKind` variant.
    pub(crate) kind: syn::Ident,
    pub(crate) priority: i32,
    /// `response = T`: the answer type of a query.
    pub(crate) response: Option<syn::Type>,
    /// `upcast_from = T`: the previous version's type.
    pub(crate) upcast_from: Option<syn::Type>,
    /// `#[event(redact)]` fields: `(ident, JSON key)`.
    pub(crate) redacted: Vec<(syn::Ident, String)>,
    /// The `#[event(subject)]` field.
    pub(crate) subject: Option<syn::Ident>,
    /// Whether a field's type mentions `Personal`, or a subject is named.
    pub(crate) personal: bool,
    pub(crate) krate: syn::Path,
    pub(crate) description: Option<String>,
}

impl Model {
    pub(crate) fn parse(cx: &mut Ctxt, input: &syn::DeriveInput) -> Model {
        let mut model = Model {
            name: name::default_name(&input.ident.to_string()),
            version: 1,
            kind: syn::Ident::new("Notification", Span::call_site()),
            priority: 0,
            response: None,
            upcast_from: None,
            redacted: Vec::new(),
            subject: None,
            personal: false,
            krate: syn::parse_quote!(::events),
            description: doc_string(&input.attrs),
        };
        let mut seen: Vec<String> = Vec::new();
        // `kind = ".."` as written, for the query/response consistency check.
        let mut kind: Option<syn::LitStr> = None;
        for attr in input.attrs.iter().filter(|a| a.path().is_ident("event")) {
            let res = attr.parse_nested_meta(|meta| {
                let Some(key) = lit::first_time(cx, &meta, &mut seen, "`#[event]` key") else {
                    return Ok(());
                };
                match key.as_str() {
                    "name" => {
                        let s = lit::string(&meta, "name")?;
                        match name::invalid_name(&s.value()) {
                            Some(why) => cx.error(&s, why),
                            None => model.name = s.value(),
                        }
                    }
                    "version" => {
                        let v: u32 = lit::int(&meta, "version", "2")?;
                        if v == 0 {
                            cx.error(
                                &meta.path,
                                "`version` starts at 1; `version = 0` is not a version",
                            );
                        }
                        model.version = v;
                    }
                    "kind" => {
                        let s = lit::string(&meta, "kind")?;
                        kind = Some(s.clone());
                        match KINDS.iter().find(|(k, _)| *k == s.value()) {
                            Some((_, variant)) => {
                                model.kind = syn::Ident::new(variant, s.span());
                            }
                            None => cx.error(
                                &s,
                                format!(
                                    "unknown event kind `{}`; expected one of `notification` \
                                     (the default), `command`, `query`, `response`, `error`",
                                    s.value()
                                ),
                            ),
                        }
                    }
                    "priority" => model.priority = lit::int(&meta, "priority", "10")?,
                    "response" => model.response = Some(meta.value()?.parse::<syn::Type>()?),
                    "upcast_from" => {
                        model.upcast_from = Some(meta.value()?.parse::<syn::Type>()?);
                    }
                    "crate" => model.krate = lit::path(&meta, "crate")?,
                    _ => {
                        cx.error(
                            &meta.path,
                            format!("unknown `#[event]` key `{key}`; expected one of {KEYS}"),
                        );
                        if meta.input.peek(syn::Token![=]) {
                            lit::skip_value(&meta);
                        }
                    }
                }
                Ok(())
            });
            if let Err(e) = res {
                cx.push(e);
            }
        }
        match (&kind, &model.response) {
            // `response = T` alone makes a query.
            (None, Some(ty)) => {
                model.kind = syn::Ident::new("Query", syn::spanned::Spanned::span(ty))
            }
            (Some(k), Some(ty)) if k.value() != "query" => cx.error(
                ty,
                format!(
                    "`response = ..` is for queries, and this event's kind is `{}`: use \
                     `kind = \"query\"` or remove `response`",
                    k.value()
                ),
            ),
            (Some(k), None) if k.value() == "query" => cx.error(
                k,
                "a query needs the type of its answer: add `response = YourAnswer` (a type \
                 with `Serialize`, `Deserialize` and `JsonSchema`)",
            ),
            _ => {}
        }
        model
    }
}

/// The `///` doc comment, lines joined, common indentation removed; `None` when absent.
pub(crate) fn doc_string(attrs: &[syn::Attribute]) -> Option<String> {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        .flat_map(|s| s.split('\n').map(str::to_owned).collect::<Vec<_>>())
        .collect();
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let text = lines
        .iter()
        .map(|l| l.get(indent..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n");
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}
