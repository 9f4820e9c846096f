//! `#[aggregate]` on an `impl` block: the aggregate's options, its `#[apply]` methods (one
//! per event type, `fn(&mut self, &E)`) and its `#[command]` methods (`fn(&self, ..)`
//! returning events the aggregate applies). Every mistake is an error on the user's token;
//! on any error the block is re-emitted (markers removed) beside the errors.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::ctxt::Ctxt;
use crate::event::name;
use crate::lit;

struct Options {
    name: Option<String>,
    id: syn::Type,
    snapshot_every: u64,
    krate: syn::Path,
}

struct ApplyFn {
    method: syn::Ident,
    event: syn::Type,
}

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut block: syn::ItemImpl = match syn::parse2(item.clone()) {
        Ok(b) => b,
        Err(_) => {
            let mut out = syn::Error::new_spanned(
                &item,
                "`#[aggregate]` goes on the `impl` block of the aggregate's state type, e.g. \
                 `#[aggregate] impl Account { #[apply] fn opened(&mut self, e: &Opened) { .. } }`",
            )
            .into_compile_error();
            out.extend(item);
            return out;
        }
    };
    let mut cx = Ctxt::default();
    let options = parse_options(&mut cx, args);
    if let Some((_, path, _)) = &block.trait_ {
        cx.error(
            path,
            "`#[aggregate]` goes on the type's own `impl` block, not on a trait impl",
        );
    }
    if !block.generics.params.is_empty() {
        cx.error(
            &block.generics,
            "an aggregate cannot be generic: its state has one schema and its streams one name",
        );
    }
    let ident = match &*block.self_ty {
        syn::Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| s.ident.clone()),
        _ => None,
    };
    let Some(ident) = ident else {
        cx.error(&block.self_ty, "`#[aggregate]` needs a named type");
        return finish(cx, block, TokenStream::new());
    };

    let mut applies: Vec<ApplyFn> = Vec::new();
    let mut commands: Vec<syn::Type> = Vec::new();
    for item in &mut block.items {
        let syn::ImplItem::Fn(f) = item else { continue };
        let apply = take_marker(&mut f.attrs, "apply");
        let command = take_marker(&mut f.attrs, "command");
        if let (Some(a), Some(_)) = (&apply, &command) {
            cx.error(
                a,
                "a method is either an `#[apply]` (it changes the state by one event) or a \
                 `#[command]` (it reads the state and decides events), not both",
            );
            continue;
        }
        if apply.is_some() {
            if let Some(event) = apply_event(&mut cx, &f.sig) {
                let key = type_key(&event);
                if let Some(first) = applies.iter().find(|a| type_key(&a.event) == key) {
                    cx.error(
                        &event,
                        format!(
                            "`{key}` already has an `#[apply]` (`{}`): an aggregate applies each \
                             event type in one place",
                            first.method
                        ),
                    );
                } else {
                    applies.push(ApplyFn {
                        method: f.sig.ident.clone(),
                        event,
                    });
                }
            }
        }
        if command.is_some() {
            if let Some(decided) = command_decision(&mut cx, &f.sig) {
                commands.push(decided);
            }
        }
    }
    if applies.is_empty() && cx.is_empty() {
        cx.error(
            &block.self_ty,
            "an aggregate is built from its events: give it at least one \
             `#[apply] fn ..(&mut self, event: &SomeEvent)`",
        );
    }
    let name = options
        .name
        .clone()
        .unwrap_or_else(|| name::default_name(&ident.to_string()));
    let generated = generate(&block.self_ty, &ident, &name, &options, &applies, &commands);
    finish(cx, block, generated)
}

/// The block, what was generated from its valid parts (so that only the real mistakes are
/// reported, not their consequences), and the errors.
fn finish(cx: Ctxt, block: syn::ItemImpl, generated: TokenStream) -> TokenStream {
    let mut out = block.into_token_stream();
    out.extend(generated);
    if let Err(e) = cx.check() {
        out.extend(e.into_compile_error());
    }
    out
}

