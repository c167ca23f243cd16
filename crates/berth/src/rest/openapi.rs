//! The OpenAPI 3.1 document of a backend's REST face, made from the tools one caller sees.
//!
//! Each tool is a `POST /tools/<tool>` operation (the name percent-encoded: anything but
//! `A-Z a-z 0-9 - . _ ~`, so that `/`, `{` and `}` cannot break the path template), its
//! `inputSchema` the request body and its `outputSchema`, when it has one, the `200` answer;
//! a tool that must run as a task (`execution.taskSupport = "required"`) is left out.
//! The schemas are moved into `components/schemas` and their local `$ref`s (`#/...`, relative
//! to the tool's schema) rewritten to point there. `operationId`s are the tool names when they
//! are identifiers, else the name made one plus a hash of the original, so that an id depends
//! on its tool's name alone; a clash left (two tools whose names map alike) is numbered in name
//! order.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::RestSettings;

/// The statuses every tool operation may answer besides `200`, and what they mean.
const ERRORS: &[(&str, &str)] = &[
    ("400", "The arguments are not a JSON object, or the tool refused them."),
    ("401", "Missing or wrong credentials."),
    ("403", "The caller may not use this backend, or this address may not."),
    ("404", "No such tool (or not for this caller)."),
    ("408", "The body did not arrive within the server's body deadline."),
    ("413", "The body is larger than the server's limit."),
    ("415", "The body is not application/json."),
    ("422", "The tool ran and reported an error (`isError`); `result` holds its whole result."),
    ("429", "The backend's rate limit for this caller is spent."),
    ("502", "The backend failed."),
    ("503", "The backend is not ready, stopped, or at its instance limit."),
    ("504", "The backend did not answer in time."),
];

