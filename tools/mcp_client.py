"""A real MCP client for berth's tests: the official Python SDK (pinned in requirements.txt).

Usage: mcp_client.py URL HEADERS_JSON TOOL

Connects over Streamable HTTP with the given headers, initializes, lists the tools, calls TOOL
without arguments, and prints one JSON object: {"server": ..., "tools": [...], "result": [...]}.
"""

import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client


async def main(url: str, headers: dict, tool: str) -> None:
    async with streamablehttp_client(url, headers=headers) as (read, write, _):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            tools = await session.list_tools()
            result = await session.call_tool(tool, {})
            print(json.dumps({
                "server": init.serverInfo.name,
                "tools": [t.name for t in tools.tools],
                "result": [c.text for c in result.content if getattr(c, "type", "") == "text"],
                "is_error": bool(result.isError),
            }))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]))
