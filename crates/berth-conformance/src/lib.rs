//! berth's reference MCP server.
//!
//! [`ConformanceServer`] implements the contract that the official
//! `@modelcontextprotocol/conformance` suite expects of a server: the `test_*` tools,
//! the `test://` resources and templates, the prompts, completion, logging,
//! subscriptions, progress, sampling and elicitation. berth serves it natively as a
//! backend so that the gateway itself can be run through the suite, and the
//! `berth-conformance` binary serves it over stdio so that it can also stand behind
//! berth's stdio backend.
//!
//! The server speaks both protocol generations of rmcp 3.11: the session-based
//! revisions up to `2025-11-25`, where it calls back into the client with
//! server-to-client requests, and the stateless `2026-07-28` revision, where the same
//! tools answer with an `InputRequiredResult` (SEP-2322) instead. See `README.md` next
//! to this file for the protocol subtleties.

mod content;
mod input;
mod listeners;
mod prompts;
mod resources;
mod server;
mod tools;

pub use server::ConformanceServer;