/// Characters kept as they are in a path segment (RFC 3986 unreserved).
fn unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// `name` as one path segment.
pub(super) fn percent_encode(name: &str) -> String {
    let mut encoded = String::with_capacity(name.len());
    for byte in name.bytes() {
        if unreserved(byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The `operationId` of tool `name` before clashes are numbered.
fn operation_id(name: &str) -> String {
    let clean: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if clean == name && !name.is_empty() {
        return clean;
    }
    let hash = Sha256::digest(name.as_bytes());
    let short: String = hash[..4].iter().map(|byte| format!("{byte:02x}")).collect();
    let clean: String = clean.chars().take(64).collect();
    format!("{clean}_{short}")
}

/// `schema` with its local `$ref`s (JSON pointers) pointing below `base` (`#/components/schemas/<key>`), and
/// without a root `$schema` (the document's dialect is OpenAPI's).
fn relocated(schema: &Value, base: &str) -> Value {
    fn walk(value: &mut Value, base: &str) {
        match value {
            Value::Object(object) => {
                for (key, value) in object.iter_mut() {
                    match value {
                        // JSON pointers; a plain-name fragment (`#addr`) names an `$anchor`,
                        // which the moved schema still holds.
                        Value::String(target) if key == "$ref" && (target == "#" || target.starts_with("#/")) => {
                            *target = format!("{base}{}", &target[1..]);
                        }
                        _ => walk(value, base),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| walk(item, base)),
            _ => {}
        }
    }
    let mut schema = match schema {
        Value::Object(_) => schema.clone(),
        // A tool without a usable schema takes any object.
        _ => json!({"type": "object"}),
    };
    if let Value::Object(object) = &mut schema {
        object.remove("$schema");
    }
    walk(&mut schema, base);
    schema
}

/// The document for backend `backend` served at `server`, from its initialize result `init`
/// and the caller's `tools`.
pub(super) fn document(backend: &str, server: &str, init: &Value, tools: &[Value], settings: &RestSettings) -> Value {
    let mut named: Vec<(&str, &Value)> = tools
        .iter()
        .filter(|tool| super::callable(tool))
        .filter_map(|tool| Some((tool.get("name")?.as_str()?, tool)))
        .collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    named.dedup_by(|a, b| a.0 == b.0);
    let mut taken = HashSet::new();
    let mut paths = Map::new();
    let mut schemas = BTreeMap::new();
    for (name, tool) in named {
        let base_id = operation_id(name);
        let mut id = base_id.clone();
        let mut n = 2;
        while !taken.insert(id.clone()) {
            id = format!("{base_id}_{n}");
            n += 1;
        }
        let input_key = format!("{id}_input");
        let input =
            relocated(tool.get("inputSchema").unwrap_or(&Value::Null), &format!("#/components/schemas/{input_key}"));
        let required = input.get("required").and_then(Value::as_array).is_some_and(|required| !required.is_empty());
        schemas.insert(input_key.clone(), input);
        let success = match tool.get("outputSchema").filter(|schema| schema.is_object()) {
            Some(output) => {
                let key = format!("{id}_output");
                schemas.insert(key.clone(), relocated(output, &format!("#/components/schemas/{key}")));
                json!({"description": "The tool's structured content.",
                    "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{key}")}}}})
            }
            None => json!({"description": "The tool's content list (or its structured content, when it gives one).",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Result"}}}}),
        };
        let mut responses = Map::new();
        responses.insert("200".into(), success);
        for (status, _) in ERRORS {
            if *status == "401" && !settings.authenticated {
                continue;
            }
            responses.insert((*status).into(), json!({"$ref": format!("#/components/responses/E{status}")}));
        }
        let mut operation = json!({
            "operationId": id,
            "summary": tool.get("title").or_else(|| tool.pointer("/annotations/title")).and_then(Value::as_str).unwrap_or(name),
            "requestBody": {"required": required, "content": {"application/json": {
                "schema": {"$ref": format!("#/components/schemas/{input_key}")}}}},
            "responses": responses,
        });
        if let Some(description) = tool.get("description").and_then(Value::as_str) {
            operation["description"] = Value::from(description);
        }
        paths.insert(format!("/tools/{}", percent_encode(name)), json!({"post": operation}));
    }
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object", "required": ["error", "message"],
            "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
        }),
    );
    schemas.insert(
        "Content".into(),
        json!({
            "type": "object", "required": ["type"], "properties": {"type": {"type": "string"}},
        }),
    );
    schemas.insert(
        "Result".into(),
        json!({
            "anyOf": [{"type": "array", "items": {"$ref": "#/components/schemas/Content"}}, {"type": "object"}],
        }),
    );
    let responses: Map<String, Value> = ERRORS
        .iter()
        .map(|(status, description)| {
            let response = json!({"description": description,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
            (format!("E{status}"), response)
        })
        .collect();
    let server_info = init.get("serverInfo");
    let title = server_info.and_then(|info| info.get("title").or_else(|| info.get("name"))).and_then(Value::as_str);
    let mut info = json!({
        "title": format!("{backend}: {}", title.unwrap_or("MCP server")),
        "version": server_info.and_then(|info| info.get("version")).and_then(Value::as_str).unwrap_or("unknown"),
        "description": format!(
            "The tools of berth backend `{backend}` as REST operations: POST the arguments as a JSON object."
        ),
    });
    if let Some(instructions) = init.get("instructions").and_then(Value::as_str) {
        info["description"] = Value::from(format!("{}\n\n{instructions}", info["description"].as_str().unwrap_or("")));
    }
    let mut document = json!({
        "openapi": "3.1.0",
        "info": info,
        "servers": [{"url": server}],
        "paths": paths,
        "components": {"schemas": schemas, "responses": responses},
    });
    if settings.authenticated {
        document["components"]["securitySchemes"] = json!({
            "basic": {"type": "http", "scheme": "basic"},
            "bearer": {"type": "http", "scheme": "bearer", "description": "An API token of [[auth.tokens]]."},
        });
        document["security"] = json!([{"basic": []}, {"bearer": []}]);
    }
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RestSettings {
        RestSettings::new(1, false, true)
    }

    #[test]
    fn names_become_segments_and_identifiers() {
        let table = [
            ("echo", "echo", "echo"),
            ("get-sum", "get-sum", "get_sum_"),
            ("a/b{c}", "a%2Fb%7Bc%7D", "a_b_c__"),
            ("\u{e9}t\u{e9}", "%C3%A9t%C3%A9", "_t__"),
        ];
        for (name, segment, id) in table {
            assert_eq!(percent_encode(name), segment);
            assert!(operation_id(name).starts_with(id), "{name}: {}", operation_id(name));
        }
        // An id depends on its own tool's name only.
        assert_eq!(operation_id("get-sum"), operation_id("get-sum"));
        assert_ne!(operation_id("a-b"), operation_id("a.b"));
    }

    #[test]
    fn every_tool_is_an_operation_with_unique_ids() {
        let tools = [
            json!({"name": "echo", "description": "Echoes", "inputSchema": {"$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object", "properties": {"text": {"$ref": "#/definitions/t"}, "me": {"$ref": "#"},
                "anchored": {"$ref": "#t"}}, "required": ["text"],
                "definitions": {"t": {"type": "string"}}}}),
            json!({"name": "sum", "inputSchema": {"type": "object"},
                "outputSchema": {"type": "object", "properties": {"sum": {"type": "number"}}}}),
            json!({"name": "echo_ffffffff"}),
            json!({"name": "echo"}),
            json!({"name": "research", "execution": {"taskSupport": "required"}}),
        ];
        let document =
            document("fs", "http://h/fs", &json!({"serverInfo": {"name": "srv", "version": "2"}}), &tools, &settings());
        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(document["servers"][0]["url"], "http://h/fs");
        assert_eq!(document["info"]["version"], "2");
        let echo = &document["paths"]["/tools/echo"]["post"];
        assert_eq!(echo["operationId"], "echo");
        assert_eq!(echo["requestBody"]["required"], true);
        let input = &document["components"]["schemas"]["echo_input"];
        assert_eq!(input["properties"]["text"]["$ref"], "#/components/schemas/echo_input/definitions/t");
        assert!(input.get("$schema").is_none());
        assert_eq!(input["properties"]["me"]["$ref"], "#/components/schemas/echo_input");
        assert_eq!(input["properties"]["anchored"]["$ref"], "#t");
        let sum = &document["paths"]["/tools/sum"]["post"];
        assert_eq!(sum["requestBody"]["required"], false);
        assert_eq!(
            sum["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/sum_output"
        );
        assert_eq!(document["paths"].as_object().unwrap().len(), 3, "duplicates listed once");
        assert_eq!(document["security"][0], json!({"basic": []}));
    }
}
