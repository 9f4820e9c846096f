//! Checks the handler's signature: what the macro can see from the syntax. What only the
//! type checker knows (is the event type an `Event`, is a parameter an extractor, is the
//! future `Send`) is checked by spanned assertions in the expansion.

use crate::ctxt::Ctxt;

pub(crate) struct Signature {
    /// `E` in the first parameter `ev: &E`.
    pub(crate) event: syn::Type,
    /// The types of the parameters after the event, in order.
    pub(crate) extractors: Vec<syn::Type>,
    pub(crate) is_async: bool,
}

impl Signature {
    /// `None` when the signature is too broken to expand; the reasons are in `cx`.
    pub(crate) fn parse(cx: &mut Ctxt, func: &syn::ItemFn) -> Option<Signature> {
        let sig = &func.sig;
        if !sig.generics.params.is_empty() {
            cx.error(
                &sig.generics,
                "a handler cannot be generic: it is registered once, for one event type; \
                 write one handler per event type",
            );
        }
        if let Some(wc) = &sig.generics.where_clause {
            cx.error(
                wc,
                "a handler cannot have a `where` clause: it cannot be generic",
            );
        }
        if let Some(u) = &sig.unsafety {
            cx.error(
                u,
                "a handler cannot be `unsafe fn`: the bus calls it with no `unsafe` block",
            );
        }
        if let Some(abi) = &sig.abi {
            cx.error(abi, "a handler cannot have an `extern` ABI; remove it");
        }
        if let Some(c) = &sig.constness {
            cx.error(c, "a handler cannot be `const fn`; remove `const`");
        }
        if let Some(v) = &sig.variadic {
            cx.error(v, "a handler cannot be variadic");
        }
        let mut inputs = sig.inputs.iter();
        let event = match inputs.next() {
            None => {
                cx.error(
                    &sig.ident,
                    format!(
                        "a handler takes the event as its first parameter, e.g. \
                         `fn {}(ev: &OrderPlaced)`",
                        sig.ident
                    ),
                );
                None
            }
            Some(syn::FnArg::Receiver(r)) => {
                cx.error(
                    r,
                    "a handler cannot take `self`: handlers are free functions; move it out of \
                     the `impl` block and take shared state as `State<T>`",
                );
                None
            }
            Some(syn::FnArg::Typed(pt)) => event_type(cx, &pt.ty),
        };
        let extractors = inputs
            .filter_map(|arg| match arg {
                syn::FnArg::Typed(pt) => Some((*pt.ty).clone()),
                syn::FnArg::Receiver(r) => {
                    cx.error(r, "a handler cannot take `self`");
                    None
                }
            })
            .collect();
        Some(Signature {
            event: event?,
            extractors,
            is_async: sig.asyncness.is_some(),
        })
    }
}

fn event_type(cx: &mut Ctxt, ty: &syn::Type) -> Option<syn::Type> {
    match ty {
        syn::Type::Reference(r) if r.mutability.is_some() => {
            cx.error(
                ty,
                "the event is shared by every handler: take it as `&E`, not `&mut E`",
            );
            None
        }
        syn::Type::Reference(r) => Some((*r.elem).clone()),
        other => {
            let shown = quote::ToTokens::to_token_stream(other).to_string();
            cx.error(
                other,
                format!(
                    "a handler takes the event by reference: write `&{shown}`; one event value \
                     is shared by every handler"
                ),
            );
            None
        }
    }
}
