//! A native MCP service for berth: the [`Greeter`], and the [`registry`] that puts it next to
//! berth's built-in services.
//!
//! A native service is any rmcp [`ServerHandler`]. berth serves it in-process at `/<name>/mcp`,
//! behind the same authentication, host checks and transport rules as every other backend, so
//! the service itself only deals with MCP.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use rmcp::{
    ServerHandler,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{ServerCapabilities, ServerConfig},
    tool, tool_handler, tool_router,
};

/// The arguments of the `greet` tool; their JSON Schema is what `tools/list` shows clients.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct GreetArgs {
    /// Who to greet.
    #[schemars(description = "The name of the person to greet")]
    pub name: String,
}

/// A service with two tools: `greet` and `greetings_sent`.
///
/// berth calls the registered factory once per MCP session, so state that must outlive a
/// session (here the greeting counter) lives behind an `Arc` that every clone shares.
#[derive(Debug, Clone)]
pub struct Greeter {
    greetings: Arc<AtomicU64>,
    tool_router: ToolRouter<Self>,
}

impl Default for Greeter {
    fn default() -> Self {
        Self::new()
    }
}

impl Greeter {
    /// A greeter that has greeted nobody yet.
    pub fn new() -> Self {
        Self { greetings: Arc::new(AtomicU64::new(0)), tool_router: Self::tool_router() }
    }
}

#[tool_router]
impl Greeter {
    /// Greets someone by name.
    #[tool(description = "Greet someone by name")]
    fn greet(&self, Parameters(GreetArgs { name }): Parameters<GreetArgs>) -> String {
        self.greetings.fetch_add(1, Ordering::Relaxed);
        format!("Hello, {name}!")
    }

    /// How many greetings all sessions have sent so far.
    #[tool(description = "Count the greetings sent since the server started, across all sessions")]
    fn greetings_sent(&self) -> String {
        self.greetings.load(Ordering::Relaxed).to_string()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Greeter {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions("Greets people by name.")
    }
}

/// berth's built-in services plus the greeter, registered as `greeter`.
///
/// The factory hands out clones of one [`Greeter`], so every session shares its counter.
pub fn registry() -> berth::NativeRegistry {
    let greeter = Greeter::new();
    berth::NativeRegistry::builtin().register("greeter", move || greeter.clone())
}
