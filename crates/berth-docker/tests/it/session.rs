//! MCP sessions over the attached streams of hardened containers.

use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::support::{CONFORMANCE, EVERYTHING, Lines, docker, exists, hardened, line, send_handshake, setup};

/// For each image: initialize, initialized, tools/list through the attached streams of a
/// container with the default hardening, then a graceful stop that removes the container.
#[tokio::test]
async fn mcp_session_over_attached_streams() {
    let Some((owner, engine, _cleanup)) = setup("session", &[CONFORMANCE, EVERYTHING]).await else {
        return;
    };
    let docker = docker().await;

    for (image, server_name, a_tool) in
        [(CONFORMANCE, "berth-conformance", "test_simple_text"), (EVERYTHING, "mcp-servers/everything", "echo")]
    {
        let attached = engine.run(&hardened(&owner, image)).await.unwrap();
        let (mut stdin, mut container) = (attached.stdin, attached.container);
        let mut stdout = Lines::new(attached.stdout);
        send_handshake(&mut stdin).await;
        stdin.write_all(&line(&json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" }))).await.unwrap();
        stdin.flush().await.unwrap();

        let initialized = stdout.response(1).await;
        assert_eq!(initialized["result"]["serverInfo"]["name"], server_name, "{image}: {initialized}");
        let tools = stdout.response(2).await;
        let names: Vec<&str> = tools["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{image}: no tools in {tools}"))
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert!(names.contains(&a_tool), "{image}: {a_tool} not in {names:?}");

        // Closing stdin is the MCP stdio transport's request to exit: it must reach the server.
        drop(stdin);
        let exit = container.exited().await;
        assert_eq!(exit, "exited with code 0", "{image}");
        let id = container.id().to_owned();
        container.stop(std::time::Duration::from_secs(10)).await;
        assert!(!exists(&docker, &id).await, "{image}: container {id} still exists after stop()");
    }
}

/// A 1 MiB message written in small pieces comes back whole through stdout frames that the
/// engine cuts wherever it likes.
#[tokio::test]
async fn large_message_in_chunks() {
    let Some((owner, engine, _cleanup)) = setup("large", &[EVERYTHING]).await else {
        return;
    };

    let attached = engine.run(&hardened(&owner, EVERYTHING)).await.unwrap();
    let (mut stdin, container) = (attached.stdin, attached.container);
    let mut stdout = Lines::new(attached.stdout);
    send_handshake(&mut stdin).await;
    let text: String = (0..1 << 20).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let call = line(&json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": { "name": "echo", "arguments": { "message": text } }
    }));
    // Odd-sized pieces, so that no write boundary coincides with anything meaningful.
    for piece in call.chunks(4093) {
        stdin.write_all(piece).await.unwrap();
        stdin.flush().await.unwrap();
    }
    stdout.response(1).await;
    let answer = stdout.response(7).await;
    let echoed = answer["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{answer:.200}"));
    assert!(echoed.ends_with(&text), "the echo lost or changed bytes ({} bytes back)", echoed.len());

    drop(stdin);
    container.stop(std::time::Duration::from_secs(10)).await;
}

/// Output on stdout and on stderr arrives in the stream it was written to.
#[tokio::test]
async fn stdout_and_stderr_are_separated() {
    let Some((owner, engine, _cleanup)) = setup("demux", &[EVERYTHING]).await else {
        return;
    };

    let mut spec = hardened(&owner, EVERYTHING);
    spec.template.entrypoint = Some(vec!["/usr/local/bin/node".into()]);
    spec.template.command = Some(vec![
        "-e".into(),
        "for (let i = 0; i < 100; i++) { process.stdout.write(`out ${i}\\n`); process.stderr.write(`err ${i}\\n`); }"
            .into(),
    ]);
    let attached = engine.run(&spec).await.unwrap();
    let (stdout, stderr) = (Lines::new(attached.stdout), Lines::new(attached.stderr));
    let (out, err) = tokio::join!(async move { stdout.rest_owned().await }, async move { stderr.rest_owned().await },);
    let expected = |prefix: &str| (0..100).map(|i| format!("{prefix} {i}\n")).collect::<String>();
    assert_eq!(out, expected("out"));
    assert_eq!(err, expected("err"));
    attached.container.stop(std::time::Duration::from_secs(10)).await;
}
