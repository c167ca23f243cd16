"""A stdio MCP server in Python for the image test (scripts/image-test.sh): one JSON-RPC message
per line; initialize, ping, tools/list and tools/call of its one tool, `runtime`, which names the
interpreter that runs it. Proves that a process backend runs inside berth's python image, through
python3 and through uv. Standard library only."""

import json
import platform
import sys

TOOL = {
    "name": "runtime",
    "description": "Names the runtime this server runs on.",
    "inputSchema": {"type": "object", "properties": {}},
}


def answer(request):
    method = request.get("method")
    if method == "initialize":
        return {
            "protocolVersion": request["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "image-test-python", "version": "1"},
        }
    if method == "ping":
        return {}
    if method == "tools/list":
        return {"tools": [TOOL]}
    if method == "tools/call":
        return {"content": [{"type": "text", "text": f"python {platform.python_version()} at {sys.executable}"}]}
    return None


for line in sys.stdin:
    request = json.loads(line)
    if "id" not in request:
        continue
    result = answer(request)
    if result is None:
        reply = {"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32601, "message": "method not found"}}
    else:
        reply = {"jsonrpc": "2.0", "id": request["id"], "result": result}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
