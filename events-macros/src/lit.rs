//! Literal values of attribute options, parsed with the error messages users see.

use syn::meta::ParseNestedMeta;
use syn::{Expr, ExprLit, ExprUnary, Lit, UnOp};

/// `key = "text"`.
pub(crate) fn string(meta: &ParseNestedMeta<'_>, key: &str) -> syn::Result<syn::LitStr> {
    let expr = parse_value(meta)?;
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s),
        other => Err(syn::Error::new_spanned(
            other,
            format!("`{key}` takes a string literal, e.g. `{key} = \"...\"`"),
        )),
    }
}

/// `key = 12` or `key = -3`, within the range of `T`.
pub(crate) fn int<T>(meta: &ParseNestedMeta<'_>, key: &str, example: &str) -> syn::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let expr = parse_value(meta)?;
    let (negative, lit) = match &expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => (false, Some(i)),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr: inner,
            ..
        }) => match &**inner {
            Expr::Lit(ExprLit {
                lit: Lit::Int(i), ..
            }) => (true, Some(i)),
            _ => (true, None),
        },
        _ => (false, None),
    };
    let Some(lit) = lit else {
        return Err(syn::Error::new_spanned(
            expr,
            format!("`{key}` takes an integer literal, e.g. `{key} = {example}`"),
        ));
    };
    let digits = format!("{}{}", if negative { "-" } else { "" }, lit.base10_digits());
    digits.parse::<T>().map_err(|e| {
        syn::Error::new_spanned(&expr, format!("`{key} = {digits}` is out of range: {e}"))
    })
}

/// `key = some::path`.
pub(crate) fn path(meta: &ParseNestedMeta<'_>, key: &str) -> syn::Result<syn::Path> {
    let expr = parse_value(meta)?;
    match expr {
        Expr::Path(p) if p.qself.is_none() => Ok(p.path),
        other => Err(syn::Error::new_spanned(
            other,
            format!("`{key}` takes a path, e.g. `{key} = my_module::my_fn`"),
        )),
    }
}

/// `key = <any expression>`.
pub(crate) fn expr(meta: &ParseNestedMeta<'_>) -> syn::Result<Expr> {
    parse_value(meta)
}

/// The expression after `key =`, with the invisible groups that `macro_rules!` wraps around
/// `$x:literal` and `$x:path` fragments removed.
fn parse_value(meta: &ParseNestedMeta<'_>) -> syn::Result<Expr> {
    let mut expr: Expr = meta.value()?.parse()?;
    while let Expr::Group(g) = expr {
        expr = *g.expr;
    }
    Ok(expr)
}

/// The name of a nested option, for error messages.
pub(crate) fn key(meta: &ParseNestedMeta<'_>) -> String {
    meta.path
        .get_ident()
        .map(ToString::to_string)
        .unwrap_or_else(|| {
            quote::ToTokens::to_token_stream(&meta.path)
                .to_string()
                .replace(' ', "")
        })
}

/// The option's name, the first time it is given; `None` (with an error on it, and its value
/// consumed so that parsing goes on to the next one) when `seen` has it already. `what`
/// names the option in the message, e.g. "`#[handler]` option".
pub(crate) fn first_time(
    cx: &mut crate::ctxt::Ctxt,
    meta: &ParseNestedMeta<'_>,
    seen: &mut Vec<String>,
    what: &str,
) -> Option<String> {
    let key = key(meta);
    if seen.contains(&key) {
        cx.error(
            &meta.path,
            format!("duplicate {what} `{key}`; give it once"),
        );
        skip_value(meta);
        return None;
    }
    seen.push(key.clone());
    Some(key)
}

/// Consumes an option's `= value`, if any, unread: after an error on the option.
pub(crate) fn skip_value(meta: &ParseNestedMeta<'_>) {
    let _ = meta.value().and_then(|v| v.parse::<Expr>());
}
