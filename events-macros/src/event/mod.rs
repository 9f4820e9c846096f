//! `#[derive(Event)]`: parse the attributes (`attr`), derive the default name (`name`), check
//! the item, then expand (`expand`).

mod attr;
mod expand;
pub(crate) mod name;

use proc_macro2::TokenStream;

use crate::ctxt::Ctxt;

pub(crate) fn derive(input: syn::DeriveInput) -> TokenStream {
    let mut cx = Ctxt::default();
    let mut model = attr::Model::parse(&mut cx, &input);
    check_item(&mut cx, &input);
    model.redacted = redacted_fields(&mut cx, &input);
    match cx.check() {
        Ok(()) => expand::expand(&input, &model),
        Err(err) => {
            let mut out = err.into_compile_error();
            // A stub impl, so one mistake in the attribute does not cascade into
            // "`X` is not an event" errors everywhere the type is used.
            out.extend(expand::fallback(&input, &model));
            out
        }
    }
}

fn check_item(cx: &mut Ctxt, input: &syn::DeriveInput) {
    if let syn::Data::Union(u) = &input.data {
        cx.error(
            u.union_token,
            "`#[derive(Event)]` does not support unions; use a struct or an enum",
        );
    }
    if !input.generics.params.is_empty() {
        cx.error(
            &input.generics,
            "`#[derive(Event)]` does not support generic types: an event has one name, one \
             version and one schema; declare a concrete type (e.g. `struct OrderPlaced { .. }`) \
             per event",
        );
    }
    let fields: Vec<&syn::Field> = match &input.data {
        syn::Data::Struct(s) => s.fields.iter().collect(),
        syn::Data::Enum(e) => e.variants.iter().flat_map(|v| v.fields.iter()).collect(),
        syn::Data::Union(_) => Vec::new(),
    };
    if let syn::Data::Enum(e) = &input.data {
        for field in fields {
            for a in field.attrs.iter().filter(|a| a.path().is_ident("event")) {
                cx.error(
                    a,
                    "`#[event(redact)]` is supported on the named fields of a struct, not in enums",
                );
            }
        }
        for v in &e.variants {
            for a in v.attrs.iter().filter(|a| a.path().is_ident("event")) {
                cx.error(a, "`#[event]` goes on the type, not on a variant");
            }
        }
    }
}

/// `#[event(redact)]` fields of a struct with named fields: `(ident, JSON key)`.
fn redacted_fields(cx: &mut Ctxt, input: &syn::DeriveInput) -> Vec<(syn::Ident, String)> {
    let syn::Data::Struct(s) = &input.data else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for field in &s.fields {
        for a in field.attrs.iter().filter(|a| a.path().is_ident("event")) {
            let mut redact = false;
            let res = a.parse_nested_meta(|meta| {
                if meta.path.is_ident("redact") {
                    redact = true;
                    Ok(())
                } else {
                    Err(meta.error(
                        "unknown field option; the only one is `#[event(redact)]`, which keeps \
                         the field's value out of `Debug`, logs and dumps",
                    ))
                }
            });
            if let Err(e) = res {
                cx.push(e);
                continue;
            }
            let Some(ident) = &field.ident else {
                cx.error(a, "`#[event(redact)]` needs a named field");
                continue;
            };
            if redact {
                let key = serde_rename(&field.attrs)
                    .unwrap_or_else(|| ident.to_string().trim_start_matches("r#").to_owned());
                out.push((ident.clone(), key));
            }
        }
    }
    if !out.is_empty() && has_rename_all(&input.attrs) {
        cx.error(
            &input.ident,
            "`#[event(redact)]` does not support `#[serde(rename_all = ..)]` yet; rename the \
             redacted fields one by one with `#[serde(rename = \"..\")]`",
        );
    }
    out
}

/// `#[serde(rename = "..")]` on a field.
fn serde_rename(attrs: &[syn::Attribute]) -> Option<String> {
    let mut found = None;
    for a in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let _ = a.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename") {
                if let Ok(v) = meta.value() {
                    if let Ok(s) = v.parse::<syn::LitStr>() {
                        found = Some(s.value());
                    }
                }
            } else if meta.input.peek(syn::Token![=]) {
                crate::lit::skip_value(&meta);
            } else if meta.input.peek(syn::token::Paren) {
                let _ = meta.parse_nested_meta(|m| {
                    if m.input.peek(syn::Token![=]) {
                        let _ = m.value().and_then(|v| v.parse::<syn::Expr>());
                    }
                    Ok(())
                });
            }
            Ok(())
        });
    }
    found
}

fn has_rename_all(attrs: &[syn::Attribute]) -> bool {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("serde"))
        .any(|a| {
            quote::ToTokens::to_token_stream(a)
                .to_string()
                .contains("rename_all")
        })
}
