//! The `test_*` prompts of the contract and argument completion.

use rmcp::model::{
    CompleteRequestParams, CompleteResult, GetPromptRequestParams, GetPromptResponse, ListPromptsResult, Reference,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer};
use serde_json::{Map, Value, json};

use crate::content::{PNG_BASE64, complete};
use crate::input::{self, Gathered};

/// Lists the prompts.
pub(crate) fn list() -> Result<ListPromptsResult, McpError> {
    complete(json!({ "prompts": [
        { "name": "test_simple_prompt", "description": "A simple prompt without arguments." },
        {
            "name": "test_prompt_with_arguments",
            "description": "A prompt that substitutes two arguments.",
            "arguments": [
                { "name": "arg1", "description": "First test argument", "required": true },
                { "name": "arg2", "description": "Second test argument", "required": true },
            ],
        },
        {
            "name": "test_prompt_with_embedded_resource",
            "description": "A prompt that embeds a resource.",
            "arguments": [
                { "name": "resourceUri", "description": "URI of the resource to embed", "required": true },
            ],
        },
        { "name": "test_prompt_with_image", "description": "A prompt with image content." },
        {
            "name": "test_input_required_result_prompt",
            "description": "A prompt that first asks the client for context (SEP-2322).",
        },
    ]}))
}

/// Renders one prompt.
pub(crate) async fn get(
    context: &RequestContext<RoleServer>,
    request: GetPromptRequestParams,
) -> Result<GetPromptResponse, McpError> {
    let arguments = request.arguments.unwrap_or_default();
    let messages = match request.name.as_str() {
        "test_simple_prompt" => json!([user_text("This is a simple prompt for testing.")]),
        "test_prompt_with_arguments" => {
            let (arg1, arg2) = (required(&arguments, "arg1")?, required(&arguments, "arg2")?);
            json!([user_text(&format!("Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"))])
        }
        "test_prompt_with_embedded_resource" => {
            let uri = required(&arguments, "resourceUri")?;
            json!([
                { "role": "user", "content": { "type": "resource", "resource": {
                    "uri": uri,
                    "mimeType": "text/plain",
                    "text": "Embedded resource content for testing.",
                }}},
                user_text("Please process the embedded resource above."),
            ])
        }
        "test_prompt_with_image" => json!([
            { "role": "user", "content": { "type": "image", "data": PNG_BASE64, "mimeType": "image/png" } },
            user_text("Please analyze the image above."),
        ]),
        "test_input_required_result_prompt" => {
            let question = (
                "user_context",
                elicitation_request(
                    "What context should the prompt use?",
                    json!({ "context": { "type": "string" } }),
                    &["context"],
                ),
            );
            let answers = match input::gather(context, request.input_responses.as_ref(), &[question], None).await? {
                Gathered::All(answers) => answers,
                Gathered::Pending(pending) => return Ok(pending.into()),
            };
            let (_, content) = input::elicited(&answers, "user_context")?;
            let context = content.get("context").and_then(Value::as_str).unwrap_or("none");
            json!([user_text(&format!("Use this context: {context}"))])
        }
        other => {
            return Err(McpError::invalid_params(format!("unknown prompt: {other}"), Some(json!({ "name": other }))));
        }
    };
    Ok(GetPromptResponse::Complete(complete(json!({ "messages": messages }))?))
}

/// Suggests values for a prompt or resource-template argument.
///
/// Suggestions are the fixed candidates that start with what the user typed so far;
/// the suite only checks the shape, but prefix filtering keeps the answer meaningful.
pub(crate) fn completion(request: &CompleteRequestParams) -> Result<CompleteResult, McpError> {
    let candidates: &[&str] = match (&request.r#ref, request.argument.name.as_str()) {
        (Reference::Prompt(prompt), "arg1" | "arg2") if prompt.name == "test_prompt_with_arguments" => {
            &["paris", "park", "party", "test", "testValue1", "testValue2"]
        }
        (Reference::Resource(resource), "id") if resource.uri == "test://template/{id}/data" => &["1", "123", "42"],
        _ => &[],
    };
    let values: Vec<&str> =
        candidates.iter().copied().filter(|value| value.starts_with(request.argument.value.as_str())).collect();
    complete(json!({ "completion": { "values": values, "total": values.len(), "hasMore": false } }))
}

/// The wire shape of an `elicitation/create` request with a flat object schema.
pub(crate) fn elicitation_request(message: &str, properties: Value, required: &[&str]) -> Value {
    json!({
        "method": "elicitation/create",
        "params": {
            "message": message,
            "requestedSchema": { "type": "object", "properties": properties, "required": required },
        },
    })
}

/// A user message with one text block.
fn user_text(text: &str) -> Value {
    json!({ "role": "user", "content": { "type": "text", "text": text } })
}

/// Reads a required string argument; a missing one is the client's mistake.
fn required<'a>(arguments: &'a Map<String, Value>, name: &str) -> Result<&'a str, McpError> {
    arguments
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| McpError::invalid_params(format!("missing required argument: {name}"), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prompt_has_a_name_and_description() {
        let prompts = list().unwrap().prompts;
        assert_eq!(prompts.len(), 5);
        assert!(prompts.iter().all(|prompt| prompt.description.is_some()));
    }

    #[test]
    fn completion_filters_by_prefix() {
        let request: CompleteRequestParams = serde_json::from_value(json!({
            "ref": { "type": "ref/prompt", "name": "test_prompt_with_arguments" },
            "argument": { "name": "arg1", "value": "par" },
        }))
        .unwrap();
        assert_eq!(completion(&request).unwrap().completion.values, ["paris", "park", "party"]);
    }
}
