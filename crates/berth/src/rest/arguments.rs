//! The check of a REST call's arguments against its tool's `inputSchema`, before the call.
//!
//! Servers answer invalid arguments in ways a gateway cannot tell from a tool's own failure
//! (the TypeScript SDK, for one, with an `isError` result), so berth checks what most tool
//! schemas say itself and answers `400` with every reason: `type`, `enum`, `const`,
//! `required`, `properties`, `additionalProperties: false`, `items`, `minimum`, `maximum`,
//! `exclusiveMinimum`, `exclusiveMaximum`, `minLength`, `maxLength`, `minItems`, `maxItems`.
//! Everything else (`$ref`, `anyOf`, `pattern`, `format`, ...) is left to the server, so the
//! check never refuses what the schema admits.

use serde_json::{Map, Value};

/// How deep the check follows nested schemas; deeper values are the server's to judge.
const MAX_DEPTH: usize = 16;
/// The most reasons one answer lists.
const MAX_REASONS: usize = 16;

/// Checks `arguments` against `schema`: every reason it is refused, when it is.
pub(super) fn check(schema: &Value, arguments: &Value) -> Result<(), String> {
    let mut reasons = Vec::new();
    walk(schema, arguments, "", 0, &mut reasons);
    if reasons.is_empty() { Ok(()) } else { Err(reasons.join("; ")) }
}

/// Whether `value` is of JSON Schema type `name`.
fn is_type(value: &Value, name: &str) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "number" => value.is_number(),
        "integer" => {
            value.as_i64().is_some() || value.as_u64().is_some() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        // A type this check does not know admits everything.
        _ => true,
    }
}

fn walk(schema: &Value, value: &Value, at: &str, depth: usize, reasons: &mut Vec<String>) {
    let Value::Object(schema) = schema else { return };
    if depth > MAX_DEPTH || reasons.len() >= MAX_REASONS {
        return;
    }
    let place = if at.is_empty() { "the arguments".to_string() } else { format!("`{at}`") };
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(name)) => vec![name.as_str()],
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() && !types.iter().any(|name| is_type(value, name)) {
        reasons.push(format!("{place} must be of type {}", types.join(" or ")));
        return;
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(value)
    {
        reasons.push(format!("{place} must be one of {}", Value::from(allowed.clone())));
    }
    if let Some(expected) = schema.get("const")
        && expected != value
    {
        reasons.push(format!("{place} must be {expected}"));
    }
    bounds(schema, value, &place, reasons);
    match value {
        Value::Object(object) => properties(schema, object, at, depth, reasons),
        Value::Array(items) => {
            if let Some(item) = schema.get("items").filter(|item| item.is_object()) {
                for (index, value) in items.iter().enumerate() {
                    walk(item, value, &format!("{at}[{index}]"), depth + 1, reasons);
                }
            }
        }
        _ => {}
    }
}

fn properties(
    schema: &Map<String, Value>,
    object: &Map<String, Value>,
    at: &str,
    depth: usize,
    reasons: &mut Vec<String>,
) {
    let join = |key: &str| if at.is_empty() { key.to_string() } else { format!("{at}.{key}") };
    for required in schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        if !object.contains_key(required) {
            reasons.push(format!("`{}` is required", join(required)));
        }
    }
    let declared = schema.get("properties").and_then(Value::as_object);
    for (key, value) in object {
        match declared.and_then(|declared| declared.get(key)) {
            Some(property) => walk(property, value, &join(key), depth + 1, reasons),
            // Keys that `patternProperties` may admit are the server's to judge.
            None if schema.get("additionalProperties") == Some(&Value::Bool(false))
                && !schema.contains_key("patternProperties") =>
            {
                reasons.push(format!("`{}` is not an argument of this tool", join(key)));
            }
            None => {}
        }
    }
}

/// A numeric bound: its keyword, whether a number meets it, and how a refusal says it.
type Bound = (&'static str, fn(f64, f64) -> bool, &'static str);

/// The numeric, length and size bounds.
fn bounds(schema: &Map<String, Value>, value: &Value, place: &str, reasons: &mut Vec<String>) {
    let limit = |key: &str| schema.get(key).and_then(Value::as_f64);
    if let Some(number) = value.as_f64() {
        let checks: [Bound; 4] = [
            ("minimum", |n, l| n >= l, "at least"),
            ("maximum", |n, l| n <= l, "at most"),
            ("exclusiveMinimum", |n, l| n > l, "more than"),
            ("exclusiveMaximum", |n, l| n < l, "less than"),
        ];
        for (key, holds, words) in checks {
            if let Some(bound) = limit(key)
                && !holds(number, bound)
            {
                reasons.push(format!("{place} must be {words} {bound}"));
            }
        }
    }
    let size = match value {
        Value::String(text) => Some((text.chars().count(), "minLength", "maxLength", "characters")),
        Value::Array(items) => Some((items.len(), "minItems", "maxItems", "items")),
        _ => None,
    };
    if let Some((size, min, max, unit)) = size {
        if let Some(bound) = limit(min)
            && (size as f64) < bound
        {
            reasons.push(format!("{place} must have at least {bound} {unit}"));
        }
        if let Some(bound) = limit(max)
            && (size as f64) > bound
        {
            reasons.push(format!("{place} must have at most {bound} {unit}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_are_checked_against_what_the_schema_says() {
        let schema = json!({"type": "object", "required": ["a", "b"], "additionalProperties": false, "properties": {
            "a": {"type": "number", "minimum": 0},
            "b": {"type": "integer", "maximum": 10},
            "kind": {"type": "string", "enum": ["x", "y"], "maxLength": 1},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
            "deep": {"type": "object", "properties": {"n": {"type": ["integer", "null"]}}},
            "any": {"anyOf": [{"type": "string"}, {"type": "number"}]},
        }});
        let table = [
            (json!({"a": 1, "b": 2}), None),
            (json!({"a": 1.5, "b": 2.0, "kind": "x", "tags": ["p"], "deep": {"n": null}, "any": [1]}), None),
            (json!({"a": 1}), Some("`b` is required")),
            (json!({"a": "1", "b": 2}), Some("`a` must be of type number")),
            (json!({"a": -1, "b": 2.5}), Some("`a` must be at least 0; `b` must be of type integer")),
            (json!({"a": 1, "b": 11}), Some("`b` must be at most 10")),
            (json!({"a": 1, "b": 2, "kind": "z"}), Some("`kind` must be one of [\"x\",\"y\"]")),
            (
                json!({"a": 1, "b": 2, "tags": [1, "p", "q"]}),
                Some("`tags` must have at most 2 items; `tags[0]` must be of type string"),
            ),
            (json!({"a": 1, "b": 2, "deep": {"n": "x"}}), Some("`deep.n` must be of type integer or null")),
            (json!({"a": 1, "b": 2, "c": 3}), Some("`c` is not an argument of this tool")),
            (json!([]), Some("the arguments must be of type object")),
        ];
        for (arguments, expected) in table {
            assert_eq!(check(&schema, &arguments).err().as_deref(), expected, "{arguments}");
        }
        // A schema this check cannot read admits everything.
        assert_eq!(check(&json!(true), &json!({"x": 1})), Ok(()));
        assert_eq!(check(&json!({"type": "object"}), &json!({"x": 1})), Ok(()));
        let patterned = json!({"additionalProperties": false, "patternProperties": {"^x": {}}});
        assert_eq!(check(&patterned, &json!({"x1": 1})), Ok(()));
    }
}
