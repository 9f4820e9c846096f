//! The default event name and the rule every event name follows.

/// `OrderPlaced` -> `order.placed`, `HTTPRequestFailed` -> `http.request.failed`,
/// `OrderPlacedV2` -> `order.placed.v2`: words split where a lower-case letter or digit is
/// followed by an upper-case one, and before the last capital of an acronym that starts a
/// word; joined with `.`, lower case.
pub(crate) fn default_name(ident: &str) -> String {
    let ident = ident.strip_prefix("r#").unwrap_or(ident);
    let chars: Vec<char> = ident.chars().collect();
    let mut out = String::with_capacity(ident.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' {
            if !out.is_empty() && !out.ends_with('.') {
                out.push('.');
            }
            continue;
        }
        if i > 0 && c.is_uppercase() {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let boundary =
                prev.is_lowercase() || prev.is_ascii_digit() || (prev.is_uppercase() && next_lower);
            if boundary && !out.is_empty() && !out.ends_with('.') {
                out.push('.');
            }
        }
        out.extend(c.to_lowercase());
    }
    out.trim_end_matches('.').to_owned()
}

/// Why `name` is not a valid event name, or `None` when it is: one or more `.`-separated
/// segments of `a-z`, `0-9`, `_` and `-`, each starting with a letter or digit. The rule keeps
/// names usable as CloudEvents types, NATS subjects and file names.
pub(crate) fn invalid_name(name: &str) -> Option<String> {
    const RULE: &str = "use lower-case `.`-separated segments of `a-z`, `0-9`, `_` and `-`, \
                        each starting with a letter or digit, e.g. `order.placed`";
    let why = if name.is_empty() {
        "it is empty".to_owned()
    } else if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.')))
    {
        format!("`{bad}` is not allowed")
    } else if name.split('.').any(str::is_empty) {
        "it has an empty segment (`..`, or a `.` at either end)".to_owned()
    } else if let Some(seg) = name.split('.').find(|s| s.starts_with(['_', '-'])) {
        format!("segment `{seg}` starts with `{}`", &seg[..1])
    } else {
        return None;
    };
    Some(format!("invalid event name `{name}`: {why}; {RULE}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names() {
        assert_eq!(default_name("OrderPlaced"), "order.placed");
        assert_eq!(default_name("Ping"), "ping");
        assert_eq!(default_name("HTTPRequestFailed"), "http.request.failed");
        assert_eq!(default_name("OrderPlacedV2"), "order.placed.v2");
        assert_eq!(default_name("UserID"), "user.id");
        assert_eq!(default_name("Order2Shipped"), "order2.shipped");
        assert_eq!(default_name("order_placed"), "order.placed");
        assert_eq!(default_name("r#Match"), "match");
    }

    #[test]
    fn default_names_are_valid() {
        for n in [
            "OrderPlaced",
            "HTTPRequestFailed",
            "A",
            "X9Y",
            "snake_Case_",
        ] {
            assert_eq!(invalid_name(&default_name(n)), None, "{n}");
        }
    }

    #[test]
    fn name_rule() {
        assert_eq!(invalid_name("order.placed"), None);
        assert_eq!(invalid_name("v2.order-placed_x"), None);
        assert!(invalid_name("").is_some());
        assert!(invalid_name("Order.placed").is_some());
        assert!(invalid_name("order placed").is_some());
        assert!(invalid_name("order..placed").is_some());
        assert!(invalid_name("order.*").is_some());
        assert!(invalid_name(".order").is_some());
        assert!(invalid_name("order._x").is_some());
        assert_eq!(
            invalid_name("Order").unwrap(),
            "invalid event name `Order`: `O` is not allowed; use lower-case `.`-separated \
             segments of `a-z`, `0-9`, `_` and `-`, each starting with a letter or digit, \
             e.g. `order.placed`"
        );
        assert!(invalid_name("order._x").is_some());
        assert_eq!(
            invalid_name("Order").unwrap(),
            "invalid event name `Order`: `O` is not allowed; use lower-case `.`-separated \
             segments of `a-z`, `0-9`, `_` and `-`, each starting with a letter or digit, \
             e.g. `order.placed`"
        );
    }
}
