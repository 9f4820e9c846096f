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
    let fields = field_options(&mut cx, &input);
    model.redacted = fields.redacted;
    model.subject = fields.subject;
    model.personal = fields.personal;
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

/// What the fields say: `#[event(redact)]`, `#[event(subject)]`, `Personal<..>` types.
#[derive(Default)]
struct Fields {
    redacted: Vec<(syn::Ident, String)>,
    subject: Option<syn::Ident>,
    personal: bool,
}

/// Whether `ty` mentions `Personal<..>` anywhere (`Option<Personal<String>>` too).
fn mentions_personal(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::Path(p) => p.path.segments.iter().any(|seg| {
            seg.ident == "Personal"
                || match &seg.arguments {
                    syn::PathArguments::AngleBracketed(args) => args.args.iter().any(
                        |a| matches!(a, syn::GenericArgument::Type(t) if mentions_personal(t)),
                    ),
                    _ => false,
                }
        }),
        syn::Type::Array(a) => mentions_personal(&a.elem),
        syn::Type::Slice(a) => mentions_personal(&a.elem),
        syn::Type::Tuple(t) => t.elems.iter().any(mentions_personal),
        syn::Type::Paren(p) => mentions_personal(&p.elem),
        syn::Type::Group(g) => mentions_personal(&g.elem),
        _ => false,
    }
}

/// The field options of a struct with named fields.
fn field_options(cx: &mut Ctxt, input: &syn::DeriveInput) -> Fields {
    let syn::Data::Struct(s) = &input.data else {
        return Fields::default();
    };
    let mut out = Vec::new();
    let mut fields = Fields::default();
    let mut first_personal: Option<&syn::Field> = None;
    for field in &s.fields {
        if mentions_personal(&field.ty) {
            first_personal.get_or_insert(field);
        }
        for a in field.attrs.iter().filter(|a| a.path().is_ident("event")) {
            let mut redact = false;
            let mut subject = false;
            let res = a.parse_nested_meta(|meta| {
                if meta.path.is_ident("redact") {
                    redact = true;
                    Ok(())
                } else if meta.path.is_ident("subject") {
                    subject = true;
                    Ok(())
                } else {
                    Err(meta.error(
                        "unknown field option; expected `#[event(redact)]`, which keeps the \
                         field's value out of `Debug`, logs and dumps, or `#[event(subject)]`, \
                         which names the person the event's `Personal` data is about",
                    ))
                }
            });
            if let Err(e) = res {
                cx.push(e);
                continue;
            }
            let Some(ident) = &field.ident else {
                cx.error(
                    a,
                    "`#[event(redact)]` and `#[event(subject)]` need a named field",
                );
                continue;
            };
            if subject {
                if mentions_personal(&field.ty) {
                    cx.error(
                        &field.ty,
                        "the data subject's id names its key and stays readable: it cannot be \
                         `Personal`; use a pseudonymous id (a customer number, a UUID)",
                    );
                    fields.subject.get_or_insert_with(|| ident.clone());
                } else if fields.subject.is_some() {
                    cx.error(
                        a,
                        "an event has one data subject: `#[event(subject)]` is given twice",
                    );
                } else {
                    fields.subject = Some(ident.clone());
                }
            }
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
    if let (Some(field), None) = (first_personal, &fields.subject) {
        cx.error(
            &field.ty,
            "this event holds `Personal` data but names no data subject: mark the field that \
             identifies the person (a customer id) with `#[event(subject)]`; its key encrypts \
             the data, and `Bus::forget` deletes it",
        );
    }
    fields.personal = first_personal.is_some() || fields.subject.is_some();
    fields.redacted = out;
    fields
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
