//! `#[handler]`: parse the options (`args`), check the signature (`sig`), then expand
//! (`expand`). On any error the user's function is re-emitted unchanged beside the errors.

mod args;
mod expand;
mod sig;

use proc_macro2::TokenStream;
use quote::ToTokens;

use crate::ctxt::Ctxt;

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let mut out = syn::Error::new_spanned(
                &item,
                "`#[handler]` goes on a free `fn` or `async fn`, e.g. \
                 `#[handler] fn on_order(ev: &OrderPlaced) { .. }`",
            )
            .into_compile_error();
            out.extend(item);
            return out;
        }
    };
    let mut cx = Ctxt::default();
    let options = args::Options::parse(&mut cx, args);
    let signature = sig::Signature::parse(&mut cx, &func);
    if func.sig.asyncness.is_none() {
        for (key, path) in [
            ("concurrency", options.concurrency.as_ref().map(|c| &c.1)),
            ("timeout", options.timeout.as_ref().map(|t| &t.1)),
        ] {
            if let Some(path) = path {
                cx.error(
                    path,
                    format!(
                        "`{key}` needs an `async fn` handler: a synchronous handler runs on the \
                         publisher's thread and cannot be limited or interrupted"
                    ),
                );
            }
        }
    }
    if let (Some(filter), true) = (&options.filter, expand::returns_value(&func.sig.output)) {
        cx.error(
            filter,
            "a query's responder cannot have a `filter`: every request must get an answer; \
             filter in a listener (a handler of the query that returns `()`) instead",
        );
    }
    // `#[handler(inbox)]` and an `InboxKey` parameter go together: the key is what the
    // handler records in its transaction, and the flag is what makes the bus look for it.
    if let Some(signature) = &signature {
        let key = signature.extractors.iter().find(|ty| is_inbox_key(ty));
        match (&options.inbox, key) {
            (Some(path), None) => cx.error(
                path,
                "an `inbox` handler takes an `events::outbox::InboxKey` parameter and records \
                 it in the same database transaction as its writes \
                 (`store.record_inbox(&tx, &key)`): add `key: InboxKey`",
            ),
            (None, Some(ty)) => cx.error(
                ty,
                "an `InboxKey` parameter is for `#[handler(inbox)]` handlers: add `inbox` to \
                 the handler's options, so that the bus skips deliveries the inbox has",
            ),
            _ => {}
        }
    }
    match (cx.check(), signature) {
        (Ok(()), Some(signature)) => expand::expand(&func, &options, &signature),
        (res, _) => {
            let mut out = func.into_token_stream();
            if let Err(e) = res {
                out.extend(e.into_compile_error());
            }
            out
        }
    }
}

/// Whether `ty` names `InboxKey` (by its last path segment, as written).
fn is_inbox_key(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::Path(p) => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "InboxKey"),
        _ => false,
    }
}
