#!/usr/bin/env node
// A stdio MCP server in Node for the image test (scripts/image-test.sh): one JSON-RPC message per
// line; initialize, ping, tools/list and tools/call of its one tool, `runtime`, which names the
// runtime that runs it. Proves that a process backend runs inside berth's node image.
"use strict";
const readline = require("readline");

const tool = {
  name: "runtime",
  description: "Names the runtime this server runs on.",
  inputSchema: { type: "object", properties: {} },
};

function answer(request) {
  switch (request.method) {
    case "initialize":
      return {
        protocolVersion: request.params.protocolVersion,
        capabilities: { tools: {} },
        serverInfo: { name: "image-test-node", version: "1" },
      };
    case "ping":
      return {};
    case "tools/list":
      return { tools: [tool] };
    case "tools/call":
      return { content: [{ type: "text", text: `node ${process.version}` }] };
    default:
      return null;
  }
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const request = JSON.parse(line);
  if (request.id === undefined) return;
  const result = answer(request);
  const reply = result === null
    ? { jsonrpc: "2.0", id: request.id, error: { code: -32601, message: "method not found" } }
    : { jsonrpc: "2.0", id: request.id, result };
  process.stdout.write(JSON.stringify(reply) + "\n");
});
