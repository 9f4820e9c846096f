//! The generated code: an erased entry point the bus calls, and a static `HandlerInfo`
//! submitted to the link-time registry. Type checks are spanned on the user's tokens.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::args::Options;
use super::sig::Signature;

pub(crate) fn expand(func: &syn::ItemFn, opts: &Options, sig: &Signature) -> TokenStream {
    let krate = &opts.krate;
    let ident = &func.sig.ident;
    let ev = &sig.event;
    let ev_span = ev.span();
    // Every mention of the event type carries its span, so "not an event" lands on it once.
    let ev_check = quote_spanned!(ev_span=> __events_p::assert_handler_event::<#ev>());
    // Local variables are made here, with call-site spans, and interpolated into the spanned
    // snippets: an identifier spelled inside `quote_spanned!` would take the user's span and,
    // when the handler comes out of a `macro_rules!`, that macro's hygiene.
    let inv = quote!(__inv);
    let event_ref = quote_spanned!(ev_span=> <#ev as __events_p::HandlerEvent>::extract(#inv)?);

    let args: Vec<syn::Ident> = (0..sig.extractors.len())
        .map(|i| format_ident!("__events_arg{}", i + 1))
        .collect();
    let extract: Vec<TokenStream> = sig
        .extractors
        .iter()
        .zip(&args)
        .enumerate()
        .map(|(i, (ty, arg))| {
            let index = i + 1;
            quote_spanned! {ty.span()=>
                let #arg = <#ty as __events_p::FromInvocation<'_>>::from_invocation(#inv, #index)?;
            }
        })
        .collect();
    // `&T` parameters: anything but `&Context` is refused with the hint that state is
    // `State<T>`.
    let context_checks: Vec<TokenStream> = sig
        .extractors
        .iter()
        .filter_map(|ty| match ty {
            syn::Type::Reference(r) => {
                let inner = &r.elem;
                Some(quote_spanned! {inner.span()=>
                    __events_p::assert_context_ref::<#inner>();
                })
            }
            _ => None,
        })
        .collect();
    let requirements: Vec<TokenStream> = sig
        .extractors
        .iter()
        .map(|ty| {
            let requirement = quote_spanned! {ty.span()=>
                <#ty as __events_p::FromInvocation<'_>>::requirement()
            };
            // `State<T>`'s `T` as the user wrote it, for `build()`'s messages (std's
            // `type_name` says `std::sync::poison::mutex::Mutex<..>` for `Mutex<..>`).
            match state_as_written(ty) {
                Some(written) => quote!(|| __events_p::as_written(#requirement, #written)),
                None => quote!(|| #requirement),
            }
        })
        .collect();

    // Qualified with the declared return type, so a wrong one is reported on that type.
    let (ret_span, ret_ty) = match &func.sig.output {
        syn::ReturnType::Default => (ident.span(), quote!(())),
        syn::ReturnType::Type(_, ty) => (ty.span(), quote!(#ty)),
    };
    let into_result = |call: TokenStream| {
        quote_spanned! {ret_span=>
            <#ret_ty as __events_p::IntoHandlerResult>::into_handler_result(#call)
        }
    };

    let responds = returns_value(&func.sig.output);
    // A responder writes its answer into the request's slot; `respond` also checks, on the
    // return type, that the event is a query and the type is its answer.
    let respond = |call: TokenStream| {
        quote_spanned! {ret_span=>
            __events_p::respond::<#ev, #ret_ty>(#call, __out)
        }
    };
    // The future is spanned on the handler's name: a non-`Send` one is reported there.
    // Only `async move { }` takes that span: the body's identifiers keep call-site spans
    // (see above).
    let future = |result: &TokenStream| {
        let body = quote! {
            let __ev = #event_ref;
            #(#extract)*
            #result
        };
        quote_spanned!(ident.span()=> async move { #body })
    };
    let (call_fn, call_variant) = if responds && sig.is_async {
        let result = respond(quote!(#ident(__ev, #(#args),*).await));
        let future = future(&result);
        let boxed = quote_spanned!(ident.span()=> __events_p::box_handler_future(#future));
        (
            quote! {
                fn __events_call<'a>(
                    __inv: &'a __events_p::Invocation<'a>,
                    __out: &'a mut (dyn ::core::any::Any + ::core::marker::Send),
                ) -> __events_p::BoxFuture<'a> {
                    #boxed
                }
            },
            quote!(RespondAsync),
        )
    } else if responds {
        let result = respond(quote!(#ident(__ev, #(#args),*)));
        (
            quote! {
                fn __events_call(
                    __inv: &__events_p::Invocation<'_>,
                    __out: &mut (dyn ::core::any::Any + ::core::marker::Send),
                ) -> __events_p::HandlerResult {
                    let __ev = #event_ref;
                    #(#extract)*
                    #result
                }
            },
            quote!(Respond),
        )
    } else if sig.is_async {
        let result = into_result(quote!(#ident(__ev, #(#args),*).await));
        let future = future(&result);
        let boxed = quote_spanned!(ident.span()=> __events_p::box_handler_future(#future));
        (
            quote! {
                fn __events_call<'a>(
                    __inv: &'a __events_p::Invocation<'a>,
                ) -> __events_p::BoxFuture<'a> {
                    #boxed
                }
            },
            quote!(Async),
        )
    } else {
        let result = into_result(quote!(#ident(__ev, #(#args),*)));
        (
            quote! {
                fn __events_call(__inv: &__events_p::Invocation<'_>) -> __events_p::HandlerResult {
                    let __ev = #event_ref;
                    #(#extract)*
                    #result
                }
            },
            quote!(Sync),
        )
    };

    let (filter_fn, filter) = match &opts.filter {
        Some(expr) => {
            // Spanned on the user's expression: "not a filter for a handler of `E`" lands there.
            let make = quote_spanned! {expr.span()=>
                __events_p::into_filter::<#ev, _>(#expr)
            };
            (
                quote! {
                    fn __events_filter() -> #krate::Filter {
                        #make
                    }
                },
                quote!(::core::option::Option::Some(__events_filter)),
            )
        }
        None => (TokenStream::new(), quote!(::core::option::Option::None)),
    };

    let function = quote!(::core::concat!(
        ::core::module_path!(),
        "::",
        ::core::stringify!(#ident)
    ));
    let name = match &opts.name {
        Some(n) => quote!(#n),
        None => function.clone(),
    };
    let priority = opts.priority;
    let is_async = sig.is_async;
    let (pattern, pattern_check) = match &opts.pattern {
        Some((lit, path)) => (
            quote!(::core::option::Option::Some(#lit)),
            quote_spanned!(path.span()=> const _: () = __events_p::assert_pattern_allowed::<#ev>();),
        ),
        None => (quote!(::core::option::Option::None), TokenStream::new()),
    };
    let concurrency = match &opts.concurrency {
        Some((n, _)) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    let retry = match &opts.retry {
        Some(r) => {
            let (max, base, cap, jitter) = (r.max, r.base_ms, r.max_delay_ms, r.jitter);
            let ctor = if r.exponential {
                quote!(exponential)
            } else {
                quote!(fixed)
            };
            quote!(::core::option::Option::Some(
                #krate::RetryPolicy::#ctor(#max, ::core::time::Duration::from_millis(#base))
                    .max_delay(::core::time::Duration::from_millis(#cap))
                    .jitter(#jitter)
            ))
        }
        None => quote!(::core::option::Option::None),
    };
    let durable = opts.durable.is_some();
    let durable_check = match &opts.durable {
        Some(path) => {
            quote_spanned!(path.span()=> const _: () = __events_p::assert_durable_allowed::<#ev>();)
        }
        None => TokenStream::new(),
    };
    let replay = opts.replay;
    let inbox = opts.inbox.is_some();
    let timeout_ms = match &opts.timeout {
        Some((ms, _)) => quote!(::core::option::Option::Some(#ms)),
        None => quote!(::core::option::Option::None),
    };

    quote! {
        #func

        #[doc(hidden)]
        #[allow(non_snake_case, unreachable_pub, clippy::needless_lifetimes)]
        const _: () = {
            use #krate::__private as __events_p;

            #call_fn
            #filter_fn
            #pattern_check
            #durable_check

            static __EVENTS_HANDLER: __events_p::HandlerInfo = __events_p::HandlerInfo::__new(
                __events_p::HandlerSpec {
                    name: #name,
                    event: { #ev_check; #(#context_checks)* <#ev as __events_p::HandlerEvent>::EVENT },
                    pattern: #pattern,
                    priority: #priority,
                    call: __events_p::Call::#call_variant(__events_call),
                    filter: #filter,
                    params: &[#(#requirements),*],
                    is_async: #is_async,
                    module: ::core::module_path!(),
                    function: #function,
                    concurrency: #concurrency,
                    timeout_ms: #timeout_ms,
                    retry: #retry,
                    durable: #durable,
                    inbox: #inbox,
                    replay: #replay,
                    file: ::core::file!(),
                    line: ::core::line!(),
                },
            );

            __events_p::inventory::submit! {
                __events_p::HandlerEntry(&__EVENTS_HANDLER)
            }
        };
    }
}

/// Whether the handler returns a value, so it answers a query: anything but `()` and
/// `Result<(), E>` (including `io::Result<()>`-style aliases).
pub(crate) fn returns_value(output: &syn::ReturnType) -> bool {
    let syn::ReturnType::Type(_, ty) = output else {
        return false;
    };
    let mut ty = &**ty;
    while let syn::Type::Paren(syn::TypeParen { elem: p, .. })
    | syn::Type::Group(syn::TypeGroup { elem: p, .. }) = ty
    {
        ty = p;
    }
    match ty {
        syn::Type::Tuple(t) => !t.elems.is_empty(),
        syn::Type::Path(p) => {
            let Some(last) = p.path.segments.last() else {
                return true;
            };
            let first_arg = match &last.arguments {
                syn::PathArguments::AngleBracketed(a) => a.args.first(),
                _ => None,
            };
            let unit_ok = matches!(
                first_arg,
                Some(syn::GenericArgument::Type(syn::Type::Tuple(t))) if t.elems.is_empty()
            );
            !(last.ident == "Result" && unit_ok)
        }
        _ => true,
    }
}

/// The `T` of a `State<T>` parameter type as written (`Mutex<u64>`), if it is one.
fn state_as_written(ty: &syn::Type) -> Option<String> {
    let syn::Type::Path(path) = ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    if last.ident != "State" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        syn::GenericArgument::Type(inner) => Some(written(inner)),
        _ => None,
    }
}

/// Tokens as a person writes them: `Mutex < u64 >` becomes `Mutex<u64>`, `(A , B)` becomes
/// `(A, B)`; a space stays only between two words (`dyn Send`, `&'a mut T`).
fn written(ty: &syn::Type) -> String {
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '\'';
    let mut out = String::new();
    for part in quote!(#ty).to_string().split_whitespace() {
        let joins_words = out.ends_with(word) && part.starts_with(word);
        if joins_words || out.ends_with(',') {
            out.push(' ');
        }
        out.push_str(part);
    }
    out
}