fn parse_options(cx: &mut Ctxt, args: TokenStream) -> Options {
    let mut options = Options {
        name: None,
        id: syn::parse_quote!(::std::string::String),
        snapshot_every: 0,
        krate: syn::parse_quote!(::events),
    };
    let mut seen: Vec<String> = Vec::new();
    let parser = syn::meta::parser(|meta| {
        let Some(key) = lit::first_time(cx, &meta, &mut seen, "`#[aggregate]` key") else {
            return Ok(());
        };
        match key.as_str() {
            "name" => {
                let s = lit::string(&meta, "name")?;
                match name::invalid_name(&s.value()) {
                    Some(why) => cx.error(&s, why.replace("event name", "aggregate name")),
                    None => options.name = Some(s.value()),
                }
            }
            "id" => options.id = meta.value()?.parse::<syn::Type>()?,
            "snapshot_every" => options.snapshot_every = lit::int(&meta, "snapshot_every", "100")?,
            "crate" => options.krate = lit::path(&meta, "crate")?,
            _ => {
                cx.error(
                    &meta.path,
                    format!(
                        "unknown `#[aggregate]` key `{key}`; expected one of `name`, `id`, \
                         `snapshot_every`, `crate`"
                    ),
                );
                lit::skip_value(&meta);
            }
        }
        Ok(())
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, args) {
        cx.push(e);
    }
    options
}

/// Removes the `#[marker]` attributes; the first one's path, if any.
fn take_marker(attrs: &mut Vec<syn::Attribute>, marker: &str) -> Option<syn::Path> {
    let mut found = None;
    attrs.retain(|a| {
        if a.path().is_ident(marker) {
            found.get_or_insert_with(|| a.path().clone());
            false
        } else {
            true
        }
    });
    found
}

const APPLY_SHAPE: &str = "an `#[apply]` method takes the state mutably and one event by \
                           reference, and returns nothing: `fn name(&mut self, event: &EventType)`";

/// The event type of an `#[apply] fn(&mut self, event: &E)`, or an error on what is wrong.
fn apply_event(cx: &mut Ctxt, sig: &syn::Signature) -> Option<syn::Type> {
    let mut ok = true;
    if let Some(a) = &sig.asyncness {
        cx.error(a, format!("{APPLY_SHAPE}; it cannot be `async`: loading applies events one after another, with nothing to wait for"));
        ok = false;
    }
    if !sig.generics.params.is_empty() {
        cx.error(
            &sig.generics,
            format!("{APPLY_SHAPE}; it cannot be generic"),
        );
        ok = false;
    }
    if let syn::ReturnType::Type(_, ty) = &sig.output {
        cx.error(ty, format!("{APPLY_SHAPE}; applying an event cannot fail or return a value: decide in a `#[command]`"));
        ok = false;
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(syn::FnArg::Receiver(r))
            if r.reference.is_some() && r.mutability.is_some() && r.colon_token.is_none() => {}
        Some(other) => {
            cx.error(
                other,
                format!("{APPLY_SHAPE}; the first parameter must be `&mut self`"),
            );
            ok = false;
        }
        None => {
            cx.error(&sig.ident, format!("{APPLY_SHAPE}; this one takes nothing"));
            return None;
        }
    }
    let event = match inputs.next() {
        Some(syn::FnArg::Typed(t)) => match &*t.ty {
            syn::Type::Reference(r) if r.mutability.is_none() => Some((*r.elem).clone()),
            other => {
                cx.error(
                    other,
                    format!(
                        "{APPLY_SHAPE}; the event is taken by shared reference: `&{}`",
                        strip(other)
                    ),
                );
                None
            }
        },
        Some(other) => {
            cx.error(other, APPLY_SHAPE);
            None
        }
        None => {
            cx.error(
                &sig.inputs,
                format!("{APPLY_SHAPE}; this one takes no event"),
            );
            None
        }
    };
    if let Some(extra) = inputs.next() {
        cx.error(
            extra,
            format!("{APPLY_SHAPE}; it takes nothing but the event"),
        );
        ok = false;
    }
    event.filter(|_| ok)
}

/// What a `#[command]` decides: `T` of its `-> Result<T, E>` (or its whole return type).
fn command_decision(cx: &mut Ctxt, sig: &syn::Signature) -> Option<syn::Type> {
    const SHAPE: &str = "a `#[command]` reads the state and decides: `fn name(&self, ..) -> \
                         Result<Event, Error>` (or a tuple, `Vec` or `Option` of events)";
    match sig.inputs.first() {
        Some(syn::FnArg::Receiver(r))
            if r.reference.is_some() && r.mutability.is_none() && r.colon_token.is_none() => {}
        Some(syn::FnArg::Receiver(r)) => {
            cx.error(
                r,
                format!(
                    "{SHAPE}; it takes `&self`: the state changes only by the events it returns"
                ),
            );
            return None;
        }
        _ => {
            cx.error(&sig.ident, format!("{SHAPE}; it takes `&self` first"));
            return None;
        }
    }
    if let Some(a) = &sig.asyncness {
        cx.error(a, format!("{SHAPE}; it cannot be `async`: a command may run again after a conflict, so it decides from the state alone (fetch what it needs before)"));
        return None;
    }
    let syn::ReturnType::Type(_, ty) = &sig.output else {
        cx.error(&sig.ident, format!("{SHAPE}; this one returns nothing"));
        return None;
    };
    Some(result_ok(ty).unwrap_or_else(|| (**ty).clone()))
}

/// `T` of `Result<T, E>` (by the last path segment, as written).
fn result_ok(ty: &syn::Type) -> Option<syn::Type> {
    let syn::Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        syn::GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    }
}

