//! The `test://` resources and the resource template of the contract.

use rmcp::ErrorData as McpError;
use rmcp::model::{ListResourceTemplatesResult, ListResourcesResult, ReadResourceResult};
use serde_json::json;

use crate::content::{PNG_BASE64, complete};

/// The resource whose updates a client may subscribe to.
pub(crate) const WATCHED_URI: &str = "test://watched-resource";

/// The URI template whose `{id}` is substituted on read.
const TEMPLATE: &str = "test://template/{id}/data";

/// Lists the direct resources (templates are listed separately).
pub(crate) fn list() -> Result<ListResourcesResult, McpError> {
    complete(json!({ "resources": [
        {
            "uri": "test://static-text",
            "name": "static-text",
            "description": "A static text resource.",
            "mimeType": "text/plain",
        },
        {
            "uri": "test://static-binary",
            "name": "static-binary",
            "description": "A static binary resource (a PNG image).",
            "mimeType": "image/png",
        },
        {
            "uri": WATCHED_URI,
            "name": "watched-resource",
            "description": "A resource that clients may subscribe to.",
            "mimeType": "text/plain",
        },
    ]}))
}

/// Lists the resource templates.
pub(crate) fn templates() -> Result<ListResourceTemplatesResult, McpError> {
    complete(json!({ "resourceTemplates": [{
        "uriTemplate": TEMPLATE,
        "name": "template-data",
        "description": "Data for the id substituted into the URI.",
        "mimeType": "application/json",
    }]}))
}

/// Reads one resource, or fails with resource-not-found naming the URI.
///
/// An unknown URI is an error rather than an empty `contents` array (SEP-2164);
/// rmcp turns the legacy `-32002` code into `-32602` for `2026-07-28` peers.
pub(crate) fn read(uri: &str) -> Result<ReadResourceResult, McpError> {
    let content = match uri {
        "test://static-text" => json!({
            "uri": uri,
            "mimeType": "text/plain",
            "text": "This is the content of the static text resource.",
        }),
        "test://static-binary" => {
            json!({ "uri": uri, "mimeType": "image/png", "blob": PNG_BASE64 })
        }
        WATCHED_URI => json!({
            "uri": uri,
            "mimeType": "text/plain",
            "text": "This is the content of the watched resource.",
        }),
        _ => match template_id(uri) {
            Some(id) => json!({
                "uri": uri,
                "mimeType": "application/json",
                "text": json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") })
                    .to_string(),
            }),
            None => return Err(not_found(uri)),
        },
    };
    complete(json!({ "contents": [content] }))
}

/// Matches `test://template/{id}/data` and returns the id.
fn template_id(uri: &str) -> Option<&str> {
    let id = uri.strip_prefix("test://template/")?.strip_suffix("/data")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

/// The error for a URI this server does not serve; the URI goes into `data` so that a
/// client can tell which of several reads failed.
pub(crate) fn not_found(uri: &str) -> McpError {
    McpError::resource_not_found("Resource not found", Some(json!({ "uri": uri })))
}

/// Reports whether `uri` names a resource that exists, for subscription requests.
pub(crate) fn exists(uri: &str) -> bool {
    read(uri).is_ok()
}

/// Returns the JSON of a read, for tests and for embedding.
#[cfg(test)]
fn read_json(uri: &str) -> serde_json::Value {
    serde_json::to_value(read(uri).unwrap()).unwrap()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn fixtures_fit_the_model() {
        assert_eq!(list().unwrap().resources.len(), 3);
        assert_eq!(templates().unwrap().resource_templates.len(), 1);
    }

    #[test]
    fn template_substitutes_the_id() {
        let read = read_json("test://template/123/data");
        let text = read["contents"][0]["text"].as_str().unwrap();
        let data: Value = serde_json::from_str(text).unwrap();
        assert_eq!(data, json!({ "id": "123", "templateTest": true, "data": "Data for ID: 123" }));
    }

    #[test]
    fn reads_by_uri() {
        for (uri, field) in [("test://static-text", "text"), ("test://static-binary", "blob"), (WATCHED_URI, "text")] {
            assert!(read_json(uri)["contents"][0][field].is_string(), "{uri}");
        }
    }

    #[test]
    fn unknown_uris_are_errors_that_name_the_uri() {
        for uri in ["test://nope", "test://template//data", "test://template/a/b/data"] {
            let error = read(uri).unwrap_err();
            assert_eq!(error.data, Some(json!({ "uri": uri })));
        }
    }
}
