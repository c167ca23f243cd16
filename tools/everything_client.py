"""A full MCP session against server-everything with the official Python SDK (pinned in
requirements.txt), for berth's tests.

Usage: everything_client.py URL HEADERS_JSON LABEL

Connects over Streamable HTTP with the given headers and declares sampling, elicitation and
roots. It answers the server's requests with text that carries LABEL, so that the test can see
its own answers come back through berth inside tool results. It calls tools (echo, get-sum,
trigger-sampling-request, trigger-elicitation-request, get-roots-list, and
trigger-long-running-operation with a progress callback), lists and reads resources and resource
templates, lists and gets prompts, and prints one JSON object summarising what it saw.
"""

import asyncio
import json
import sys

import mcp.types as types
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client
from pydantic import AnyUrl


def texts(content) -> list[str]:
    """The text blocks of a tool result or prompt message list."""
    return [c.text for c in content if getattr(c, "type", "") == "text"]


async def main(url: str, headers: dict, label: str) -> None:
    seen = {"sampling_requests": [], "elicitation_requests": 0, "roots_requests": 0}

    async def sampling(context, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked = " ".join(m.content.text for m in params.messages if getattr(m.content, "type", "") == "text")
        seen["sampling_requests"].append(asked)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=f"{label} sampled: {asked}"),
            model=f"{label}-model",
            stopReason="endTurn",
        )

    async def elicitation(context, params: types.ElicitRequestParams) -> types.ElicitResult:
        seen["elicitation_requests"] += 1
        return types.ElicitResult(action="accept", content={"name": f"{label} tester", "check": True, "integer": 7})

    async def roots(context) -> types.ListRootsResult:
        seen["roots_requests"] += 1
        return types.ListRootsResult(roots=[types.Root(uri=AnyUrl(f"file:///{label}/root"), name=f"{label} root")])

    progress: list[list[float | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append([value, total])

    async with streamablehttp_client(url, headers=headers) as (read, write, _):
        async with ClientSession(
            read,
            write,
            sampling_callback=sampling,
            elicitation_callback=elicitation,
            list_roots_callback=roots,
        ) as session:
            init = await session.initialize()
            tools = await session.list_tools()

            async def call(name: str, arguments: dict, **kwargs) -> list[str]:
                result = await session.call_tool(name, arguments, **kwargs)
                if result.isError:
                    raise RuntimeError(f"{name} failed: {texts(result.content)}")
                return texts(result.content)

            echo = await call("echo", {"message": f"hello from {label}"})
            total = await call("get-sum", {"a": 2, "b": 40})
            sampled = await call("trigger-sampling-request", {"prompt": f"{label} prompt", "maxTokens": 20})
            elicited = await call("trigger-elicitation-request", {})
            listed_roots = await call("get-roots-list", {})
            long_running = await call(
                "trigger-long-running-operation", {"duration": 0.6, "steps": 3}, progress_callback=on_progress
            )
            resources = await session.list_resources()
            document = await session.read_resource(AnyUrl("demo://resource/static/document/architecture.md"))
            templates = await session.list_resource_templates()
            dynamic = await session.read_resource(AnyUrl("demo://resource/dynamic/text/7"))
            prompts = await session.list_prompts()
            simple = await session.get_prompt("simple-prompt")
            with_args = await session.get_prompt("args-prompt", {"city": "Lyon", "state": "Rhone"})
            print(
                json.dumps(
                    {
                        "server": init.serverInfo.name,
                        "tools": [t.name for t in tools.tools],
                        "echo": echo,
                        "sum": total,
                        "sampling": sampled,
                        "elicitation": elicited,
                        "roots": listed_roots,
                        "long_running": long_running,
                        "progress": progress,
                        "resources": [str(r.uri) for r in resources.resources],
                        "document": getattr(document.contents[0], "text", ""),
                        "templates": [t.uriTemplate for t in templates.resourceTemplates],
                        "dynamic": getattr(dynamic.contents[0], "text", ""),
                        "prompts": [p.name for p in prompts.prompts],
                        "simple_prompt": [m.content.text for m in simple.messages],
                        "args_prompt": [m.content.text for m in with_args.messages],
                        **seen,
                    }
                )
            )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]))
