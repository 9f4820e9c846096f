//! Event-name patterns for wildcard handlers and subscriptions, as NATS subjects have them:
//! `.`-separated segments where `*` matches exactly one segment and a final `>` matches one
//! or more. `order.*` matches `order.placed`, not `order.placed.v2`; `order.>` matches both.

/// A pattern that is not one: see the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event pattern `{pattern}`: {reason}")]
pub struct InvalidPattern {
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Why `pattern` is not valid, or `Ok`.
pub(crate) fn check(pattern: &str) -> Result<(), InvalidPattern> {
    let fail = |reason: String| {
        Err(InvalidPattern {
            pattern: pattern.to_owned(),
            reason,
        })
    };
    if pattern.is_empty() {
        return fail("it is empty; `>` matches every event".into());
    }
    let segments: Vec<&str> = pattern.split('.').collect();
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "" => return fail("it has an empty segment".into()),
            "*" => {}
            ">" if i + 1 == segments.len() => {}
            ">" => return fail("`>` may only be the last segment".into()),
            literal => {
                if let Some(c) = literal.chars().find(|c| {
                    !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
                }) {
                    return fail(format!(
                        "segment `{literal}` contains `{c}`; segments are lower-case names, `*` \
                         (one segment) or a final `>` (the rest)"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Whether the event name `name` matches the (valid) `pattern`.
pub(crate) fn matches(pattern: &str, name: &str) -> bool {
    let mut names = name.split('.');
    for seg in pattern.split('.') {
        match (seg, names.next()) {
            (">", Some(_)) => return true,
            (_, None) => return false,
            ("*", Some(_)) => {}
            (literal, Some(n)) if literal == n => {}
            _ => return false,
        }
    }
    names.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        assert!(matches("order.*", "order.placed"));
        assert!(!matches("order.*", "order.placed.v2"));
        assert!(!matches("order.*", "order"));
        assert!(matches("order.>", "order.placed"));
        assert!(matches("order.>", "order.placed.v2"));
        assert!(!matches("order.>", "order"));
        assert!(matches(">", "anything.at.all"));
        assert!(matches("*.placed", "order.placed"));
        assert!(!matches("*.placed", "order.shipped"));
        assert!(matches("order.placed", "order.placed"));
        assert!(!matches("order.placed", "order.placed.v2"));
    }

    #[test]
    fn checking() {
        assert!(check("order.*").is_ok());
        assert!(check(">").is_ok());
        assert!(check("a.*.c.>").is_ok());
        assert_eq!(
            check("order.>.x").unwrap_err().to_string(),
            "invalid event pattern `order.>.x`: `>` may only be the last segment"
        );
        assert!(check("").is_err());
        assert!(check("order..x").is_err());
        assert!(check("Order.*").is_err());
        assert!(check("order.pl*").is_err());
    }
}
