//! The `test_*` tools of the contract: their catalogue and what each does.
//!
//! Tools that need the client's help (sampling, elicitation, roots) describe their
//! questions once and let [`input::gather`] ask them the way the request's protocol
//! generation allows.

// Logging and sampling are deprecated by SEP-2577 but remain part of the contract
// for the session-based revisions, so this module uses them knowingly.
#![allow(deprecated)]

use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientCapabilities, ListToolsResult, LoggingLevel,
    LoggingMessageNotificationParam, ProgressNotificationParam, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer};
use serde_json::{Value, json};

use crate::content::{PNG_BASE64, WAV_BASE64, complete, wire};
use crate::input::{self, Gathered, Question};
use crate::listeners::ListChange;
use crate::prompts::elicitation_request;
use crate::server::Shared;

/// The tool whose input schema exercises JSON Schema 2020-12 keywords.
const JSON_SCHEMA_TOOL: &str = "json_schema_2020_12_tool";

/// An input schema for a tool without arguments.
fn no_arguments() -> Value {
    json!({ "type": "object", "properties": {} })
}

/// An input schema with one required string argument.
fn one_string(name: &str, description: &str) -> Value {
    json!({
        "type": "object",
        "properties": { name: { "type": "string", "description": description } },
        "required": [name],
    })
}

/// The catalogue, in a fixed order so that repeated listings agree (2026-07-28 asks
/// for a deterministic order).
fn catalogue() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        ("test_simple_text", "Returns simple text content.", no_arguments()),
        ("test_image_content", "Returns image content (a base64 PNG).", no_arguments()),
        ("test_audio_content", "Returns audio content (a base64 WAV).", no_arguments()),
        ("test_embedded_resource", "Returns an embedded resource.", no_arguments()),
        ("test_multiple_content_types", "Returns text, image and resource content.", no_arguments()),
        ("test_tool_with_logging", "Sends three log messages while it runs.", no_arguments()),
        ("test_logging_tool", "Sends log messages only at the requested log level.", no_arguments()),
        ("test_tool_with_progress", "Reports progress 0, 50 and 100 of 100.", no_arguments()),
        ("test_error_handling", "Always reports a tool execution error.", no_arguments()),
        (
            "test_sampling",
            "Asks the client's LLM to answer a prompt.",
            one_string("prompt", "The prompt to send to the LLM"),
        ),
        (
            "test_elicitation",
            "Asks the user for a username and email.",
            one_string("message", "The message to show the user"),
        ),
        (
            "test_elicitation_sep1034_defaults",
            "Elicits values with defaults for every primitive type (SEP-1034).",
            no_arguments(),
        ),
        ("test_elicitation_sep1330_enums", "Elicits every enum variant (SEP-1330).", no_arguments()),
        ("test_reconnection", "Takes a moment, to exercise SSE resumption.", no_arguments()),
        (JSON_SCHEMA_TOOL, "Tool with JSON Schema 2020-12 features", json_schema_2020_12()),
        ("test_missing_capability", "Needs the sampling capability; fails with -32021 without it.", no_arguments()),
        ("test_streaming_elicitation", "Needs input from the user while it runs.", no_arguments()),
        (
            "test_header_param",
            "Echoes an argument that is mirrored into the Mcp-Param-Region header (SEP-2243).",
            json!({
                "type": "object",
                "properties": { "region": { "type": "string", "description": "A region name", "x-mcp-header": "Region" } },
                "required": ["region"],
            }),
        ),
        ("test_trigger_tool_change", "Announces that the tool list changed.", no_arguments()),
        ("test_trigger_prompt_change", "Announces that the prompt list changed.", no_arguments()),
        ("test_input_required_result_elicitation", "Asks the user's name (SEP-2322).", no_arguments()),
        ("test_input_required_result_sampling", "Asks the LLM a question (SEP-2322).", no_arguments()),
        ("test_input_required_result_list_roots", "Asks for the client's roots (SEP-2322).", no_arguments()),
        ("test_input_required_result_request_state", "Round-trips a requestState (SEP-2322).", no_arguments()),
        ("test_input_required_result_multiple_inputs", "Asks three questions at once (SEP-2322).", no_arguments()),
        ("test_input_required_result_multi_round", "Asks over two rounds (SEP-2322).", no_arguments()),
        ("test_input_required_result_tampered_state", "Rejects a tampered requestState (SEP-2322).", no_arguments()),
        ("test_input_required_result_capabilities", "Asks only what the client can answer (SEP-2322).", no_arguments()),
    ]
}

