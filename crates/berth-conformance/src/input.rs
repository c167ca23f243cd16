//! Asking the client for input (sampling, elicitation, roots) in both protocol
//! generations, and sealing the `requestState` that carries a stateless flow across
//! rounds.
//!
//! Up to `2025-11-25` a tool asks by sending a server-to-client request on the
//! session and awaiting the answer. From `2026-07-28` on there is no session and a
//! server must never send a request of its own (SEP-2575); instead the tool answers
//! with an `InputRequiredResult` naming what it needs, and the client retries the
//! call with `inputResponses` (SEP-2322). [`gather`] hides the difference, so each
//! tool describes its questions once, as the wire-shaped requests of the contract.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use rmcp::model::{
    ClientCapabilities, InputRequest, InputRequiredResult, InputResponses, ProtocolVersion, RequestStateCodec,
    RequestStateError, SealOptions, ServerRequest,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer};
use serde_json::{Map, Value};

use crate::content::wire;

/// One question for the client: the key the answer comes back under, and the
/// request as it appears on the wire (`{"method": ..., "params": ...}`).
pub(crate) type Question = (&'static str, Value);

/// What [`gather`] found: every answer, or the result that asks for them.
#[derive(Debug)]
pub(crate) enum Gathered {
    /// The client answered every question; answers are keyed like the questions.
    All(InputResponses),
    /// At least one answer is missing: return this to the client.
    Pending(InputRequiredResult),
}

/// Reports whether this request uses the stateless lifecycle of `2026-07-28`.
///
/// ISO dates compare lexically in the same order as chronologically, which is how
/// rmcp itself orders protocol versions.
pub(crate) fn is_stateless(context: &RequestContext<RoleServer>) -> bool {
    context.protocol_version().is_some_and(|version| version.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

/// The client capabilities that apply to this request: the per-request `_meta`
/// ones in the stateless lifecycle, the `initialize` ones in a session.
pub(crate) fn client_capabilities(context: &RequestContext<RoleServer>) -> ClientCapabilities {
    context.client_capabilities().unwrap_or_default()
}

/// Collects the answers to `questions`.
///
/// In a session the questions are sent to the client one after another and
/// answered at once. In the stateless lifecycle the answers must already be in
/// `provided` (the retry's `inputResponses`); if any is missing, every question is
/// asked again together with `state`, so that a client that lost or mangled an
/// answer is simply re-asked rather than failed (SEP-2322 recommends that). Keys in
/// `provided` that no question asked for are ignored.
pub(crate) async fn gather(
    context: &RequestContext<RoleServer>,
    provided: Option<&InputResponses>,
    questions: &[Question],
    state: Option<String>,
) -> Result<Gathered, McpError> {
    if is_stateless(context) {
        let provided = provided.cloned().unwrap_or_default();
        if questions.iter().all(|(key, _)| provided.contains_key(*key)) {
            return Ok(Gathered::All(provided));
        }
        let mut requests = BTreeMap::new();
        for (key, request) in questions {
            requests.insert((*key).to_owned(), wire::<InputRequest>(request.clone())?);
        }
        return Ok(Gathered::Pending(InputRequiredResult::new(Some(requests), state)));
    }
    let mut answers = InputResponses::new();
    for (key, request) in questions {
        let request: ServerRequest = wire(request.clone())?;
        let answer = context
            .peer
            .send_request(request)
            .await
            .map_err(|error| McpError::internal_error(format!("the client did not answer {key}: {error}"), None))?;
        let answer = serde_json::to_value(answer).map_err(|error| McpError::internal_error(error.to_string(), None))?;
        answers.insert((*key).to_owned(), answer);
    }
    Ok(Gathered::All(answers))
}

/// Returns the answer under `key` as a JSON object, or an invalid-params error.
///
/// The client is untrusted: a retry may carry a number or `null` where a result
/// object belongs, and that is the client's fault, not an internal error.
fn answer<'a>(answers: &'a InputResponses, key: &str) -> Result<&'a Map<String, Value>, McpError> {
    answers.get(key).and_then(Value::as_object).ok_or_else(|| {
        McpError::invalid_params(
            format!("inputResponses.{key} must be a result object"),
            Some(serde_json::json!({ "key": key })),
        )
    })
}

/// Reads an `ElicitResult` answer: the action the user took and the content they
/// submitted (empty unless they accepted).
pub(crate) fn elicited(answers: &InputResponses, key: &str) -> Result<(String, Map<String, Value>), McpError> {
    let answer = answer(answers, key)?;
    let action = answer
        .get("action")
        .and_then(Value::as_str)
        .ok_or_else(|| McpError::invalid_params(format!("inputResponses.{key} is not an ElicitResult"), None))?;
    let content = answer.get("content").and_then(Value::as_object).cloned().unwrap_or_default();
    Ok((action.to_owned(), content))
}

/// Reads a `CreateMessageResult` answer and returns the text the model produced.
///
/// Content may be a single block or, since `2025-11-25`, an array of blocks; the
/// text of every text block is concatenated.
pub(crate) fn sampled(answers: &InputResponses, key: &str) -> Result<String, McpError> {
    let answer = answer(answers, key)?;
    let blocks = match answer.get("content") {
        Some(Value::Array(blocks)) => blocks.iter().collect(),
        Some(block @ Value::Object(_)) => vec![block],
        _ => {
            return Err(McpError::invalid_params(format!("inputResponses.{key} is not a CreateMessageResult"), None));
        }
    };
    Ok(blocks.into_iter().filter_map(|block| block.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(""))
}

/// Reads a `ListRootsResult` answer and returns the root URIs.
pub(crate) fn roots(answers: &InputResponses, key: &str) -> Result<Vec<String>, McpError> {
    let answer = answer(answers, key)?;
    let roots = answer
        .get("roots")
        .and_then(Value::as_array)
        .ok_or_else(|| McpError::invalid_params(format!("inputResponses.{key} is not a ListRootsResult"), None))?;
    Ok(roots.iter().filter_map(|root| root.get("uri").and_then(Value::as_str).map(str::to_owned)).collect())
}

/// The ways an echoed `requestState` can be refused; every one is the client's
/// fault, so each becomes an invalid-params error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StateError {
    /// The retry carried no `requestState` although the flow needs one.
    #[error("requestState is missing")]
    Missing,
    /// The value was forged, tampered with, expired or sealed for another tool.
    #[error("requestState failed integrity verification: {0}")]
    Rejected(#[from] RequestStateError),
}

impl From<StateError> for McpError {
    fn from(error: StateError) -> Self {
        McpError::invalid_params(error.to_string(), None)
    }
}

/// Seals and opens `requestState` with an HMAC, bound to the tool that issued it.
///
/// The client echoes the state back verbatim and may alter it, so a server that acts
/// on it must verify it (SEP-2322); binding it to the tool name stops a state issued
/// by one tool from being replayed against another.
#[derive(Debug)]
pub(crate) struct Sealer {
    codec: RequestStateCodec,
}

impl Sealer {
    /// Creates a sealer with a fresh random key.
    ///
    /// The key comes from the standard library's per-process hash seeds mixed with
    /// the clock: unpredictable enough for a conformance fixture without pulling in a
    /// random-number crate. It is not meant to guard anything of value.
    pub(crate) fn new() -> Self {
        let mut key = [0u8; RequestStateCodec::MIN_KEY_LENGTH];
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        for chunk in key.chunks_mut(8) {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u128(nanos);
            chunk.copy_from_slice(&hasher.finish().to_le_bytes());
        }
        // The key has exactly the minimum length, so try_new cannot refuse it.
        let codec = RequestStateCodec::try_new(key.to_vec()).expect("a key of the minimum length");
        Self { codec }
    }

    /// Seals `payload` for `tool`.
    pub(crate) fn seal(&self, tool: &str, payload: &Value) -> Result<String, McpError> {
        self.codec
            .seal_json_with(payload, &SealOptions::new().associated_data(tool.as_bytes()))
            .map_err(|error| McpError::internal_error(error.to_string(), None))
    }

    /// Opens a state that `tool` sealed earlier.
    pub(crate) fn open(&self, tool: &str, sealed: Option<&str>) -> Result<Value, StateError> {
        let sealed = sealed.ok_or(StateError::Missing)?;
        Ok(self.codec.open_json_with(sealed, tool.as_bytes())?)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn sealed_state_opens_only_for_its_tool_and_untampered() {
        let sealer = Sealer::new();
        let sealed = sealer.seal("tool_a", &json!({ "round": 1 })).unwrap();
        assert_eq!(sealer.open("tool_a", Some(&sealed)).unwrap(), json!({ "round": 1 }));
        assert!(sealer.open("tool_b", Some(&sealed)).is_err());
        assert!(sealer.open("tool_a", Some(&format!("{sealed}-TAMPERED"))).is_err());
        assert!(matches!(sealer.open("tool_a", None), Err(StateError::Missing)));
    }

    #[test]
    fn answers_are_validated_as_client_input() {
        let answers: InputResponses = [
            ("ok".to_owned(), json!({ "action": "accept", "content": { "name": "Alice" } })),
            ("number".to_owned(), json!(12345)),
            (
                "sample".to_owned(),
                json!({ "role": "assistant", "model": "m",
                "content": { "type": "text", "text": "Paris" } }),
            ),
            ("roots".to_owned(), json!({ "roots": [{ "uri": "file:///r" }] })),
        ]
        .into_iter()
        .collect();
        let (action, content) = elicited(&answers, "ok").unwrap();
        assert_eq!((action.as_str(), &content["name"]), ("accept", &json!("Alice")));
        assert!(elicited(&answers, "number").is_err());
        assert!(elicited(&answers, "absent").is_err());
        assert_eq!(sampled(&answers, "sample").unwrap(), "Paris");
        assert_eq!(roots(&answers, "roots").unwrap(), vec!["file:///r".to_owned()]);
    }
}
