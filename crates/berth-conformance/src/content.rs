//! Static payloads that the suite checks for by shape: a tiny PNG and WAV, and the
//! helper that turns the contract's JSON examples into rmcp's typed model.

use rmcp::ErrorData as McpError;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A 1x1 red PNG, base64-encoded; the suite only checks that image data is present,
/// but a real image keeps clients that decode it happy.
pub(crate) const PNG_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";

/// Eight samples of 16-bit mono silence at 8 kHz as a WAV file, base64-encoded.
pub(crate) const WAV_BASE64: &str = "UklGRjQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YRAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Deserializes a wire-shaped JSON value into an rmcp model type.
///
/// The fixtures are written as the JSON the conformance contract shows, so that a
/// reader can compare them with the suite line by line; a value that does not fit
/// the model is a bug in this crate, hence an internal error.
pub(crate) fn wire<T: DeserializeOwned>(value: Value) -> Result<T, McpError> {
    serde_json::from_value(value).map_err(|error| McpError::internal_error(format!("malformed fixture: {error}"), None))
}

/// Deserializes a complete result, marking it `resultType: "complete"`.
///
/// The 2026-07-28 schema requires the discriminator on every result (SEP-2322), and
/// rmcp only sets it on values it builds itself, not on deserialized ones. rmcp strips
/// it again for peers on older revisions, whose schema does not know it.
pub(crate) fn complete<T: DeserializeOwned>(mut value: Value) -> Result<T, McpError> {
    if let Value::Object(object) = &mut value {
        object.entry("resultType").or_insert_with(|| Value::from("complete"));
    }
    wire(value)
}