/// The input schema of [`JSON_SCHEMA_TOOL`], kept verbatim so that its 2020-12
/// keywords (`$schema`, `$defs`, `$anchor`, composition and conditionals) reach the
/// client untouched.
fn json_schema_2020_12() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "$anchor": "addressDef",
                "type": "object",
                "properties": { "street": { "type": "string" }, "city": { "type": "string" } },
            },
        },
        "properties": {
            "name": { "type": "string" },
            "address": { "$ref": "#/$defs/address" },
            "contactMethod": { "type": "string", "enum": ["phone", "email"] },
            "phone": { "type": "string" },
            "email": { "type": "string" },
        },
        "allOf": [{ "anyOf": [{ "required": ["phone"] }, { "required": ["email"] }] }],
        "if": { "properties": { "contactMethod": { "const": "phone" } }, "required": ["contactMethod"] },
        "then": { "required": ["phone"] },
        "else": { "required": ["email"] },
        "additionalProperties": false,
    })
}

/// Lists every tool.
pub(crate) fn list() -> Result<ListToolsResult, McpError> {
    let tools = catalogue()
        .into_iter()
        .map(|(name, description, schema)| {
            wire::<Tool>(json!({ "name": name, "description": description, "inputSchema": schema }))
        })
        .collect::<Result<Vec<_>, _>>()?;
    complete(json!({ "tools": tools }))
}

/// Runs one tool.
pub(crate) async fn call(
    shared: &Shared,
    context: &RequestContext<RoleServer>,
    request: CallToolRequestParams,
) -> Result<CallToolResponse, McpError> {
    let name = request.name.clone();
    let result = match name.as_ref() {
        "test_simple_text" => text("This is a simple text response for testing."),
        "test_image_content" => complete(json!({ "content": [image()] })),
        "test_audio_content" => {
            complete(json!({ "content": [{ "type": "audio", "data": WAV_BASE64, "mimeType": "audio/wav" }] }))
        }
        "test_embedded_resource" => complete(json!({ "content": [{ "type": "resource", "resource": {
            "uri": "test://embedded-resource",
            "mimeType": "text/plain",
            "text": "This is an embedded resource content.",
        }}]})),
        "test_multiple_content_types" => complete(json!({ "content": [
            { "type": "text", "text": "Multiple content types test:" },
            image(),
            { "type": "resource", "resource": {
                "uri": "test://mixed-content-resource",
                "mimeType": "application/json",
                "text": json!({ "test": "data", "value": 123 }).to_string(),
            }},
        ]})),
        "test_tool_with_logging" | "test_logging_tool" => with_logging(shared, context).await,
        "test_tool_with_progress" => with_progress(context).await,
        "test_error_handling" => complete(json!({
            "isError": true,
            "content": [{ "type": "text", "text": "This tool intentionally returns an error for testing" }],
        })),
        "test_reconnection" => {
            tokio::time::sleep(Duration::from_millis(200)).await;
            text("Reconnection test completed.")
        }
        JSON_SCHEMA_TOOL => {
            text(&format!("Received: {}", Value::Object(request.arguments.clone().unwrap_or_default())))
        }
        "test_header_param" => text(&format!(
            "Region: {}",
            request
                .arguments
                .as_ref()
                .and_then(|arguments| arguments.get("region"))
                .and_then(Value::as_str)
                .unwrap_or("")
        )),
        "test_trigger_tool_change" => trigger(shared, context, ListChange::Tools).await,
        "test_trigger_prompt_change" => trigger(shared, context, ListChange::Prompts).await,
        _ => return interactive(shared, context, request).await,
    };
    result.map(CallToolResponse::Complete)
}

