//! An example payload made from a JSON Schema: the first of every choice, a plausible value
//! for every type. Enough to show the shape of an event in the catalog.

use serde_json::{Map, Value, json};

/// An example instance of `schema` (a schemars root schema, `$ref`s into its `$defs`).
pub(crate) fn example(schema: &Value) -> Value {
    let defs = schema.get("$defs").cloned().unwrap_or(Value::Null);
    make(schema, &defs, 0)
}

fn make(schema: &Value, defs: &Value, depth: usize) -> Value {
    if depth > 8 {
        return Value::Null;
    }
    let Value::Object(s) = schema else {
        // `true` accepts anything.
        return Value::Null;
    };
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let target = r.strip_prefix("#/$defs/").and_then(|name| defs.get(name));
        return target.map_or(Value::Null, |t| make(t, defs, depth + 1));
    }
    if let Some(v) = s
        .get("examples")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    {
        return v.clone();
    }
    if let Some(v) = s.get("const").or_else(|| s.get("default")) {
        return v.clone();
    }
    if let Some(v) = s
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    {
        return v.clone();
    }
    for choice in ["oneOf", "anyOf", "allOf"] {
        if let Some(first) = s.get(choice).and_then(Value::as_array).and_then(|a| {
            // Prefer a choice that is not `null`.
            a.iter()
                .find(|c| c.get("type").and_then(Value::as_str) != Some("null"))
                .or(a.first())
        }) {
            return make(first, defs, depth + 1);
        }
    }
    let ty = match s.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if s.contains_key("properties") => "object",
        _ => "null",
    };
    match ty {
        "object" => {
            let mut out = Map::new();
            if let Some(Value::Object(props)) = s.get("properties") {
                for (k, p) in props {
                    out.insert(k.clone(), make(p, defs, depth + 1));
                }
            }
            Value::Object(out)
        }
        "array" => match s.get("items") {
            Some(items) => Value::Array(vec![make(items, defs, depth + 1)]),
            None => json!([]),
        },
        "string" => match s.get("format").and_then(Value::as_str) {
            Some("date-time") => json!("2026-01-01T12:00:00Z"),
            Some("date") => json!("2026-01-01"),
            Some("uuid") => json!("01900000-0000-7000-8000-000000000000"),
            Some("email") => json!("someone@example.com"),
            Some("uri") => json!("https://example.com/"),
            _ => json!("string"),
        },
        "integer" => json!(s.get("minimum").and_then(Value::as_i64).unwrap_or(0).max(0)),
        "number" => json!(0.0),
        "boolean" => json!(false),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_follow_the_schema() {
        let schema = json!({
            "type": "object",
            "properties": {
                "id": { "type": "integer", "format": "uint64", "minimum": 0 },
                "tags": { "type": "array", "items": { "type": "string" } },
                "coupon": { "type": ["string", "null"] },
                "line": { "$ref": "#/$defs/Line" },
                "status": { "enum": ["open", "closed"] }
            },
            "$defs": { "Line": { "type": "object", "properties": { "qty": { "type": "integer" } } } }
        });
        assert_eq!(
            example(&schema),
            json!({ "id": 0, "tags": ["string"], "coupon": "string", "line": { "qty": 0 }, "status": "open" })
        );
    }
}