/// A type as written, without spaces: how two `#[apply]`s are compared.
fn type_key(ty: &syn::Type) -> String {
    strip(ty)
}

fn strip(ty: &syn::Type) -> String {
    ty.to_token_stream().to_string().replace(' ', "")
}

fn generate(
    self_ty: &syn::Type,
    ident: &syn::Ident,
    name: &str,
    options: &Options,
    applies: &[ApplyFn],
    commands: &[syn::Type],
) -> TokenStream {
    let krate = &options.krate;
    let id = &options.id;
    let every = options.snapshot_every;
    let private = quote!(#krate::__private::aggregate);
    let apply_impls = applies.iter().map(|a| {
        let (method, event) = (&a.method, &a.event);
        // The whole trait path on the event's token: an error about it points there.
        let krate = respan(krate.to_token_stream(), event.span());
        quote_spanned! {event.span()=>
            impl #krate::Apply<#event> for #self_ty {
                #[inline]
                fn apply(&mut self, event: &#event) {
                    <#self_ty>::#method(self, event)
                }
            }
        }
    });
    let infos = applies.iter().map(|a| {
        let event = &a.event;
        quote_spanned!(event.span()=> <#event as #krate::Event>::info())
    });
    // An exact version first; then by name, upcast from an older version.
    let exact = applies.iter().map(|a| {
        let (method, event) = (&a.method, &a.event);
        quote_spanned! {event.span()=>
            if name == <#event as #krate::Event>::NAME && version == <#event as #krate::Event>::VERSION {
                let event: #event = #private::decode::<#event>(version, payload)?;
                <#self_ty>::#method(self, &event);
                return ::core::result::Result::Ok(());
            }
        }
    });
    let by_name = applies.iter().map(|a| {
        let (method, event) = (&a.method, &a.event);
        quote_spanned! {event.span()=>
            if name == <#event as #krate::Event>::NAME {
                let event: #event = #private::decode::<#event>(version, payload)?;
                <#self_ty>::#method(self, &event);
                return ::core::result::Result::Ok(());
            }
        }
    });
    let checks = commands.iter().map(|d| {
        quote_spanned! {d.span()=>
            const _: () = #private::assert_decision::<#self_ty, #d>();
        }
    });
    quote! {
        #(#apply_impls)*

        impl #krate::Aggregate for #self_ty {
            const NAME: &'static str = #name;
            const SNAPSHOT_EVERY: u64 = #every;
            type Id = #id;

            fn events() -> ::std::vec::Vec<&'static #krate::EventInfo> {
                ::std::vec![#(#infos),*]
            }

            fn shape() -> &'static str {
                static SHAPE: ::std::sync::OnceLock<::std::string::String> = ::std::sync::OnceLock::new();
                SHAPE.get_or_init(#private::shape::<#self_ty>)
            }

            fn apply_stored(
                &mut self,
                name: &str,
                version: u32,
                payload: &str,
            ) -> ::core::result::Result<(), ::std::string::String> {
                #(#exact)*
                #(#by_name)*
                ::core::result::Result::Err(#private::not_applied::<#self_ty>(name, version))
            }
        }

        #(#checks)*

        const _: () = {
            static __EVENTS_AGGREGATE: #private::AggregateInfo = #private::info::<#self_ty>(
                ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#ident)),
            );
            #krate::__private::inventory::submit! {
                #private::AggregateEntry(&__EVENTS_AGGREGATE)
            }
        };
    }
}

/// `tokens` with every span set to `span`.
fn respan(tokens: TokenStream, span: proc_macro2::Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut t| {
            if let proc_macro2::TokenTree::Group(g) = &t {
                let mut group = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                t = proc_macro2::TokenTree::Group(group);
            } else {
                t.set_span(span);
            }
            t
        })
        .collect()
}