/// Runs the tools that need input from the client, which may answer with an
/// `InputRequiredResult` instead of a complete result.
async fn interactive(
    shared: &Shared,
    context: &RequestContext<RoleServer>,
    request: CallToolRequestParams,
) -> Result<CallToolResponse, McpError> {
    let name = request.name.as_ref();
    let provided = request.input_responses.as_ref();
    let arguments = request.arguments.clone().unwrap_or_default();
    let argument = |key: &str, default: &str| arguments.get(key).and_then(Value::as_str).unwrap_or(default).to_owned();
    // Which questions to ask, whether the flow carries a sealed state, and which
    // client capabilities the tool cannot do without.
    let (questions, sealed, needs): (Vec<Question>, bool, Option<ClientCapabilities>) = match name {
        "test_sampling" => {
            (vec![("sampling", sampling_request(&argument("prompt", "Hello"), 100))], false, Some(sampling()))
        }
        "test_elicitation" => (
            vec![(
                "elicitation",
                elicitation_request(
                    &argument("message", "Please provide your details"),
                    json!({
                        "username": { "type": "string", "description": "User's response" },
                        "email": { "type": "string", "description": "User's email address" },
                    }),
                    &["username", "email"],
                ),
            )],
            false,
            Some(elicitation()),
        ),
        "test_elicitation_sep1034_defaults" => (vec![("elicitation", sep1034_request())], false, Some(elicitation())),
        "test_elicitation_sep1330_enums" => (vec![("elicitation", sep1330_request())], false, Some(elicitation())),
        "test_missing_capability" => (vec![("sampling", sampling_request("Say hello", 50))], false, Some(sampling())),
        "test_streaming_elicitation" | "test_input_required_result_elicitation" => {
            (vec![("user_name", name_question("What is your name?"))], false, None)
        }
        "test_input_required_result_sampling" => {
            (vec![("capital_question", sampling_request("What is the capital of France?", 100))], false, None)
        }
        "test_input_required_result_list_roots" => (vec![("client_roots", roots_request())], false, None),
        "test_input_required_result_request_state" | "test_input_required_result_tampered_state" => (
            vec![("confirm", elicitation_request("Please confirm", json!({ "ok": { "type": "boolean" } }), &["ok"]))],
            true,
            None,
        ),
        "test_input_required_result_multiple_inputs" => (
            vec![
                ("user_name", name_question("What is your name?")),
                ("greeting", sampling_request("Generate a greeting", 50)),
                ("client_roots", roots_request()),
            ],
            true,
            None,
        ),
        "test_input_required_result_multi_round" => {
            return multi_round(shared, context, &request).await;
        }
        "test_input_required_result_capabilities" => {
            // Only ask what the client declared it can answer (SEP-2322).
            let declared = input::client_capabilities(context);
            let mut questions = Vec::new();
            if declared.elicitation.is_some() {
                questions.push(("user_name", name_question("What is your name?")));
            }
            if declared.sampling.is_some() {
                questions.push(("capital_question", sampling_request("What is the capital of France?", 100)));
            }
            (questions, false, None)
        }
        other => {
            return Err(McpError::invalid_params(format!("unknown tool: {other}"), Some(json!({ "name": other }))));
        }
    };
    if let Some(needs) = needs {
        require(context, needs)?;
    }
    // A stateless retry must echo the state the first round sealed; a session keeps
    // the whole exchange inside one call, so there is nothing to echo.
    let stateless = input::is_stateless(context);
    if sealed && stateless && provided.is_some() {
        shared.sealer.open(name, request.request_state.as_deref())?;
    }
    let state = if sealed { Some(shared.sealer.seal(name, &json!({ "tool": name }))?) } else { None };
    let answers = match input::gather(context, provided, &questions, state).await? {
        Gathered::All(answers) => answers,
        Gathered::Pending(pending) => return Ok(pending.into()),
    };
    let mut lines = Vec::new();
    for (key, question) in &questions {
        let line = match question["method"].as_str() {
            Some("elicitation/create") => {
                let (action, content) = input::elicited(&answers, key)?;
                match key {
                    &"user_name" => {
                        format!("Hello, {}!", content.get("name").and_then(Value::as_str).unwrap_or("stranger"))
                    }
                    _ => format!("Elicitation completed: action={action}, content={}", Value::Object(content)),
                }
            }
            Some("sampling/createMessage") => {
                format!("LLM response: {}", input::sampled(&answers, key)?)
            }
            _ => format!("Client roots: {}", input::roots(&answers, key)?.join(", ")),
        };
        lines.push(line);
    }
    if sealed {
        lines.push("state-ok".to_owned());
    }
    if lines.is_empty() {
        lines.push("The client declared no capability to ask with; nothing was asked.".to_owned());
    }
    text(&lines.join("\n")).map(CallToolResponse::Complete)
}

