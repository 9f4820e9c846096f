//! `#[derive(Event)]`: parse the attributes (`attr`), derive the default name (`name`), check
//! the item, then expand (`expand`).

mod attr;
mod expand;
mod name;

use proc_macro2::TokenStream;

use crate::ctxt::Ctxt;

pub(crate) fn derive(input: syn::DeriveInput) -> TokenStream {
    let mut cx = Ctxt::default();
    let model = attr::Model::parse(&mut cx, &input);
    check_item(&mut cx, &input);
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
    for field in fields {
        for a in field.attrs.iter().filter(|a| a.path().is_ident("event")) {
            cx.error(
                a,
                "`#[event]` on a field takes no options in this version of `events`",
            );
        }
    }
    if let syn::Data::Enum(e) = &input.data {
        for v in &e.variants {
            for a in v.attrs.iter().filter(|a| a.path().is_ident("event")) {
                cx.error(a, "`#[event]` goes on the type, not on a variant");
            }
        }
    }
}
