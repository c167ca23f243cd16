//! [`ConformanceServer`] and its `ServerHandler` implementation: the capabilities it
//! advertises and the dispatch of each method to the module that implements it.

// Logging and resources/subscribe are deprecated by SEP-2577 but remain part of the
// contract for the session-based revisions, so this module uses them knowingly.
#![allow(deprecated)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CompleteRequestParams, CompleteResult, GetPromptRequestParams,
    GetPromptResponse, Implementation, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, LoggingLevel, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
    ServerCapabilities, ServerConfig, SetLevelRequestParams, SubscribeRequestParams, SubscriptionFilter,
    UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};

use crate::input::Sealer;
use crate::listeners::Listeners;
use crate::{prompts, resources, tools};

/// berth's reference MCP server: every tool, resource and prompt that the official
/// conformance suite exercises.
///
/// Clones share their state, and that matters over Streamable HTTP: rmcp builds one
/// handler per session (and, in the stateless `2026-07-28` lifecycle, per request)
/// from a factory, so the factory should hand out clones of one server,
/// `move || Ok(server.clone())`. Then a `requestState` sealed in one request opens in
/// the next, and a list change triggered by one request reaches the
/// `subscriptions/listen` streams opened by others. The log level set with
/// `logging/setLevel` and the resource subscriptions are likewise shared by every
/// session of one server, which is enough for a test fixture.
#[derive(Debug, Clone, Default)]
pub struct ConformanceServer {
    shared: Arc<Shared>,
}

/// The state that clones of one [`ConformanceServer`] share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The level set with `logging/setLevel`; `None` lets every message through.
    log_level: Mutex<Option<LoggingLevel>>,
    /// The resource URIs subscribed to with `resources/subscribe`.
    subscriptions: Mutex<BTreeSet<String>>,
    /// The open `subscriptions/listen` streams.
    pub(crate) listeners: Listeners,
    /// Seals the `requestState` of multi-round tool calls.
    pub(crate) sealer: Sealer,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            log_level: Mutex::new(None),
            subscriptions: Mutex::new(BTreeSet::new()),
            listeners: Listeners::default(),
            sealer: Sealer::new(),
        }
    }
}

impl Shared {
    /// The level set with `logging/setLevel`, if any.
    pub(crate) fn log_level(&self) -> Option<LoggingLevel> {
        *lock(&self.log_level)
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ConformanceServer {
    /// Creates a server with fresh state: no log level, no subscriptions, and a new
    /// key for sealing `requestState`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The resource URIs currently subscribed to with `resources/subscribe`.
    pub fn subscriptions(&self) -> Vec<String> {
        lock(&self.shared.subscriptions).iter().cloned().collect()
    }
}

impl ServerHandler for ConformanceServer {
    fn get_info(&self) -> ServerConfig {
        // rmcp rejects any method whose capability is not advertised here, so every
        // feature the contract exercises is declared.
        let capabilities = ServerCapabilities::builder()
            .enable_logging()
            .enable_completions()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_resources_list_changed()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        let mut info = ServerConfig::new(capabilities);
        info.server_info = Implementation::new("berth-conformance", env!("CARGO_PKG_VERSION"));
        info.instructions = Some(
            "berth's reference server for the MCP conformance suite; every tool, resource and prompt is a test fixture."
                .to_owned(),
        );
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        tools::list()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        tools::call(&self.shared, &context, request).await
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        resources::list()
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        resources::templates()
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        resources::read(&request.uri).map(ReadResourceResponse::Complete)
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if !resources::exists(&request.uri) {
            return Err(resources::not_found(&request.uri));
        }
        lock(&self.shared.subscriptions).insert(request.uri);
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        lock(&self.shared.subscriptions).remove(&request.uri);
        Ok(())
    }

    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        // Everything requested is accepted; rmcp then narrows it to what get_info
        // advertises, and each stream's sink enforces the result.
        Some(requested.clone())
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        self.shared.listeners.register(context.sink().clone());
        context.cancelled().await;
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        prompts::list()
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        prompts::get(&context, request).await
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        prompts::completion(&request)
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        *lock(&self.shared.log_level) = Some(request.level);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertises_every_capability_it_implements() {
        let capabilities = ConformanceServer::new().get_info().capabilities;
        assert!(capabilities.tools.is_some());
        assert!(capabilities.prompts.is_some());
        assert!(capabilities.completions.is_some());
        assert!(capabilities.logging.is_some());
        let resources = capabilities.resources.unwrap();
        assert_eq!(resources.subscribe, Some(true));
    }

    #[test]
    fn clones_share_state() {
        let server = ConformanceServer::new();
        lock(&server.clone().shared.subscriptions).insert("test://watched-resource".to_owned());
        assert_eq!(server.subscriptions(), ["test://watched-resource"]);
    }
}
