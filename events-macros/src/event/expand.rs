//! The generated code: `impl Event` and the catalog entry.

use proc_macro2::TokenStream;
use quote::quote;

use super::attr::Model;

pub(crate) fn expand(input: &syn::DeriveInput, m: &Model) -> TokenStream {
    let ident = &input.ident;
    let krate = &m.krate;
    let Model {
        name,
        version,
        kind,
        priority,
        ..
    } = m;
    let (response, query_impl) = match &m.response {
        Some(ty) => (
            quote! {
                ::core::option::Option::Some(__events_p::response_info(
                    ::core::stringify!(#ty),
                    {
                        fn __events_response_schema() -> &'static __events_p::Schema {
                            static __EVENTS_SCHEMA: __events_p::OnceLock<__events_p::Schema> =
                                __events_p::OnceLock::new();
                            __EVENTS_SCHEMA.get_or_init(__events_p::schema_for::<#ty>)
                        }
                        __events_response_schema
                    },
                ))
            },
            quote! {
                #[automatically_derived]
                impl #krate::Query for #ident {
                    type Response = #ty;
                }
            },
        ),
        None => (quote!(::core::option::Option::None), TokenStream::new()),
    };
    // Spanned on the `upcast_from` type: a missing `From` impl or a type of another event
    // is reported there, once.
    let upcast = match &m.upcast_from {
        Some(from) => {
            let span = syn::spanned::Spanned::span(from);
            let info = quote::quote_spanned!(span=> __events_p::upcast_info::<#from, #ident>());
            quote!(::core::option::Option::Some(#info))
        }
        None => quote!(::core::option::Option::None),
    };
    let redacted_keys: Vec<&String> = m.redacted.iter().map(|(_, k)| k).collect();
    let redacted_const = if m.redacted.is_empty() {
        TokenStream::new()
    } else {
        quote!(const REDACTED: &'static [&'static str] = &[#(#redacted_keys),*];)
    };
    let debug_impl = redacted_debug(input, m);
    let personal_const = if m.personal {
        quote!(
            const PERSONAL: bool = true;
        )
    } else {
        TokenStream::new()
    };
    let subject_fn = match &m.subject {
        Some(field) => quote! {
            fn data_subject(&self) -> ::core::option::Option<::std::string::String> {
                ::core::option::Option::Some(::std::string::ToString::to_string(&self.#field))
            }
        },
        None => TokenStream::new(),
    };
    let description = match &m.description {
        Some(d) => quote!(::core::option::Option::Some(#d)),
        None => quote!(::core::option::Option::None),
    };
    quote! {
        #[doc(hidden)]
        #[allow(non_upper_case_globals, unreachable_pub)]
        const _: () = {
            use #krate::__private as __events_p;

            // First, so that a missing or 0.8 `JsonSchema` derive gets the note saying which.
            __events_p::assert_json_schema::<#ident>();

            // Never offered in another type's "is not an event" error.
            #[automatically_derived]
            #[diagnostic::do_not_recommend]
            impl #krate::Event for #ident {
                const NAME: &'static str = #name;
                const VERSION: u32 = #version;
                const KIND: #krate::EventKind = #krate::EventKind::#kind;
                const PRIORITY: i32 = #priority;
                #redacted_const
                #personal_const
                #subject_fn

                fn info() -> &'static #krate::EventInfo {
                    &__EVENTS_INFO
                }

                fn schema() -> &'static __events_p::Schema {
                    static __EVENTS_SCHEMA: __events_p::OnceLock<__events_p::Schema> =
                        __events_p::OnceLock::new();
                    __EVENTS_SCHEMA.get_or_init(__events_p::schema_for::<#ident>)
                }
            }

            #query_impl
            #debug_impl

            static __EVENTS_INFO: #krate::EventInfo = __events_p::event_info::<#ident>(
                ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#ident)),
                #description,
                #response,
                #upcast,
            );

            __events_p::inventory::submit! {
                __events_p::EventEntry(&__EVENTS_INFO)
            }
        };
    }
}

/// Emitted beside the errors of a failed derive: an `impl Event` with the right shape, so the
/// rest of the crate type-checks and only the real mistake is reported.
pub(crate) fn fallback(input: &syn::DeriveInput, m: &Model) -> TokenStream {
    if !input.generics.params.is_empty() || matches!(input.data, syn::Data::Union(_)) {
        return TokenStream::new();
    }
    let ident = &input.ident;
    let krate = &m.krate;
    // Keeps the query's responders free of a second, misleading "not a query" error.
    let query_impl = m.response.as_ref().map(|ty| {
        quote! {
            #[automatically_derived]
            impl #krate::Query for #ident {
                type Response = #ty;
            }
        }
    });
    quote! {
        const _: () = {
            #query_impl
            #[automatically_derived]
            impl #krate::Event for #ident {
                const NAME: &'static str = "";
                const VERSION: u32 = 1;
                const KIND: #krate::EventKind = #krate::EventKind::Notification;
                const PRIORITY: i32 = 0;
                fn info() -> &'static #krate::EventInfo {
                    ::core::unreachable!()
                }
                fn schema() -> &'static #krate::__private::Schema {
                    ::core::unreachable!()
                }
            }
        };
    }
}

/// With `#[event(redact)]` fields, the derive writes `Debug`: the redacted fields show a
/// marker, the others their value. (So the type must not also derive `Debug`: a derive after
/// this one is named by the error; one in the same list was removed before this derive ran,
/// and rustc's E0119 names it.)
fn redacted_debug(input: &syn::DeriveInput, m: &Model) -> TokenStream {
    let syn::Data::Struct(s) = &input.data else {
        return TokenStream::new();
    };
    if m.redacted.is_empty() {
        return TokenStream::new();
    }
    let ident = &input.ident;
    let name = ident.to_string();
    let fields = s.fields.iter().filter_map(|f| f.ident.as_ref()).map(|f| {
        let label = f.to_string().trim_start_matches("r#").to_owned();
        if m.redacted.iter().any(|(r, _)| r == f) {
            quote!(.field(#label, &::core::format_args!("[redacted]")))
        } else {
            quote!(.field(#label, &self.#f))
        }
    });
    let also = derives_debug(&input.attrs).map(|path| {
        quote::quote_spanned! {syn::spanned::Spanned::span(&path)=>
            ::core::compile_error!(
                "remove `Debug` from this derive: `#[derive(Event)]` writes `Debug` for an \
                 event with `#[event(redact)]` fields, showing them as `[redacted]`"
            );
        }
    });
    quote! {
        #also
        #[automatically_derived]
        impl ::core::fmt::Debug for #ident {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(#name) #(#fields)* .finish()
            }
        }
    }
}

/// The `Debug` of a `#[derive(..)]` still on the item (one written after
/// `#[derive(Event)]`; one in the same list was taken off before this derive ran).
fn derives_debug(attrs: &[syn::Attribute]) -> Option<syn::Path> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("derive"))
        .filter_map(|a| {
            a.parse_args_with(
                syn::punctuated::Punctuated::<syn::Path, syn::Token![,]>::parse_terminated,
            )
            .ok()
        })
        .flatten()
        .find(|p| p.segments.last().is_some_and(|s| s.ident == "Debug"))
}
