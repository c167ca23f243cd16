//! The `berth-conformance` binary over stdio, as an MCP client (or berth's future stdio
//! backend) uses it: rmcp's client drives the child's stdin and stdout, and the child exits
//! with status 0 once its stdin closes.

use std::{
    future::Future,
    pin::Pin,
    process::ExitStatus,
    sync::{Arc, Mutex},
};

use process_wrap::tokio::{ChildWrapper, CommandWrap, CommandWrapper};
use rmcp::{ServiceExt, model::CallToolRequestParams, transport::TokioChildProcess};

/// The exit status of the child, once something has waited for it.
type Recorded = Arc<Mutex<Option<ExitStatus>>>;

/// A [`CommandWrapper`] whose child remembers its exit status.
///
/// rmcp's transport owns the child and reaps it when the session closes, so the status would
/// otherwise be lost; this lets the test see whether the server exited on its own with 0 rather
/// than being signalled by the transport's fallback.
#[derive(Debug)]
struct RecordExit(Recorded);

impl CommandWrapper for RecordExit {
    fn wrap_child(
        &mut self,
        child: Box<dyn ChildWrapper>,
        _core: &CommandWrap,
    ) -> std::io::Result<Box<dyn ChildWrapper>> {
        Ok(Box::new(RecordingChild { child, status: Arc::clone(&self.0) }))
    }
}

#[derive(Debug)]
struct RecordingChild {
    child: Box<dyn ChildWrapper>,
    status: Recorded,
}

impl ChildWrapper for RecordingChild {
    fn inner(&self) -> &dyn ChildWrapper {
        &*self.child
    }

    fn inner_mut(&mut self) -> &mut dyn ChildWrapper {
        &mut *self.child
    }

    fn into_inner(self: Box<Self>) -> Box<dyn ChildWrapper> {
        self.child
    }

    fn wait(&mut self) -> Pin<Box<dyn Future<Output = std::io::Result<ExitStatus>> + Send + '_>> {
        Box::pin(async move {
            let status = self.child.wait().await?;
            *self.status.lock().unwrap() = Some(status);
            Ok(status)
        })
    }
}

#[tokio::test]
async fn rmcp_client_over_stdio_then_exit_zero_when_stdin_closes() {
    let status = Recorded::default();
    let mut command = CommandWrap::with_new(env!("CARGO_BIN_EXE_berth-conformance"), |command| {
        command.env("RUST_LOG", "warn");
    });
    command.wrap(RecordExit(Arc::clone(&status)));
    let transport = TokioChildProcess::new(command).expect("spawn berth-conformance");

    let client = ().serve(transport).await.expect("initialize over stdio");
    let info = client.peer_info().expect("the server answered initialize");
    assert_eq!(info.server_info.as_ref().map(|server| server.name.as_str()), Some("berth-conformance"));
    let tools = client.list_tools(None).await.expect("tools/list");
    assert!(
        tools.tools.iter().any(|tool| tool.name == "test_simple_text"),
        "{:?}",
        tools.tools.iter().map(|tool| &tool.name).collect::<Vec<_>>()
    );
    let result = client.call_tool(CallToolRequestParams::new("test_simple_text")).await.expect("tools/call");
    assert_ne!(result.is_error, Some(true));
    assert_eq!(
        result.content[0].as_text().map(|text| text.text.as_str()),
        Some("This is a simple text response for testing.")
    );

    // Closing the session closes the child's stdin and reaps the child. rmcp would signal a
    // child that does not exit on its own; that would show here as a status other than 0.
    client.cancel().await.expect("the client task ends cleanly");
    let status = status.lock().unwrap().take().expect("the transport waited for the child");
    assert!(status.success(), "berth-conformance exited with {status}");
}