/// Asks over two rounds, carrying the first answer to the second in a sealed state
/// (SEP-2322's multi-round flow).
async fn multi_round(
    shared: &Shared,
    context: &RequestContext<RoleServer>,
    request: &CallToolRequestParams,
) -> Result<CallToolResponse, McpError> {
    const TOOL: &str = "test_input_required_result_multi_round";
    let provided = request.input_responses.as_ref();
    let prior = match request.request_state.as_deref() {
        Some(state) => shared.sealer.open(TOOL, Some(state))?,
        None => json!({ "round": 1 }),
    };
    let name = if prior["round"] == 2 {
        prior["name"].as_str().unwrap_or_default().to_owned()
    } else {
        let state = shared.sealer.seal(TOOL, &json!({ "round": 1 }))?;
        let step1 = [("step1", name_question("Step 1: What is your name?"))];
        let answers = match input::gather(context, provided, &step1, Some(state)).await? {
            Gathered::All(answers) => answers,
            Gathered::Pending(pending) => return Ok(pending.into()),
        };
        let (_, content) = input::elicited(&answers, "step1")?;
        content.get("name").and_then(Value::as_str).unwrap_or("stranger").to_owned()
    };
    let state = shared.sealer.seal(TOOL, &json!({ "round": 2, "name": name }))?;
    let step2 = [(
        "step2",
        elicitation_request(
            "Step 2: What is your favorite color?",
            json!({ "color": { "type": "string" } }),
            &["color"],
        ),
    )];
    let answers = match input::gather(context, provided, &step2, Some(state)).await? {
        Gathered::All(answers) => answers,
        Gathered::Pending(pending) => return Ok(pending.into()),
    };
    let (_, content) = input::elicited(&answers, "step2")?;
    let color = content.get("color").and_then(Value::as_str).unwrap_or("unknown");
    text(&format!("Hello, {name}! Your favorite color is {color}.")).map(CallToolResponse::Complete)
}

/// Fails with `-32021` unless the client declared `needs` (SEP-2575): a server must
/// not rely on a capability the client did not declare.
fn require(context: &RequestContext<RoleServer>, needs: ClientCapabilities) -> Result<(), McpError> {
    let declared = input::client_capabilities(context);
    let missing = (needs.sampling.is_some() && declared.sampling.is_none())
        || (needs.elicitation.is_some() && declared.elicitation.is_none());
    if missing { Err(McpError::missing_required_client_capability(needs)) } else { Ok(()) }
}

/// The sampling capability, as a requirement.
fn sampling() -> ClientCapabilities {
    ClientCapabilities::builder().enable_sampling().build()
}

/// The elicitation capability, as a requirement.
fn elicitation() -> ClientCapabilities {
    ClientCapabilities::builder().enable_elicitation().build()
}

/// Sends three info messages about 50 ms apart, as the contract asks, so that a
/// client sees several notifications arrive during one call.
async fn with_logging(shared: &Shared, context: &RequestContext<RoleServer>) -> Result<CallToolResult, McpError> {
    for (index, message) in
        ["Tool execution started", "Tool processing data", "Tool execution completed"].into_iter().enumerate()
    {
        if index > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        log(shared, context, LoggingLevel::Info, message).await;
    }
    text("Tool with logging executed successfully.")
}

/// Sends one log message if the level in force lets it through.
///
/// In a session the level is the one set with `logging/setLevel` (everything until
/// then); in the stateless lifecycle it is the request's `_meta` log level, and a
/// request without one gets no log messages at all (SEP-2575).
async fn log(shared: &Shared, context: &RequestContext<RoleServer>, level: LoggingLevel, message: &str) {
    let threshold = if input::is_stateless(context) {
        match context.meta.log_level() {
            Some(level) => Some(level),
            None => return,
        }
    } else {
        shared.log_level()
    };
    if threshold.is_some_and(|threshold| severity(level) < severity(threshold)) {
        return;
    }
    let mut param = LoggingMessageNotificationParam::new(level, json!(message));
    param.logger = Some("berth-conformance".to_owned());
    if let Err(error) = context.peer.notify_logging_message(param).await {
        tracing::debug!(%error, "could not send a log message");
    }
}

/// Orders log levels by severity; rmcp's enum does not implement `Ord`.
pub(crate) fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

/// Reports progress 0, 50 and 100 of 100 about 50 ms apart, if the client asked for
/// progress with a token.
async fn with_progress(context: &RequestContext<RoleServer>) -> Result<CallToolResult, McpError> {
    let token = context.meta.get_progress_token();
    for (index, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
        if index > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Some(token) = &token {
            let param = ProgressNotificationParam::new(token.clone(), progress).with_total(100.0);
            if let Err(error) = context.peer.notify_progress(param).await {
                tracing::debug!(%error, "could not send a progress notification");
            }
        }
    }
    text("Tool with progress executed successfully.")
}

/// Announces a list change to open listen streams (stateless lifecycle) and to the
/// calling session (session lifecycle).
async fn trigger(
    shared: &Shared,
    context: &RequestContext<RoleServer>,
    change: ListChange,
) -> Result<CallToolResult, McpError> {
    shared.listeners.notify(change).await;
    if !input::is_stateless(context) {
        let sent = match change {
            ListChange::Tools => context.peer.notify_tool_list_changed().await,
            ListChange::Prompts => context.peer.notify_prompt_list_changed().await,
        };
        if let Err(error) = sent {
            tracing::debug!(%error, "could not announce a list change");
        }
    }
    text("List change announced.")
}

/// A complete result with one text block.
fn text(text: &str) -> Result<CallToolResult, McpError> {
    complete(json!({ "content": [{ "type": "text", "text": text }] }))
}

/// An image content block with the test PNG.
fn image() -> Value {
    json!({ "type": "image", "data": PNG_BASE64, "mimeType": "image/png" })
}

/// The wire shape of a `sampling/createMessage` request for one user prompt.
fn sampling_request(prompt: &str, max_tokens: u32) -> Value {
    json!({
        "method": "sampling/createMessage",
        "params": {
            "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
            "maxTokens": max_tokens,
        },
    })
}

/// The wire shape of a `roots/list` request; it has no parameters, and rmcp models
/// it without a `params` member at all.
fn roots_request() -> Value {
    json!({ "method": "roots/list" })
}

/// An elicitation that asks for a name.
fn name_question(message: &str) -> Value {
    elicitation_request(message, json!({ "name": { "type": "string" } }), &["name"])
}

/// An elicitation with a default for every primitive type (SEP-1034).
fn sep1034_request() -> Value {
    elicitation_request(
        "Please review and update the form fields with defaults",
        json!({
            "name": { "type": "string", "description": "User name", "default": "John Doe" },
            "age": { "type": "integer", "description": "User age", "default": 30 },
            "score": { "type": "number", "description": "User score", "default": 95.5 },
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": { "type": "boolean", "description": "Verification status", "default": true },
        }),
        &[],
    )
}

/// An elicitation with all five enum variants (SEP-1330).
fn sep1330_request() -> Value {
    elicitation_request(
        "Please select options from the enum fields",
        json!({
            "untitledSingle": {
                "type": "string",
                "description": "Untitled single-select",
                "enum": ["option1", "option2", "option3"],
            },
            "titledSingle": {
                "type": "string",
                "description": "Titled single-select",
                "oneOf": [
                    { "const": "value1", "title": "First Option" },
                    { "const": "value2", "title": "Second Option" },
                    { "const": "value3", "title": "Third Option" },
                ],
            },
            "legacyEnum": {
                "type": "string",
                "description": "Legacy titled enum (deprecated enumNames)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {
                "type": "array",
                "description": "Untitled multi-select",
                "items": { "type": "string", "enum": ["option1", "option2", "option3"] },
            },
            "titledMulti": {
                "type": "array",
                "description": "Titled multi-select",
                "items": { "anyOf": [
                    { "const": "value1", "title": "First Choice" },
                    { "const": "value2", "title": "Second Choice" },
                    { "const": "value3", "title": "Third Choice" },
                ]},
            },
        }),
        &[],
    )
}

#[cfg(test)]
mod tests {
    use rmcp::model::{InputRequest, ServerRequest};

    use super::*;

    #[test]
    fn lists_every_tool_of_the_contract_once() {
        let names: Vec<String> = list().unwrap().tools.iter().map(|tool| tool.name.to_string()).collect();
        for expected in [
            "test_simple_text",
            "test_image_content",
            "test_audio_content",
            "test_embedded_resource",
            "test_multiple_content_types",
            "test_tool_with_logging",
            "test_tool_with_progress",
            "test_error_handling",
            "test_sampling",
            "test_elicitation",
            "test_elicitation_sep1034_defaults",
            "test_elicitation_sep1330_enums",
            JSON_SCHEMA_TOOL,
            "test_missing_capability",
            "test_input_required_result_elicitation",
            "test_input_required_result_capabilities",
        ] {
            assert!(names.iter().any(|name| name == expected), "{expected} is missing");
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "duplicate tool names");
        // SEP-986: names are 1-64 characters from [A-Za-z0-9_.-].
        assert!(names.iter().all(|name| {
            (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        }));
    }

    #[test]
    fn json_schema_keywords_survive_the_model() {
        let tools = serde_json::to_value(list().unwrap()).unwrap();
        let tool = tools["tools"].as_array().unwrap().iter().find(|tool| tool["name"] == JSON_SCHEMA_TOOL).unwrap();
        assert_eq!(tool["inputSchema"], json_schema_2020_12());
    }

    #[test]
    fn questions_survive_the_model_unchanged() {
        // Each question is sent either as a server request (sessions) or inside an
        // InputRequiredResult (stateless); both must reach the client as written.
        for question in
            [sampling_request("hi", 100), roots_request(), name_question("Name?"), sep1034_request(), sep1330_request()]
        {
            let as_request: ServerRequest = serde_json::from_value(question.clone()).unwrap();
            let as_input: InputRequest = serde_json::from_value(question.clone()).unwrap();
            // rmcp spells out the default elicitation mode, "form", which the
            // contract leaves implicit; anything else must be exactly as written.
            let normalize = |mut value: Value| {
                let object = value.as_object_mut().unwrap();
                object.remove("jsonrpc");
                if let Some(params) = object.get_mut("params").and_then(Value::as_object_mut)
                    && params.get("mode") == Some(&json!("form"))
                {
                    params.remove("mode");
                }
                value
            };
            assert_eq!(normalize(serde_json::to_value(as_request).unwrap()), question);
            assert_eq!(normalize(serde_json::to_value(as_input).unwrap()), question);
        }
    }
}
